package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/xds"
)

var example = filepath.Join("..", "..", "config", "fhirwall.yaml")

func load(t *testing.T, path string) (xds.Config, error) {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return xdsConfig(c)
}

func TestExampleConfigBuildsASnapshot(t *testing.T) {
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listener != (xds.Endpoint{Host: "127.0.0.1", Port: 10000}) ||
		cfg.FHIRServer != (xds.FHIRServer{Host: "127.0.0.1", Port: 8090, BasePath: "/fhir", Timeout: 30 * time.Second, ConnectTimeout: 2 * time.Second}) ||
		!slices.Equal(cfg.AuthzServices, []xds.Endpoint{{Host: "127.0.0.1", Port: 9191}}) ||
		!slices.Equal(cfg.LocalServices, []xds.Endpoint{{Host: "127.0.0.1", Port: 9192}}) ||
		len(cfg.APIs) != 8 || cfg.APIs[4].Name != "patient-access-sandbox" || cfg.APIs[5].PathPrefix != "/provider-access-sandbox/fhir" || cfg.APIs[2].Name != "payer-to-payer" || cfg.APIs[3].Name != "prior-auth" ||
		// The adapters' sandboxes take their base's large bodies on exact routes to fhirwall-proxy too.
		cfg.APIs[6].Name != "payer-to-payer-sandbox" || cfg.APIs[6].BodyLimits["/Group/$bulk-member-match"] != 15<<20 ||
		cfg.APIs[7].Name != "prior-auth-sandbox" || cfg.APIs[7].BodyLimits["/Claim/$submit"] != 5<<20 ||
		cfg.APIs[3].BodyLimits["/Claim/$submit"] != 5<<20 || cfg.APIs[3].BodyLimits["/Claim/$inquire"] != 5<<20 || cfg.APIs[0].Name != "patient-access" || cfg.APIs[0].PathPrefix != "/patient-access/fhir" ||
		cfg.APIs[1].Name != "provider-access" || cfg.APIs[1].PathPrefix != "/provider-access/fhir" ||
		cfg.RateLimits.Tiers["standard"] != (xds.Rate{PerSecond: 50, Burst: 100}) || cfg.ListenerTLS != nil ||
		cfg.PublicURL != "http://127.0.0.1:10000" || // the FHIR server's links: public_url, never the client's Host
		cfg.AuthzMaxRequests != 4*64+64 { // proxy.max_in_flight: ext_authz calls for 4x as many, ext_proc streams for as many
		t.Fatalf("got %+v", cfg)
	}
	if _, err := xds.NewSnapshot(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestEnvironmentOverridesTheFile(t *testing.T) {
	t.Setenv("FHIRWALL_FHIR_SERVER_URL", "http://hapi:8080/hapi/fhir")
	t.Setenv("FHIRWALL_XDS_AUTHZ_ADDRESS", "fhirwall-proxy:9191")
	t.Setenv("FHIRWALL_XDS_LOCAL_ADDRESS", "fhirwall-proxy:9192")
	t.Setenv("FHIRWALL_PUBLIC_URL", "https://127.0.0.1:10000")
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FHIRServer.Host != "hapi" || cfg.FHIRServer.Port != 8080 || cfg.FHIRServer.BasePath != "/hapi/fhir" ||
		cfg.PublicURL != "https://127.0.0.1:10000" ||
		!slices.Equal(cfg.AuthzServices, []xds.Endpoint{{Host: "fhirwall-proxy", Port: 9191}}) ||
		!slices.Equal(cfg.LocalServices, []xds.Endpoint{{Host: "fhirwall-proxy", Port: 9192}}) {
		t.Fatalf("env not applied: %+v", cfg)
	}
}

// TestReplicaListsReplaceTheSingleAddress: xds.authz_addresses and local_addresses, as test/stack/replicas.sh
// sets them (comma-separated in the environment), put every replica in Envoy's clusters.
func TestReplicaListsReplaceTheSingleAddress(t *testing.T) {
	t.Setenv("FHIRWALL_XDS_AUTHZ_ADDRESSES", "127.0.0.1:9211,127.0.0.1:9221,127.0.0.1:9231")
	t.Setenv("FHIRWALL_XDS_LOCAL_ADDRESSES", "127.0.0.1:9212,127.0.0.1:9222,127.0.0.1:9232")
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	want := func(ports ...uint32) []xds.Endpoint {
		var out []xds.Endpoint
		for _, p := range ports {
			out = append(out, xds.Endpoint{Host: "127.0.0.1", Port: p})
		}
		return out
	}
	if !slices.Equal(cfg.AuthzServices, want(9211, 9221, 9231)) || !slices.Equal(cfg.LocalServices, want(9212, 9222, 9232)) {
		t.Fatalf("replicas not applied: authz %v local %v", cfg.AuthzServices, cfg.LocalServices)
	}
	x, err := xds.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range x.Clusters {
		if (c.Name == xds.AuthzCluster || c.Name == xds.LocalCluster) && (len(c.Endpoints) != 3 || !c.IsIP()) {
			t.Errorf("cluster %s: %+v, want the 3 replicas, STATIC", c.Name, c.Endpoints)
		}
	}
}

func TestReplicaListWithABadAddressIsRefused(t *testing.T) {
	t.Setenv("FHIRWALL_XDS_AUTHZ_ADDRESSES", "127.0.0.1:9211,127.0.0.1")
	if _, err := config.Load(example); err == nil || !strings.Contains(err.Error(), `xds.authz_addresses: "127.0.0.1": want host:port`) {
		t.Fatalf("got %v, want xds.authz_addresses refused", err)
	}
}

func TestBadXDSValuesAreAllReported(t *testing.T) {
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.NewReplacer("envoy_listen: 127.0.0.1:10000", "envoy_listen: 127.0.0.1:99999",
		"url: http://127.0.0.1:8090/fhir", "url: https://127.0.0.1:8090/fhir").Replace(string(src))
	path := filepath.Join(t.TempDir(), "fhirwall.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = load(t, path)
	for _, w := range []string{"xds.envoy_listen", "https needs fhir_server.ca_file"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not mention %q", err, w)
		}
	}
}

func TestListenerTLSFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("FHIRWALL_XDS_TLS_CERT_FILE", filepath.Join(dir, "tls.crt"))
	t.Setenv("FHIRWALL_XDS_TLS_KEY_FILE", filepath.Join(dir, "tls.key"))
	cfg, err := load(t, example)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ListenerTLS == nil || cfg.ListenerTLS.CertFile != filepath.Join(dir, "tls.crt") || cfg.ListenerTLS.KeyFile != filepath.Join(dir, "tls.key") {
		t.Fatalf("listener tls = %+v", cfg.ListenerTLS)
	}
}

func TestEnvoyWaitsForAnAdapterAsLongAsTheProxyMayTake(t *testing.T) {
	if xds.AdapterMessageTimeout <= config.AdapterTimeout {
		t.Fatalf("Envoy's max_message_timeout %s must exceed fhirwall-proxy's adapter timeout %s", xds.AdapterMessageTimeout, config.AdapterTimeout)
	}
}

// TestTracingReachesEnvoyOnlyWhenAnEndpointIsSet: the example config traces nothing; the stack's
// FHIRWALL_TRACING_ENDPOINT gives Envoy its tracer, with the Envoy service name and the trust rule of config.
func TestTracingReachesEnvoyOnlyWhenAnEndpointIsSet(t *testing.T) {
	cfg, err := load(t, example)
	if err != nil || cfg.Tracing != nil {
		t.Fatalf("example config: tracing %+v, err %v; want none", cfg.Tracing, err)
	}
	t.Setenv("FHIRWALL_TRACING_ENDPOINT", "jaeger:4317")
	if cfg, err = load(t, example); err != nil {
		t.Fatal(err)
	}
	want := xds.Tracing{Collector: xds.Endpoint{Host: "jaeger", Port: 4317}, ServiceName: "fhirwall-envoy", SamplingPercent: 100}
	if cfg.Tracing == nil || *cfg.Tracing != want {
		t.Fatalf("tracing %+v, want %+v", cfg.Tracing, want)
	}
	if _, err := xds.NewSnapshot(cfg); err != nil {
		t.Fatal(err)
	}
}

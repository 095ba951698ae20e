package xds

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

var update = flag.Bool("update", false, "rewrite testdata/out golden files from the current translator")

// goldenInputs returns the config files under testdata/in, by base name.
func goldenInputs(t testing.TB) map[string]Config {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	out := map[string]Config{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cfg Config
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = cfg
	}
	return out
}

func buildResources(t testing.TB, cfg Config) *Resources {
	t.Helper()
	x, err := Translate(cfg)
	if err != nil {
		t.Fatalf("translate: %v", err)
	}
	res, err := Build(x)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return res
}

// TestGeneratedEnvoyConfigMatchesGoldenFiles pins the exact Envoy resources per input; review the diff of
// testdata/out after `go test ./internal/xds -update`.
func TestGeneratedEnvoyConfigMatchesGoldenFiles(t *testing.T) {
	for name, cfg := range goldenInputs(t) {
		t.Run(name, func(t *testing.T) {
			res := buildResources(t, cfg)
			for kind, list := range map[string][]types.Resource{
				"listeners": res.Listeners, "routes": res.Routes, "clusters": res.Clusters, "secrets": res.Secrets,
			} {
				if kind == "secrets" && len(list) == 0 {
					continue // only inputs with listener TLS have a secrets file
				}
				got := toYAML(t, list)
				path := filepath.Join("testdata", "out", name+"."+kind+".yaml")
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/xds -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the generated config; run go test ./internal/xds -update and review the diff\n--- got ---\n%s", path, got)
				}
			}
		})
	}
}

// toYAML renders resources as a YAML list through protojson, so the files read like Envoy docs.
func toYAML(t testing.TB, list []types.Resource) []byte {
	t.Helper()
	var seq yaml.Node
	seq.Kind = yaml.SequenceNode
	for _, r := range list {
		b, err := protojson.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		n := doc.Content[0]
		blockStyle(n)
		seq.Content = append(seq.Content, n)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&seq); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// blockStyle drops the JSON flow style and quoting; the encoder re-quotes where YAML needs it.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func TestSameConfigGivesSameVersionAndAChangeGivesANewOne(t *testing.T) {
	cfg := goldenInputs(t)["patient-access"]
	v1, err := buildResources(t, cfg).Version()
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := buildResources(t, cfg).Version()
	if v1 != v2 {
		t.Fatalf("same config, versions %s and %s", v1, v2)
	}
	cfg.APIs = append(cfg.APIs, API{Name: "provider-access", PathPrefix: "/provider-access/fhir"})
	v3, _ := buildResources(t, cfg).Version()
	if v3 == v1 {
		t.Fatalf("added an API, version stayed %s", v1)
	}
}

func TestSnapshotIsConsistentForEveryGoldenInput(t *testing.T) {
	for name, cfg := range goldenInputs(t) {
		snap, err := NewSnapshot(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if snap.GetVersion(snapshotTypeURL) == "" {
			t.Fatalf("%s: snapshot without version", name)
		}
	}
}

func TestTranslateRefusesBadConfigAndNamesEveryProblem(t *testing.T) {
	good := func() Config {
		return Config{
			Listener:     Endpoint{Host: "127.0.0.1", Port: 10000},
			FHIRServer:   FHIRServer{Host: "127.0.0.1", Port: 8090},
			AuthzService: Endpoint{Host: "127.0.0.1", Port: 9191},
			LocalService: Endpoint{Host: "127.0.0.1", Port: 9192},
			PublicURL:    "https://fhir.example.com",
			APIs:         []API{{Name: "patient-access", PathPrefix: "/patient-access/fhir"}},
		}
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"no APIs", func(c *Config) { c.APIs = nil }, []string{"no routes"}},
		{"listener on a DNS name", func(c *Config) { c.Listener.Host = "localhost" }, []string{"must be an IP address"}},
		{"port zero", func(c *Config) { c.AuthzService.Port = 0 }, []string{"fhirwall_authz: port 0"}},
		{"port too big", func(c *Config) { c.FHIRServer.Port = 70000 }, []string{"cluster fhir_server_patient-access: port 70000"}},
		{"no local listener for the API documents", func(c *Config) { c.LocalService = Endpoint{} }, []string{"fhirwall_local: port 0", "fhirwall_local: host"}},
		{"prefix without slash", func(c *Config) { c.APIs[0].PathPrefix = "patient-access" }, []string{"path prefix"}},
		{"prefix with a query", func(c *Config) { c.APIs[0].PathPrefix = "/p?x=1" }, []string{"path prefix"}},
		{"prefix with escaped slash", func(c *Config) { c.APIs[0].PathPrefix = "/p%2Ffhir" }, []string{"path prefix"}},
		{"prefix with dot segment", func(c *Config) { c.APIs[0].PathPrefix = "/a/../fhir" }, []string{"dot segment"}},
		{"root prefix", func(c *Config) { c.APIs[0].PathPrefix = "/" }, []string{"path prefix"}},
		{"bad API name", func(c *Config) { c.APIs[0].Name = "Patient Access" }, []string{"route name"}},
		{"duplicate API", func(c *Config) { c.APIs = append(c.APIs, c.APIs[0]) }, []string{"defined twice", "overlap"}},
		{"nested prefixes", func(c *Config) {
			c.APIs = append(c.APIs, API{Name: "inner", PathPrefix: "/patient-access/fhir/Patient"})
		}, []string{"overlap"}},
		{"prefixes differing in case", func(c *Config) {
			c.APIs = append(c.APIs, API{Name: "other", PathPrefix: "/Patient-Access/FHIR"})
		}, []string{"overlap"}},
		{"bad FHIR base path", func(c *Config) { c.FHIRServer.BasePath = "fhir" }, []string{"rewrite prefix"}},
		{"empty host", func(c *Config) { c.FHIRServer.Host = "" }, []string{"neither an IP address nor a DNS name"}},
		{"IPv6 zone", func(c *Config) { c.AuthzService.Host = "fe80::1%eth0" }, []string{"neither an IP address nor a DNS name"}},
		{"no public URL", func(c *Config) { c.PublicURL = "" }, []string{"public_url is empty"}},
		{"public URL without a scheme", func(c *Config) { c.PublicURL = "fhir.example.com" }, []string{"absolute http:// or https://"}},
		{"public URL of another scheme", func(c *Config) { c.PublicURL = "ftp://fhir.example.com" }, []string{"absolute http:// or https://"}},
		{"public URL with a query", func(c *Config) { c.PublicURL = "https://fhir.example.com?x=1" }, []string{"no user info, query"}},
		{"public URL with user info", func(c *Config) { c.PublicURL = "https://evil.example@fhir.example.com" }, []string{"no user info, query"}},
		{"public URL with an escaped path", func(c *Config) { c.PublicURL = "https://fhir.example.com/a%2Fb" }, []string{"no user info, query"}},
		{"public URL with a bad host", func(c *Config) { c.PublicURL = "https://fhir_example.com" }, []string{"forwarded host"}},
		{"several problems at once", func(c *Config) {
			c.Listener.Port = 0
			c.FHIRServer.Host = "bad host"
			c.APIs[0].PathPrefix = ""
		}, []string{"listener: port 0", "bad host", "path prefix"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mutate(&cfg)
			_, err := Translate(cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ir.ErrInvalid) {
				t.Errorf("error does not wrap ir.ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestFHIRServerLinksNameThePublicURLNeverTheClientsHost: every route to the FHIR server sends the public
// base from the configuration as literal x-forwarded-* values and removes the other headers the server
// would build its links from; nothing is taken from the request (no %REQ(...)% command operator).
func TestFHIRServerLinksNameThePublicURLNeverTheClientsHost(t *testing.T) {
	cfg := goldenInputs(t)["cms-apis-dns"] // public_url https://api.payer.example/fhirwall/
	res := buildResources(t, cfg)
	rc := res.Routes[0].(*routev3.RouteConfiguration)
	seen := 0
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		if !strings.HasPrefix(r.GetRoute().GetCluster(), FHIRServerClusterPrefix) {
			continue
		}
		seen++
		set := map[string]string{}
		for _, h := range r.GetRequestHeadersToAdd() {
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			if strings.Contains(h.GetHeader().GetValue(), "%") {
				t.Errorf("route %s: %s = %q takes a value from the request", r.GetName(), h.GetHeader().GetKey(), h.GetHeader().GetValue())
			}
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("route %s: %s would keep the client's value beside it", r.GetName(), h.GetHeader().GetKey())
			}
		}
		want := map[string]string{"x-forwarded-host": "api.payer.example", "x-forwarded-proto": "https",
			"x-forwarded-prefix": "/fhirwall/" + r.GetName() + "/fhir"}
		for k, v := range want {
			if set[k] != v {
				t.Errorf("route %s: %s = %q, want %q", r.GetName(), k, set[k], v)
			}
		}
		for _, h := range []string{"forwarded", "x-forwarded-port", "x-forwarded-ssl"} {
			if !slices.Contains(r.GetRequestHeadersToRemove(), h) {
				t.Errorf("route %s: the client's %s reaches the FHIR server", r.GetName(), h)
			}
		}
	}
	if seen != len(cfg.APIs) {
		t.Fatalf("%d routes to the FHIR server, want one per API (%d)", seen, len(cfg.APIs))
	}
}

func TestBuildRefusesAnIRThatWasNotValidated(t *testing.T) {
	x, err := Translate(goldenInputs(t)["patient-access"])
	if err != nil {
		t.Fatal(err)
	}
	x.Listener.ExtAuthz = nil // fail open would be the result: must not build
	if _, err := Build(x); !errors.Is(err, ir.ErrInvalid) {
		t.Fatalf("built a listener without ext_authz: %v", err)
	}
}

func TestReadyOnlyOnceASnapshotIsPublished(t *testing.T) {
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, CacheLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	pub := NewPublisher(snapshots, "n", slog.New(slog.NewTextHandler(io.Discard, nil)))
	h := HealthHandler(pub)
	status := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if status("/healthz") != 200 || status("/readyz") != 503 {
		t.Fatalf("before publishing: healthz %d, readyz %d", status("/healthz"), status("/readyz"))
	}
	if _, err := pub.Publish(context.Background(), goldenInputs(t)["patient-access"]); err != nil {
		t.Fatal(err)
	}
	if status("/readyz") != 200 {
		t.Fatalf("after publishing: readyz %d", status("/readyz"))
	}
}

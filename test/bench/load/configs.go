package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Loopback ports of the benchmark, apart from the stack's (test/stack/ports.env) so both can run.
const (
	issuerAddr        = "127.0.0.1:19050"
	upstreamAddr      = "127.0.0.1:19060"
	bareProxyAddr     = "127.0.0.1:19061"
	envoyAlonePort    = 19062
	standaloneAddr    = "127.0.0.1:19063"
	proxyGRPCAddr     = "127.0.0.1:19064"
	proxyAdminAddr    = "127.0.0.1:19065"
	proxyLocalAddr    = "127.0.0.1:19066"
	envoyFhirwallPort = 19067
	xdsAddr           = "127.0.0.1:19068"
	xdsAdminAddr      = "127.0.0.1:19069"
	envoyPeerPort     = 19070
	benchTopic        = "fhirwall.bench"
	hapiAddr          = "127.0.0.1:8090" // the stack's HAPI FHIR (test/stack/ports.env)
	nodeID            = "fhirwall-bench"
)

// fhirwallConfig is fhirwall's config for the benchmark: the production code paths (token verification,
// registry, classification, Rego, narrowing, response enforcement, the fsync'd audit spool shipped to Kafka),
// one API with the resources the request needs, rate limits high enough never to refuse the load.
func fhirwallConfig(dir, issuerURL, upstream string, standalone bool) (string, error) {
	grpc, http := proxyGRPCAddr, ""
	if standalone {
		grpc, http = "", standaloneAddr
	}
	cfg := fmt.Sprintf(`public_url: http://127.0.0.1:%d
fhir_server: {url: "http://%s/fhir", timeout: 30s, connect_timeout: 2s}
rate_limits:
  tiers: {standard: {per_second: 1000000, burst: 1000000}}
  anonymous: {per_second: 1000000, burst: 1000000}
issuers: [{url: %q, audience: %s, algorithms: [RS256]}]
registry: {file: registry/clients.yaml}
apis:
  - name: patient-access
    prefix: /patient-access/fhir
    resources:
      - {type: ExplanationOfBenefit, search_params: [_id, _lastUpdated, patient, type, service-date, status]}
      - {type: Patient, search_params: [_id]}
      - {type: Coverage, search_params: [_id, patient, status]}
    smart:
      capabilities: [launch-standalone, client-public, context-standalone-patient, permission-patient, permission-v2]
      scopes: [openid, fhirUser, launch/patient, patient/*.rs]
proxy: {grpc: %q, http: %q, admin: %q, local: %q, pprof: true, max_in_flight: 64, decision_keys_file: decision.keys}
audit:
  spool: {dir: spool}
  signing_key_file: signing.key
  kafka: {brokers: [127.0.0.1:9092], topic: %s}
jobs: {postgres_dsn: ""}
xds: {listen: %q, admin: %q, node_id: %s, envoy_listen: "127.0.0.1:%d", authz_address: %q, local_address: %q}
`, envoyFhirwallPort, upstream, issuerURL, audience, grpc, http, proxyAdminAddr, proxyLocalAddr, benchTopic,
		xdsAddr, xdsAdminAddr, nodeID, envoyFhirwallPort, proxyGRPCAddr, proxyLocalAddr)
	clients := `clients:
  - {id: patient-app, name: Benchmark member app, active: true, apis: [patient-access], scopes: [patient/*.rs, patient/*.read], tier: standard}
`
	// In a directory of its own: the registry watches its file's directory, and the run's directory takes
	// every log line and stats file, which made fhirwall-proxy reload the registry ~8 times a second under load.
	if err := os.MkdirAll(filepath.Join(dir, "registry"), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "registry", "clients.yaml"), []byte(clients), 0o600); err != nil {
		return "", err
	}
	// The key ext_authz seals each decision with for ext_proc (internal/seal): one random key per run.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "decision.keys"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "fhirwall.yaml")
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// envoyADSBootstrap is the stack's own bootstrap (config/envoy/bootstrap.yaml: Envoy fed by fhirwall-xds)
// with the benchmark's node id and ports, as test/stack/envoy.sh renders it with the stack's.
func envoyADSBootstrap(root string, adminPort int) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "config", "envoy", "bootstrap.yaml"))
	if err != nil {
		return "", err
	}
	out := string(b)
	for _, r := range [][2]string{
		{"id: fhirwall-envoy", "id: " + nodeID},
		{"port_value: 18000", "port_value: " + portOf(xdsAddr)},
		{"port_value: 9901", fmt.Sprintf("port_value: %d", adminPort)},
	} {
		if !strings.Contains(out, r[0]) {
			return "", fmt.Errorf("config/envoy/bootstrap.yaml no longer has %q", r[0])
		}
		out = strings.ReplaceAll(out, r[0], r[1])
	}
	return out, nil
}

// envoyStaticBootstrap routes the API prefix straight to the upstream; with peer set, after an ext_authz
// call to the gRPC server at peer (the peer slot: opa-envoy-plugin or any other).
func envoyStaticBootstrap(port, adminPort int, upstream, peer string) string {
	var authz, authzCluster string
	if peer != "" {
		host, p, _ := strings.Cut(peer, ":")
		authz = `
                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      grpc_service: {envoy_grpc: {cluster_name: peer_authz}, timeout: 2s}`
		authzCluster = fmt.Sprintf(`
    - name: peer_authz
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: peer_authz
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]`, host, p)
	}
	return fmt.Sprintf(`static_resources:
  listeners:
    - name: bench
      address: {socket_address: {address: 127.0.0.1, port_value: %d}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {prefix: "/patient-access/fhir/"}
                          route: {cluster: upstream, prefix_rewrite: "/fhir/"}
                http_filters:%s
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
    - name: upstream
      type: STATIC
      connect_timeout: 2s
      load_assignment:
        cluster_name: upstream
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %s}}}}]}]%s
admin: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
`, port, authz, portOf(upstream), authzCluster, adminPort)
}

func portOf(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	return p
}

// hapiMix is what a member's app asks when it opens: demographics, coverage, claims (two page sizes), one claim.
var hapiMix = []string{
	"/Patient/member-01",
	"/Coverage?patient=member-01",
	"/ExplanationOfBenefit?patient=member-01",
	"/ExplanationOfBenefit?patient=member-01&_count=5",
	"/ExplanationOfBenefit/eob-member-01-1",
}

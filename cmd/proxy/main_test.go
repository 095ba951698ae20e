package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/test/tlsfixture"
)

// fhirServer is an https FHIR server, certified for hapi.internal by a CA of its own, that remembers the
// SNI and path of every exchange. While slow is set it answers nothing for a minute.
type fhirServer struct {
	*httptest.Server
	caFile string
	slow   atomic.Bool
	mu     sync.Mutex
	seen   []string    // "<sni> <path>"
	header http.Header // of the last request
}

func newFHIRServer(t *testing.T) *fhirServer {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfixture.Generate(dir, 1, "hapi.internal"); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, tlsfixture.CertFile), filepath.Join(dir, tlsfixture.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	s := &fhirServer{caFile: filepath.Join(dir, tlsfixture.CAFile)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.TLS.ServerName+" "+r.URL.Path)
		s.header = r.Header.Clone()
		s.mu.Unlock()
		if s.slow.Load() {
			select {
			case <-time.After(time.Minute):
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.URL.Path == "/fhir/metadata" {
			_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"]}`)
			return
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":1}`)
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *fhirServer) lastHeader() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.header
}

func (s *fhirServer) exchanges() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// wire builds fhirwall-proxy as it would start from the example configuration, with fhir_server naming
// upstream (an https FHIR base) and caFile, and short timeouts.
func wire(t *testing.T, upstream, caFile string) (*proxy, *config.Config) {
	t.Helper()
	cfg := wireConfig(t, upstream, caFile, nil)
	p, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.spool.Close()
		p.close()
	})
	return p, cfg
}

// wireConfig is the configuration wire builds from, changed by edit (nil: none) before it is loaded.
func wireConfig(t *testing.T, upstream, caFile string, edit func(doc map[string]any, dir string)) *config.Config {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "config", "fhirwall.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	doc["public_url"] = "https://api.payer.example"
	doc["fhir_server"] = map[string]any{"url": upstream, "ca_file": caFile, "server_name": "hapi.internal",
		"timeout": "400ms", "connect_timeout": "1s", "lookup_timeout": "200ms"}
	clients, err := filepath.Abs(filepath.Join("..", "..", "config", "clients.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc["registry"] = map[string]any{"file": clients}
	// prior_auth.rules_file is relative to the config file, which is written elsewhere here.
	rules, err := filepath.Abs(filepath.Join("..", "..", "config", "prior-auth-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc["prior_auth"].(map[string]any)["rules_file"] = rules
	// Bulk-job ownership in memory, the file registry and no portal: a unit test must not need the stack's
	// PostgreSQL or Keycloak.
	doc["jobs"] = map[string]any{"postgres_dsn": ""}
	doc["portal"] = map[string]any{"listen": ""}
	doc["admin"] = map[string]any{"token_file": ""}
	// Local rate limits only: the global limit's service (127.0.0.1:8083) is the stack's, and without it every
	// limited request would be refused (fail closed).
	doc["rate_limits"].(map[string]any)["global"] = map[string]any{"address": ""}
	doc["proxy"] = map[string]any{"grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "public_url": "https://standalone.payer.example/gw",
		"decision_keys_file": filepath.Join(dir, "decision.keys")}
	if err := os.WriteFile(filepath.Join(dir, "decision.keys"), []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc["audit"] = map[string]any{"spool": map[string]any{"dir": filepath.Join(dir, "spool")},
		"signing_key_file": filepath.Join(dir, "signing.key")}
	if err := audit.GenerateKey(filepath.Join(dir, "signing.key")); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(doc, dir)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fhirwall.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestWiringRewritesLinksFromTheFHIRServerToEachAPIsPublicBase(t *testing.T) {
	srv := newFHIRServer(t)
	p, cfg := wire(t, srv.URL+"/fhir", srv.caFile)
	if p.core.UpstreamBase != cfg.FHIRServer.URL {
		t.Errorf("Core.UpstreamBase %q, want fhir_server.url %q", p.core.UpstreamBase, cfg.FHIRServer.URL)
	}
	if p.core.PublicBase == nil {
		t.Fatal("Core.PublicBase is not set: links and bulk manifests would name the FHIR server")
	}
	for api, want := range map[string]string{
		"patient-access":  "https://api.payer.example/patient-access/fhir",
		"provider-access": "https://api.payer.example/provider-access/fhir",
	} {
		if got := p.core.PublicBase(api); got != want {
			t.Errorf("PublicBase(%s) = %q, want %q", api, got, want)
		}
	}
}

func TestWiringGivesTheStandaloneProxyItsConfiguredPublicURL(t *testing.T) {
	srv := newFHIRServer(t)
	p, cfg := wire(t, srv.URL+"/fhir", srv.caFile)
	if p.gateway.Public == nil || p.gateway.Public.String() != cfg.Proxy.PublicURL {
		t.Fatalf("gateway.Public = %v, want proxy.public_url %q: links would be built without it", p.gateway.Public, cfg.Proxy.PublicURL)
	}
	// What the FHIR server is told, whatever Host the client used.
	p.gateway.Local = nil
	req := httptest.NewRequest(http.MethodGet, "/patient-access/fhir/metadata", nil)
	req.Host = "evil.example"
	req.Header.Set("Forwarded", "host=evil.example")
	rec := httptest.NewRecorder()
	p.gateway.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("metadata: %d %s", rec.Code, rec.Body)
	}
	if seen := srv.lastHeader(); seen.Get("X-Forwarded-Host") != "standalone.payer.example" || seen.Get("X-Forwarded-Proto") != "https" ||
		seen.Get("X-Forwarded-Prefix") != "/gw/patient-access/fhir" || seen.Get("Forwarded") != "" {
		t.Errorf("the FHIR server was told %v", seen)
	}
}

// metadata asks the standalone proxy for an API's CapabilityStatement as the FHIR server writes it (the
// generated one is switched off), so the exchange goes through the gateway's transport.
func metadata(p *proxy) *httptest.ResponseRecorder {
	p.gateway.Local = nil
	rec := httptest.NewRecorder()
	p.gateway.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/patient-access/fhir/metadata", nil))
	return rec
}

func TestEveryFHIRServerCallTrustsOnlyTheConfiguredCAAndSendsItsServerName(t *testing.T) {
	srv := newFHIRServer(t)
	p, _ := wire(t, srv.URL+"/fhir", srv.caFile)
	ctx := context.Background()

	if ok, err := p.core.Compartment.Matches(ctx, "Observation", "o1", nil); err != nil || !ok {
		t.Errorf("compartment check: %v %v", ok, err)
	}
	if _, err := p.core.Attribution.Attributed(ctx, "Organization/org-a"); err != nil && !errors.Is(err, decision.ErrNoAttribution) {
		t.Errorf("attribution: %v", err)
	}
	if _, err := p.core.Consent.OptedOut(ctx); err != nil {
		t.Errorf("consent: %v", err)
	}
	if rec := metadata(p); rec.Code != http.StatusOK {
		t.Errorf("standalone proxy: %d %s", rec.Code, rec.Body)
	}
	seen := strings.Join(srv.exchanges(), "\n")
	for _, path := range []string{"/fhir/Observation", "/fhir/Group", "/fhir/Consent", "/fhir/metadata"} {
		if !strings.Contains(seen, "hapi.internal "+path) {
			t.Errorf("no exchange for %s with SNI hapi.internal; saw:\n%s", path, seen)
		}
	}

	// The same server, configured with a CA that did not sign its certificate: nothing may reach it.
	otherCA := t.TempDir()
	if err := tlsfixture.Generate(otherCA, 1, "hapi.internal"); err != nil {
		t.Fatal(err)
	}
	stranger, _ := wire(t, srv.URL+"/fhir", filepath.Join(otherCA, tlsfixture.CAFile))
	if _, err := stranger.core.Compartment.Matches(ctx, "Observation", "o1", nil); err == nil {
		t.Error("compartment check trusted a certificate from another CA")
	}
	if rec := metadata(stranger); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("standalone proxy through an untrusted certificate: %d, want 503", rec.Code)
	}
}

func TestFHIRServerTimeoutsComeFromTheConfig(t *testing.T) {
	srv := newFHIRServer(t)
	p, _ := wire(t, srv.URL+"/fhir", srv.caFile)
	srv.slow.Store(true)

	start := time.Now()
	if _, err := p.core.Compartment.Matches(context.Background(), "Observation", "o1", nil); err == nil {
		t.Fatal("a compartment check outlived the FHIR server's silence")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("compartment check gave up after %v, want fhir_server.lookup_timeout (200ms)", took)
	}
	start = time.Now()
	if rec := metadata(p); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("standalone proxy on a silent FHIR server: %d, want 503", rec.Code)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("standalone proxy gave up after %v, want fhir_server.timeout (400ms)", took)
	}
}

func TestWiringRefusesAnHTTPSServerItCannotVerify(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{FHIRServer: config.FHIRServer{URL: "https://hapi.internal/fhir", CAFile: filepath.Join(dir, "missing.pem")}}
	if _, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "fhir_server") {
		t.Errorf("build with an unreadable CA file: %v, want an error naming fhir_server", err)
	}
}

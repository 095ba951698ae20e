package fhirserver

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/tlsfixture"
)

// tlsServer is an https FHIR server whose certificate (for hapi.internal only) is signed by a CA of its
// own; it remembers the SNI names it was asked for.
type tlsServer struct {
	*httptest.Server
	caFile string
	mu     sync.Mutex
	sni    []string
}

func newTLSServer(t *testing.T, h http.Handler) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfixture.Generate(dir, 1, "hapi.internal"); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, tlsfixture.CertFile), filepath.Join(dir, tlsfixture.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{Server: httptest.NewUnstartedServer(h), caFile: filepath.Join(dir, tlsfixture.CAFile)}
	s.TLS = &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		s.mu.Lock()
		s.sni = append(s.sni, hello.ServerName)
		s.mu.Unlock()
		return &cert, nil
	}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsServer) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sni...)
}

func countBundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/fhir+json")
	_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","total":1}`))
}

func TestDialTrustsOnlyTheConfiguredCAAndSendsTheServerName(t *testing.T) {
	srv := newTLSServer(t, http.HandlerFunc(countBundle))
	up, err := Dial(Settings{URL: srv.URL + "/fhir", CAFile: srv.caFile, ServerName: "hapi.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if tc := up.Transport.TLSClientConfig; tc.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS minimum version %x, want 1.2 or later", tc.MinVersion)
	}
	ok, err := New(up.Base(), up.Lookups).Matches(context.Background(), "Observation", "o1", nil)
	if err != nil || !ok {
		t.Fatalf("lookup through the configured CA and name: %v %v", ok, err)
	}
	if got := srv.names(); len(got) == 0 || got[0] != "hapi.internal" {
		t.Errorf("SNI %q, want hapi.internal", got)
	}

	// The same server under the name the URL gives (127.0.0.1): its certificate does not name it.
	byHost, err := Dial(Settings{URL: srv.URL + "/fhir", CAFile: srv.caFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(byHost.Base(), byHost.Lookups).Matches(context.Background(), "Observation", "o1", nil); err == nil {
		t.Error("a certificate for hapi.internal was accepted for 127.0.0.1")
	}

	// A server whose certificate another CA signed (httptest's own, which the system does not trust either).
	other := httptest.NewTLSServer(http.HandlerFunc(countBundle))
	defer other.Close()
	stranger, err := Dial(Settings{URL: other.URL + "/fhir", CAFile: srv.caFile, ServerName: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stranger.Lookups.Get(other.URL + "/fhir/metadata")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a certificate from another CA was accepted")
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %v, want a certificate verification failure", err)
	}
}

func TestDialTimeoutsBoundTheWait(t *testing.T) {
	srv := slowServer(t, time.Hour)
	up, err := Dial(Settings{URL: srv.URL + "/fhir", Timeout: 150 * time.Millisecond, LookupTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if up.Transport.ResponseHeaderTimeout != 150*time.Millisecond || up.Lookups.Timeout != 50*time.Millisecond {
		t.Fatalf("timeouts %v/%v, want the configured 150ms/50ms", up.Transport.ResponseHeaderTimeout, up.Lookups.Timeout)
	}
	start := time.Now()
	if _, err := New(up.Base(), up.Lookups).Matches(context.Background(), "Observation", "o1", nil); err == nil {
		t.Fatal("a lookup outlived fhir_server.lookup_timeout")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("lookup gave up after %v, want about 50ms", took)
	}
	// The gateway's exchanges: the transport itself gives up waiting for the answer's headers.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/fhir/Patient", nil)
	start = time.Now()
	resp, err := up.Transport.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("an exchange outlived fhir_server.timeout")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("exchange gave up after %v, want about 150ms", took)
	}
}

func TestDialDefaults(t *testing.T) {
	up, err := Dial(Settings{URL: "http://127.0.0.1:8090/fhir/"})
	if err != nil {
		t.Fatal(err)
	}
	if up.Base() != "http://127.0.0.1:8090/fhir" || up.Transport.ResponseHeaderTimeout != DefaultTimeout ||
		up.Transport.TLSHandshakeTimeout != DefaultConnectTimeout || up.Lookups.Timeout != DefaultLookupTimeout ||
		up.Lookups.Transport != up.Transport || up.Transport.Proxy != nil {
		t.Errorf("defaults: base %q, %v %v %v, shared transport %v", up.Base(), up.Transport.ResponseHeaderTimeout,
			up.Transport.TLSHandshakeTimeout, up.Lookups.Timeout, up.Lookups.Transport == up.Transport)
	}
}

func TestDialRefusesWhatCannotBeVerified(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Settings{
		"https without a CA":    {URL: "https://hapi.internal/fhir"},
		"CA file missing":       {URL: "https://hapi.internal/fhir", CAFile: filepath.Join(dir, "missing.pem")},
		"CA file without a PEM": {URL: "https://hapi.internal/fhir", CAFile: empty},
		"CA for plain http":     {URL: "http://hapi.internal/fhir", CAFile: empty},
		"server name for http":  {URL: "http://hapi.internal/fhir", ServerName: "hapi.internal"},
		"not a URL":             {URL: "hapi.internal"},
	} {
		if _, err := Dial(s); err == nil {
			t.Errorf("%s: Dial accepted %+v", name, s)
		}
	}
}

package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// linkHeaders are the request headers HAPI (ApacheProxyAddressStrategy) and Spring's ForwardedHeaderUtils
// build a server's public base from.
var linkHeaders = []string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Ssl"}

// echoingHAPI is a fake FHIR server that answers a searchset whose next link it builds from the forwarded
// headers, as HAPI does, and remembers the Host and forwarded headers of the last request.
type echoingHAPI struct {
	*httptest.Server
	mu   sync.Mutex
	seen http.Header
}

func newEchoingHAPI(t *testing.T) *echoingHAPI {
	t.Helper()
	e := &echoingHAPI{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := http.Header{"Host": {r.Host}}
		for _, h := range linkHeaders {
			if v := r.Header.Values(h); len(v) > 0 {
				seen[h] = v
			}
		}
		e.mu.Lock()
		e.seen = seen
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"`+forwardedBase(r)+`?_getpages=p1&_getpagesoffset=1"}]}`)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echoingHAPI) lastSeen() http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen
}

func TestClientHostAndForwardedHeadersNeverReachTheFHIRServer(t *testing.T) {
	hapi := newEchoingHAPI(t)
	upstream, _ := url.Parse(hapi.URL + "/fhir")
	gw := newFakeGateway(&fakeSink{records: make(chan audit.Record, 64)}, upstream)
	gw.Public, _ = url.Parse("https://fhir.payer.example/gw")
	front := httptest.NewServer(gw)
	defer front.Close()

	want := http.Header{
		"Host":               {upstream.Host},
		"X-Forwarded-Host":   {"fhir.payer.example"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Prefix": {"/gw/patient-access/fhir"},
	}
	const next = "https://fhir.payer.example/gw/patient-access/fhir?_getpages=p1&_getpagesoffset=1"
	for _, sent := range []http.Header{
		{},
		{"Host": {"evil.example"}},
		{"Host": {"evil.example:443"}, "X-Forwarded-Proto": {"http"}},
		{"Forwarded": {"host=evil.example;proto=http"}},
		{"Forwarded": {"for=1.2.3.4", "host=evil.example"}},
		{"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Prefix": {"//evil.example"}, "X-Forwarded-Port": {"8443"}, "X-Forwarded-Ssl": {"off"}},
	} {
		req, _ := http.NewRequest("GET", front.URL+"/patient-access/fhir/Observation?code=x", nil)
		req.Header.Set("Authorization", "Bearer member-token")
		for k, v := range sent {
			req.Header[k] = v
		}
		if h := sent.Get("Host"); h != "" {
			req.Host = h
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b struct{ Link []struct{ URL string } }
		err = json.NewDecoder(resp.Body).Decode(&b)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("client sent %v: %d %v", sent, resp.StatusCode, err)
		}
		got := hapi.lastSeen()
		for _, h := range append([]string{"Host"}, linkHeaders...) {
			if g, w := strings.Join(got.Values(h), ", "), strings.Join(want.Values(h), ", "); g != w {
				t.Errorf("client sent %v: the FHIR server saw %s %q, want %q", sent, h, g, w)
			}
		}
		if len(b.Link) != 1 || b.Link[0].URL != next {
			t.Errorf("client sent %v: next link %v, want %s", sent, b.Link, next)
		}
	}
}

func TestStandaloneManifestsNameTheConfiguredBaseNotTheClientsHost(t *testing.T) {
	gw := newFakeGateway(&fakeSink{records: make(chan audit.Record, 8)}, fakeHAPI(t))
	gw.core.Jobs = decision.NewInMemoryJobs(0, nil)
	gw.Public, _ = url.Parse("http://127.0.0.1:8080")
	front := httptest.NewServer(gw)
	defer front.Close()

	req, _ := http.NewRequest("GET", front.URL+"/patient-access/fhir/$export-poll-status?_jobId=done", nil)
	req.Header.Set("Authorization", "Bearer member-token")
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), "evil.example") ||
		!strings.Contains(string(b), `"request":"http://127.0.0.1:8080/patient-access/fhir/Group/g1/$export?_type=Patient"`) {
		t.Errorf("manifest asked for with Host evil.example: %d %s", resp.StatusCode, b)
	}
}

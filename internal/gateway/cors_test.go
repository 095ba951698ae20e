package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// corsGateway is the fake gateway admitting https://app.example to patient-access data; upstreamHits counts
// what reached the FHIR server and records what was audited.
func corsGateway(t *testing.T) (base string, upstreamHits *atomic.Int32, records chan audit.Record) {
	t.Helper()
	upstreamHits = &atomic.Int32{}
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		upstreamHits.Add(1)
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("Access-Control-Allow-Origin", "*") // an upstream's own CORS never passes
		w.Write([]byte(memberObservation))
	}))
	t.Cleanup(fhir.Close)
	sink := &fakeSink{records: make(chan audit.Record, 16)}
	u, _ := url.Parse(fhir.URL + "/fhir")
	g := newFakeGateway(sink, u)
	g.CORSOrigins = map[string][]string{"patient-access": {"https://app.example"}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv.URL, upstreamHits, sink.records
}

func send(t *testing.T, method, url string, h http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestPreflightIsAnsweredWithoutTokenDecisionAuditOrFHIRServer(t *testing.T) {
	base, hits, records := corsGateway(t)
	for _, tc := range []struct {
		path, origin string
		admitted     bool
	}{
		{"/patient-access/fhir/Observation", "https://app.example", true},
		{"/patient-access/fhir/Observation", "https://evil.example", false},
		{"/patient-access/fhir/Observation", "null", false},
		{"/patient-access/fhir/metadata", "https://anyone.example", true},
		{"/patient-access/fhir/.well-known/smart-configuration", "https://anyone.example", true},
	} {
		resp := send(t, "OPTIONS", base+tc.path, http.Header{"Origin": {tc.origin}, "Access-Control-Request-Method": {"GET"},
			"Access-Control-Request-Headers": {"authorization"}})
		acao := resp.Header.Get("Access-Control-Allow-Origin")
		if resp.StatusCode != 200 || (tc.admitted && acao != tc.origin) || (!tc.admitted && acao != "") {
			t.Fatalf("%s from %s: got %d ACAO %q", tc.path, tc.origin, resp.StatusCode, acao)
		}
		if tc.admitted && (!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET")) {
			t.Fatalf("%s: preflight headers %v", tc.path, resp.Header)
		}
		if resp.Header.Get("Access-Control-Allow-Credentials") != "" || !slices.Contains(resp.Header.Values("Vary"), "Origin") {
			t.Fatalf("%s: credentials or no Vary: %v", tc.path, resp.Header)
		}
	}
	if hits.Load() != 0 || len(records) != 0 {
		t.Fatalf("preflights reached the FHIR server (%d) or were audited (%d)", hits.Load(), len(records))
	}
}

func TestAdmittedOriginReadsAnswersAndRefusalsOthersReadNothing(t *testing.T) {
	base, _, _ := corsGateway(t)
	for _, tc := range []struct {
		name, token string
		status      int
	}{{"allowed", "Bearer member-token", 200}, {"refused token", "Bearer stolen", 401}, {"no token", "", 401}} {
		h := http.Header{"Origin": {"https://app.example"}}
		if tc.token != "" {
			h.Set("Authorization", tc.token)
		}
		resp := send(t, "GET", base+"/patient-access/fhir/Observation?code=x", h)
		if resp.StatusCode != tc.status || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			len(resp.Header.Values("Access-Control-Allow-Origin")) != 1 ||
			!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") ||
			!slices.Contains(resp.Header.Values("Vary"), "Origin") {
			t.Fatalf("%s: got %d %v", tc.name, resp.StatusCode, resp.Header)
		}
		h.Set("Origin", "https://evil.example")
		if resp := send(t, "GET", base+"/patient-access/fhir/Observation?code=x", h); resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%s: a foreign origin got %v", tc.name, resp.Header)
		}
	}
}

func TestRefusedTokenGetsInvalidTokenChallengeAndNoTokenThePlainOne(t *testing.T) {
	base, _, _ := corsGateway(t)
	for token, want := range map[string]string{
		"Bearer stolen": `Bearer realm="fhirwall", error="invalid_token"`,
		"":              `Bearer realm="fhirwall"`,
	} {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", token)
		}
		if resp := send(t, "GET", base+"/patient-access/fhir/Observation?code=x", h); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
			t.Fatalf("token %q: got %d %q, want %q", token, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
	}
}

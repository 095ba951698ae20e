package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// fakeHAPI answers as HAPI does: X-Powered-By on everything, a bulk poll in progress (202, no Retry-After
// for job "running"), and a complete manifest whose request names HAPI's own address.
func fakeHAPI(t *testing.T) *url.URL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Powered-By", "HAPI FHIR 8.8.0 REST Server (FHIR Server; FHIR 4.0.1/R4)")
		switch {
		case r.URL.Path == "/fhir/$export-poll-status" && r.URL.Query().Get("_jobId") == "running":
			w.Header().Set("X-Progress", "Build in progress")
			w.WriteHeader(http.StatusAccepted)
		case r.URL.Path == "/fhir/$export-poll-status":
			w.Header().Set("Content-Type", "application/json;charset=ISO-8859-1")
			io.WriteString(w, `{"transactionTime":"2026-12-06T15:12:39.830+00:00","request":"http://127.0.0.1:8090/fhir/Group/g1/$export?_type=Patient",
"requiresAccessToken":true,"output":[{"type":"Patient","url":"`+forwardedBase(r)+`/Binary/f1"}],"error":[]}`)
		default:
			w.Header().Set("Content-Type", "application/fhir+json")
			io.WriteString(w, memberObservation)
		}
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/fhir")
	return u
}

// getAs sends a GET for path below the API base with the member's token.
func getAs(t *testing.T, base, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/patient-access/fhir"+path, nil)
	req.Header.Set("Authorization", "Bearer member-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// forwardedBase is the base HAPI's ApacheProxyAddressStrategy builds from the forwarded headers.
func forwardedBase(r *http.Request) string {
	return r.Header.Get("X-Forwarded-Proto") + "://" + r.Header.Get("X-Forwarded-Host") + r.Header.Get("X-Forwarded-Prefix")
}

func TestStandaloneAnswersHideTheServerBannerAndKeepBulkPollsHonest(t *testing.T) {
	gw := newFakeGateway(&fakeSink{records: make(chan audit.Record, 8)}, fakeHAPI(t))
	gw.core.Jobs = decision.NewInMemoryJobs(0, nil)
	gw.Public, _ = url.Parse("https://fhir.payer.example")
	front := httptest.NewServer(gw)
	defer front.Close()

	for _, path := range []string{"/Observation?code=x", "/$export-poll-status?_jobId=running", "/$export-poll-status?_jobId=done"} {
		if resp := getAs(t, front.URL, path); resp.Header.Get("X-Powered-By") != "" {
			t.Errorf("%s: X-Powered-By %q left", path, resp.Header.Get("X-Powered-By"))
		}
	}
	running := getAs(t, front.URL, "/$export-poll-status?_jobId=running")
	if running.StatusCode != http.StatusAccepted || running.Header.Get("Retry-After") != decision.DefaultRetryAfter {
		t.Errorf("poll in progress: %d, Retry-After %q, want 202 and %s", running.StatusCode, running.Header.Get("Retry-After"), decision.DefaultRetryAfter)
	}
	done := getAs(t, front.URL, "/$export-poll-status?_jobId=done")
	if ct := done.Header.Get("Content-Type"); done.StatusCode != http.StatusOK || ct != "application/json" {
		t.Fatalf("manifest: %d, Content-Type %q, want 200 application/json", done.StatusCode, ct)
	}
	var m struct {
		Request string
		Output  []struct{ URL string }
	}
	if err := json.NewDecoder(done.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	base := "https://fhir.payer.example/patient-access/fhir"
	if m.Request != base+"/Group/g1/$export?_type=Patient" || len(m.Output) != 1 || m.Output[0].URL != base+"/Binary/f1" {
		t.Errorf("manifest names %q and %v, want both under the proxy's public base %s", m.Request, m.Output, base)
	}
	if strings.Contains(m.Request, ":8090") {
		t.Errorf("manifest names the FHIR server: %s", m.Request)
	}
}

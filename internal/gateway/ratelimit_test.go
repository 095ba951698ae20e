package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
)

// The standalone proxy refuses a client over its tier's burst as Envoy's local rate limit does: 429 with
// Retry-After and an OperationOutcome, audited with the 429, and the FHIR server never sees the request.
func TestStandaloneRefusesAClientOverItsLimitWith429(t *testing.T) {
	var upstream int
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream++
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset"}`)
	}))
	defer fhir.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sink := &fakeSink{records: make(chan audit.Record, 16)}
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: sink, Log: log, Now: time.Now}
	u, _ := url.Parse(fhir.URL + "/fhir")
	g := New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, u, http.DefaultTransport, log)
	frozen := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) // no refill between requests
	g.Limiter = ratelimit.New(ratelimit.Limits{
		Tiers:     map[string]ratelimit.Rate{"standard": {PerSecond: 1, Burst: 2}},
		Anonymous: ratelimit.Rate{PerSecond: 1, Burst: 2},
	}, func() time.Time { return frozen })
	srv := httptest.NewServer(g)
	defer srv.Close()

	send := func() *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Observation?patient=member-01", nil)
		req.Header.Set("Authorization", "Bearer member-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 2 {
		resp := send()
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, resp.StatusCode)
		}
		<-sink.records
	}
	resp := send()
	defer resp.Body.Close()
	var oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&oo); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || oo.ResourceType != "OperationOutcome" || oo.Issue[0].Code != "throttled" {
		t.Fatalf("over the limit: %d Retry-After=%q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), oo)
	}
	if rec := <-sink.records; rec.Status != 429 {
		t.Fatalf("audit record status %d, want 429", rec.Status)
	}
	if upstream != 2 {
		t.Fatalf("the FHIR server saw %d requests, want the 2 within the limit", upstream)
	}
}

package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// memberObservation is the fake FHIR server's one resource: member-01's.
const memberObservation = `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/member-01"}}`

// serveObservation is a fake FHIR server answering memberObservation, after wait (nil: at once).
func serveObservation(t *testing.T, wait func()) *url.URL {
	t.Helper()
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if wait != nil {
			wait()
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, memberObservation)
	}))
	t.Cleanup(fhir.Close)
	u, _ := url.Parse(fhir.URL + "/fhir")
	return u
}

// newFakeGateway is the gateway with the fake token, registry and policy of enforce_test.go, writing its
// audit records to sink, in front of upstream.
func newFakeGateway(sink decision.Sink, upstream *url.URL) *Gateway {
	log := slog.New(slog.DiscardHandler)
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: sink, Log: log, Now: time.Now}
	return New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, upstream, http.DefaultTransport, log)
}

// getObservations sends member-01's Observation search to the gateway at base.
func getObservations(base string) (*http.Response, error) {
	req, _ := http.NewRequest("GET", base+"/patient-access/fhir/Observation?code=x", nil)
	req.Header.Set("Authorization", "Bearer member-token")
	return http.DefaultClient.Do(req)
}

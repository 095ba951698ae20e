package extproc

import (
	"context"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
)

// pollDecision is an allowed poll of a bulk export's status, under a compartment (its manifest is enforced).
func pollDecision(t *testing.T, id string) *decision.Decision {
	t.Helper()
	req, err := fhir.Classify("GET", "/$export-poll-status", "_jobId=job-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &decision.Decision{ID: id, Allow: true, Request: req,
		Input:  decision.Input{API: "provider-access", Method: "GET", Path: "/$export-poll-status", RawQuery: "_jobId=job-1"},
		Policy: policy.Result{Allow: true, Obligations: policy.Obligations{Compartment: &policy.Compartment{Patients: []string{"member-01"}}}}}
}

// answerHeaders plays Envoy up to the response headers (with end_of_stream as given) and returns the
// server's answer to them.
func answerHeaders(t *testing.T, c testClient, id string, h *corev3.HeaderMap, endOfStream bool) *extprocv3.ProcessingResponse {
	t.Helper()
	s, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseSend()
	for _, r := range []*extprocv3.ProcessingRequest{
		c.requestHeaders(id),
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: h, EndOfStream: endOfStream}}},
	} {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestServerBannerNeverLeavesAndBulkPollsAreHonest(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 8)}
	passThrough := func(_ context.Context, _ *decision.Decision, status int, _ string, body []byte) (decision.Enforced, error) {
		return decision.Enforced{Status: status, Body: body}, nil
	}
	c, pending := startWith(t, sink, passThrough)
	banner := "HAPI FHIR 8.8.0 REST Server (FHIR Server; FHIR 4.0.1/R4)"
	for _, tc := range []struct {
		name        string
		d           *decision.Decision
		h           *corev3.HeaderMap
		endOfStream bool
		set         map[string]string
	}{
		{"a streamed answer", &decision.Decision{ID: "d-s", Allow: true},
			headers(":status", "200", "x-powered-by", banner), false, nil},
		{"a poll in progress without Retry-After", pollDecision(t, "d-p"),
			headers(":status", "202", "x-powered-by", banner, "x-progress", "Build in progress"), true, map[string]string{"retry-after": decision.DefaultRetryAfter}},
		{"a poll in progress with HAPI's Retry-After", pollDecision(t, "d-r"),
			headers(":status", "202", "x-powered-by", banner, "retry-after", "120"), true, nil},
		{"the complete manifest", pollDecision(t, "d-m"),
			headers(":status", "200", "x-powered-by", banner, "content-type", "application/json;charset=ISO-8859-1"), false, map[string]string{"content-type": "application/json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pending.Put(tc.d)
			hm := answerHeaders(t, c, tc.d.ID, tc.h, tc.endOfStream).GetResponseHeaders().GetResponse().GetHeaderMutation()
			if !slices.Contains(hm.GetRemoveHeaders(), "x-powered-by") {
				t.Errorf("x-powered-by not removed: %v", hm)
			}
			for _, name := range []string{"retry-after", "content-type"} {
				got, ok := setHeader(hm, name)
				if want, wanted := tc.set[name]; ok != wanted || got != want {
					t.Errorf("%s set to %q (%v), want %q (%v)", name, got, ok, want, wanted)
				}
			}
		})
	}
}

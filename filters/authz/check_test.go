package authz

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/seal"
	"github.com/fhirwall/fhirwall/internal/token"
)

// fakeAllowPolicy allows every request (the discovery documents are what reaches it here).
type fakeAllowPolicy struct{}

func (fakeAllowPolicy) Decide(context.Context, any) (policy.Result, error) {
	return policy.Result{Allow: true, Status: http.StatusOK, Reasons: []string{"fake_allow"}}, nil
}
func (fakeAllowPolicy) Revision() string { return "fake" }

type fakeNoTokens struct{}

func (fakeNoTokens) Verify(context.Context, string) (token.Identity, error) {
	return token.Identity{}, token.ErrInvalid
}

type fakeSink struct {
	mu      sync.Mutex
	records []audit.Record
}

func (f *fakeSink) Write(_ context.Context, r audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, r)
	return nil
}

func checkServer(t *testing.T, keys *seal.Keyring) (*Server, *fakeSink) {
	t.Helper()
	sink := &fakeSink{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	core := &decision.Core{Tokens: fakeNoTokens{}, Policy: fakeAllowPolicy{}, Audit: sink, Log: log, Now: time.Now, Carry: keys}
	return &Server{Core: core, APIs: []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, Log: log}, sink
}

func metadataRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/patient-access/fhir/metadata",
			Headers: map[string]string{"x-request-id": "rid-1"}}}}}
}

func TestAllowedDecisionTravelsSealedInTheMetadata(t *testing.T) {
	keys, _ := seal.NewKeyring(bytes.Repeat([]byte{5}, 32))
	s, sink := checkServer(t, keys)
	resp, err := s.Check(context.Background(), metadataRequest())
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("not allowed: %v %v", resp, err)
	}
	fields := resp.GetDynamicMetadata().GetFields()
	id := fields["decision_id"].GetStringValue()
	sealed := fields[decision.CarryKey].GetStringValue()
	if id == "" || sealed == "" || fields["api"].GetStringValue() != "patient-access" {
		t.Fatalf("metadata %v", fields)
	}
	if h := resp.GetOkResponse().GetHeaders()[0].GetHeader(); h.GetKey() != DecisionHeader || h.GetValue() != id {
		t.Fatalf("decision header %v, want %s", h, id)
	}
	d, err := s.Core.Unseal(context.Background(), sealed)
	if err != nil || d.ID != id || d.Input.RequestID != "rid-1" || d.Request.Interaction != "capabilities" {
		t.Fatalf("sealed decision %+v: %v", d, err)
	}
	if len(sink.records) != 0 {
		t.Fatal("an allowed request is recorded by ext_proc, not here")
	}
}

func TestDecisionThatCannotBeSealedIsRefusedAndRecorded(t *testing.T) {
	s, sink := checkServer(t, nil) // no keys: nothing can be sealed
	resp, err := s.Check(context.Background(), metadataRequest())
	if err != nil {
		t.Fatal(err)
	}
	denied := resp.GetDeniedResponse()
	if denied == nil || denied.GetStatus().GetCode() != http.StatusInternalServerError || !bytes.Contains([]byte(denied.GetBody()), []byte("OperationOutcome")) {
		t.Fatalf("want a 500 OperationOutcome, got %v", resp)
	}
	if len(sink.records) != 1 || sink.records[0].Status != http.StatusInternalServerError || sink.records[0].Reasons[0] != "decision_not_sealed" {
		t.Fatalf("records %+v", sink.records)
	}
}

package extproc

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/seal"
)

// stream opens an exchange and returns a function that sends one message and returns the next answer.
func stream(t *testing.T, c testClient) (func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse, func() *extprocv3.ProcessingResponse) {
	t.Helper()
	s, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.CloseSend() })
	recv := func() *extprocv3.ProcessingResponse {
		t.Helper()
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	send := func(r *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		t.Helper()
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		return recv()
	}
	return send, recv
}

func wantImmediate(t *testing.T, resp *extprocv3.ProcessingResponse, status int) {
	t.Helper()
	ir := resp.GetImmediateResponse()
	if ir == nil || int(ir.GetStatus().GetCode()) != status || !bytes.Contains(ir.GetBody(), []byte("OperationOutcome")) {
		t.Fatalf("want an immediate %d OperationOutcome, got %v", status, resp)
	}
}

func noRecord(t *testing.T, sink *fakeSink) {
	t.Helper()
	select {
	case r := <-sink.records:
		t.Fatalf("unexpected record %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
}

func plainDecision(id string) *decision.Decision {
	return &decision.Decision{ID: id, Allow: true, Input: decision.Input{API: "patient-access", Method: "GET", Path: "/Patient/member-01", RequestID: "rid-" + id}}
}

func TestDecisionSealedWithAnotherKeyIsRefused(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, _ := start(t, sink)
	otherKeys, _ := seal.NewKeyring(bytes.Repeat([]byte{9}, seal.KeySize))
	forger := &decision.Core{Carry: otherKeys, Now: time.Now}
	d := plainDecision("d-forged")
	d.Time = time.Now()
	forged, err := forger.Seal(d)
	if err != nil {
		t.Fatal(err)
	}
	req := c.requestHeaders("d-forged")
	req.MetadataContext = metadata(forged)
	send, _ := stream(t, c)
	wantImmediate(t, send(req), http.StatusInternalServerError)
	noRecord(t, sink)
}

func TestReplayedSealWithAnotherRequestsHeadersIsRefused(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry := start(t, sink)
	carry.Put(plainDecision("d-a"))
	for name, req := range map[string]*extprocv3.ProcessingRequest{
		"another decision id": func() *extprocv3.ProcessingRequest {
			r := c.requestHeaders("d-b")
			r.MetadataContext = metadata(carry.get("d-a"))
			return r
		}(),
		"another request id": c.requestHeaders("d-a", "x-request-id", "rid-other"),
		"no decision header": func() *extprocv3.ProcessingRequest {
			r := c.requestHeaders("")
			r.MetadataContext = metadata(carry.get("d-a"))
			return r
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			send, _ := stream(t, c)
			wantImmediate(t, send(req), http.StatusInternalServerError)
		})
	}
	// The same seal with its own headers goes on.
	send, _ := stream(t, c)
	if resp := send(c.requestHeaders("d-a", "x-request-id", "rid-d-a")); resp.GetRequestHeaders() == nil {
		t.Fatalf("the request's own seal was refused: %v", resp)
	}
}

func TestExpiredSealIsRefused(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry := start(t, sink)
	d := plainDecision("d-old")
	d.Time = time.Now().Add(-decision.MaxCarryAge - time.Second)
	carry.Put(d)
	send, _ := stream(t, c)
	wantImmediate(t, send(c.requestHeaders("d-old")), http.StatusInternalServerError)
	noRecord(t, sink)
}

// TestLocalReplyAfterAnAllowIsRecordedWithItsStatus: a rate limit's 429 after ext_authz allowed reaches
// ext_proc as response headers only, with the decision in the metadata; its record is written with 429.
func TestLocalReplyAfterAnAllowIsRecordedWithItsStatus(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry := start(t, sink)
	d := compartmentDecision("d-429") // its answer would need enforcing: a local reply still passes as it is
	carry.Put(d)
	send, _ := stream(t, c)
	resp := send(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(":status", "429", "content-length", "18")}},
		MetadataContext: metadata(carry.get("d-429")),
	})
	if resp.GetResponseHeaders() == nil {
		t.Fatalf("want the local reply to go on, got %v", resp)
	}
	if r := record(t, sink); r.DecisionID != "d-429" || r.Status != http.StatusTooManyRequests || r.Bytes != 18 {
		t.Fatalf("record %+v", r)
	}
	if b := send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte("local_rate_limited"), EndOfStream: true}}}); b.GetResponseBody() == nil {
		t.Fatalf("want the local reply's body to go on, got %v", b)
	}
	noRecord(t, sink)
}

// fakeAdapter answers with the request body it was given.
type fakeAdapter struct{ got []byte }

func (f *fakeAdapter) Serve(_ context.Context, d *decision.Decision, _ string) (decision.Answer, error) {
	f.got = d.Input.Body
	return decision.Answer{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/fhir+json"}}, Body: d.Input.Body}, nil
}

func adapterDecision(id string, body []byte) *decision.Decision {
	return &decision.Decision{ID: id, Allow: true, Input: decision.Input{API: "payer-to-payer", Method: "POST", Path: "/Patient/$member-match", Body: body},
		Policy: policy.Result{Allow: true, Obligations: policy.Obligations{Adapter: "fake"}}}
}

func startAdapter(t *testing.T, sink *fakeSink) (testClient, *fakeCarry, *fakeAdapter) {
	t.Helper()
	a := &fakeAdapter{}
	c, carry, core := startServer(t, sink, func(s *Server) { s.AdapterTimeout = 10 * time.Second })
	core.Adapters = map[string]decision.Adapter{"fake": a}
	return c, carry, a
}

const matchBody = `{"resourceType":"Parameters","parameter":[{"name":"MemberPatient"}]}`

func TestAdapterWithBodyIsAnsweredAfterTheBodyMessage(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry, a := startAdapter(t, sink)
	carry.Put(adapterDecision("d-match", []byte(matchBody)))
	send, recv := stream(t, c)
	hdr := send(c.requestHeaders("d-match"))
	m := hdr.GetModeOverride()
	if hdr.GetRequestHeaders() == nil || m.GetRequestBodyMode() != filterv3.ProcessingMode_BUFFERED || m.GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
		t.Fatalf("want request headers answered with a BUFFERED request body, got %v", hdr)
	}
	if a.got != nil {
		t.Fatal("the adapter answered before the body came")
	}
	override := send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(matchBody), EndOfStream: true}}})
	if override.GetOverrideMessageTimeout().AsDuration() != 10*time.Second {
		t.Fatalf("want the adapter timeout first, got %v", override)
	}
	ans := recv().GetImmediateResponse()
	if ans.GetStatus().GetCode() != http.StatusOK || string(ans.GetBody()) != matchBody || string(a.got) != matchBody {
		t.Fatalf("want the adapter's answer on the body, got %v (adapter saw %q)", ans, a.got)
	}
	if r := record(t, sink); r.DecisionID != "d-match" || r.Status != http.StatusOK {
		t.Fatalf("record %+v", r)
	}
}

func TestRequestBodyOtherThanTheOneDecidedOnIsRefused(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry, a := startAdapter(t, sink)
	carry.Put(adapterDecision("d-swap", []byte(matchBody)))
	send, _ := stream(t, c)
	send(c.requestHeaders("d-swap"))
	swapped := bytes.Replace([]byte(matchBody), []byte("Member"), []byte("Membe2"), 1)
	wantImmediate(t, send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: swapped, EndOfStream: true}}}), http.StatusInternalServerError)
	if a.got != nil {
		t.Fatal("the adapter saw a body that was not decided on")
	}
	if r := record(t, sink); r.DecisionID != "d-swap" || r.Status != http.StatusInternalServerError {
		t.Fatalf("record %+v", r)
	}
}

func TestAdapterWithoutBodyIsAnsweredAtRequestHeaders(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry, _ := startAdapter(t, sink)
	carry.Put(adapterDecision("d-nobody", nil))
	send, recv := stream(t, c)
	if o := send(c.requestHeaders("d-nobody")); o.GetOverrideMessageTimeout() == nil {
		t.Fatalf("want the adapter timeout first, got %v", o)
	}
	if ans := recv(); ans.GetImmediateResponse().GetStatus().GetCode() != http.StatusOK {
		t.Fatalf("want the adapter's answer, got %v", ans)
	}
	record(t, sink)
}

// TestAdapterRequestForwardedWithoutItsBodyIsNotAnswered: if Envoy ignored the mode_override and sent the
// request to the FHIR server, its answer is not the adapter's and does not leave.
func TestAdapterRequestForwardedWithoutItsBodyIsNotAnswered(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, carry, a := startAdapter(t, sink)
	carry.Put(adapterDecision("d-ignored", []byte(matchBody)))
	send, _ := stream(t, c)
	send(c.requestHeaders("d-ignored"))
	wantImmediate(t, send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(":status", "200")}}}), http.StatusInternalServerError)
	if a.got != nil {
		t.Fatal("the adapter answered without the body")
	}
	if r := record(t, sink); r.Status != http.StatusInternalServerError {
		t.Fatalf("record %+v", r)
	}
}

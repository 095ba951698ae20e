package extproc

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/seal"
)

// fakeSink records audit writes and fails when told to.
type fakeSink struct {
	records chan audit.Record
	fail    bool
}

func (f *fakeSink) Write(_ context.Context, r audit.Record) error {
	if f.fail {
		return errors.New("fake sink down")
	}
	f.records <- r
	return nil
}

type fakePolicy struct{}

func (fakePolicy) Decide(context.Context, any) (policy.Result, error) { return policy.Result{}, nil }
func (fakePolicy) Revision() string                                   { return "fake" }

func start(t *testing.T, sink *fakeSink) (testClient, *fakeCarry) {
	t.Helper()
	return startWith(t, sink, nil)
}

type enforceFunc = func(ctx context.Context, d *decision.Decision, status int, contentType string, body []byte) (decision.Enforced, error)

// testKeys are the decision keys the fake ext_authz (fakeCarry) and the server under test share.
var testKeys, _ = seal.NewKeyring(bytes.Repeat([]byte{7}, seal.KeySize))

// fakeCarry plays ext_authz for unit tests: Put seals an allowed decision as Check does, and the exchanges
// send it in the metadata Envoy forwards.
type fakeCarry struct {
	core   *decision.Core
	mu     sync.Mutex
	sealed map[string]string
}

func (f *fakeCarry) Put(d *decision.Decision) {
	if d.Time.IsZero() {
		d.Time = time.Now().UTC()
	}
	v, err := f.core.Seal(d)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sealed[d.ID] = v
}

func (f *fakeCarry) get(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sealed[id]
}

// metadata is what Envoy forwards of ext_authz's dynamic metadata; none when sealed is "".
func metadata(sealed string) *corev3.Metadata {
	if sealed == "" {
		return nil
	}
	st, _ := structpb.NewStruct(map[string]any{"decision_id": "x", decision.CarryKey: sealed})
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{decision.CarryNamespace: st}}
}

// testClient is an ext_proc client that plays Envoy, with the fake ext_authz's sealed decisions.
type testClient struct {
	extprocv3.ExternalProcessorClient
	carry *fakeCarry
}

// requestHeaders is Envoy's first message for a request ext_authz allowed as decision id.
func (c testClient) requestHeaders(id string, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headers(append([]string{"x-fhirwall-decision-id", id}, kv...)...)}},
		MetadataContext: metadata(c.carry.get(id)),
	}
}

func startWith(t *testing.T, sink *fakeSink, enforce enforceFunc) (testClient, *fakeCarry) {
	t.Helper()
	c, carry, _ := startServer(t, sink, func(s *Server) { s.Enforce = enforce })
	return c, carry
}

func startServer(t *testing.T, sink *fakeSink, edit func(*Server)) (testClient, *fakeCarry, *decision.Core) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	core := &decision.Core{Policy: fakePolicy{}, Audit: sink, Log: log, Now: time.Now, Carry: testKeys}
	carry := &fakeCarry{core: core, sealed: map[string]string{}}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(MaxRecvMsgSize))
	srv := &Server{Core: core, DecisionHeader: "x-fhirwall-decision-id", Log: log}
	if edit != nil {
		edit(srv)
	}
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(MaxRecvMsgSize), grpc.MaxCallRecvMsgSize(MaxRecvMsgSize)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testClient{extprocv3.NewExternalProcessorClient(conn), carry}, carry, core
}

func headers(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

func exchange(t *testing.T, c testClient, decisionID, status string) (*extprocv3.ProcessingResponse, *extprocv3.ProcessingResponse) {
	t.Helper()
	s, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	req := send(c.requestHeaders(decisionID))
	if req.GetImmediateResponse() != nil {
		return req, nil
	}
	resp := send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(":status", status, "content-length", "42")}}})
	_ = s.CloseSend()
	return req, resp
}

func TestResponseIsRecordedBeforeItGoesOn(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, pending := start(t, sink)
	d := &decision.Decision{ID: "d-1", Allow: true, Input: decision.Input{API: "patient-access", Method: "GET", Path: "/Patient/member-01"}}
	pending.Put(d)
	_, resp := exchange(t, c, "d-1", "200")
	if resp.GetResponseHeaders() == nil {
		t.Fatalf("want the response to continue, got %v", resp)
	}
	select {
	case r := <-sink.records:
		if r.DecisionID != "d-1" || r.Status != 200 || r.Bytes != 42 {
			t.Fatalf("record %+v", r)
		}
	default:
		t.Fatal("response continued without an audit record")
	}
}

func TestUnknownDecisionIsRefused(t *testing.T) {
	c, _ := start(t, &fakeSink{records: make(chan audit.Record, 1)})
	req, _ := exchange(t, c, "forged", "200")
	if ir := req.GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 500 {
		t.Fatalf("want an immediate 500, got %v", req)
	}
}

func TestAuditDownWithholdsTheResponse(t *testing.T) {
	c, pending := start(t, &fakeSink{fail: true})
	pending.Put(&decision.Decision{ID: "d-2", Allow: true})
	_, resp := exchange(t, c, "d-2", "200")
	if ir := resp.GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 503 {
		t.Fatalf("want an immediate 503, got %v", resp)
	}
}

// Envoy also runs ext_proc on the local reply of an ext_authz refusal: the response headers arrive without
// request headers, and must pass unchanged (the refusal was recorded by ext_authz).
func TestLocalReplyOfARefusalPassesUnrecorded(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	c, _ := start(t, sink)
	s, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(":status", "404")}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetResponseHeaders() == nil || resp.GetResponseHeaders().GetResponse().GetHeaderMutation() != nil {
		t.Fatalf("want the refusal to pass unchanged, got %v", resp)
	}
	_ = s.CloseSend()
	select {
	case r := <-sink.records:
		t.Fatalf("a refusal was recorded twice: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
}

// compartmentDecision is an allowed decision whose response must be enforced.
func compartmentDecision(id string) *decision.Decision {
	return &decision.Decision{ID: id, Allow: true, Input: decision.Input{API: "patient-access", Method: "GET", Path: "/Patient/member-02"},
		Policy: policy.Result{Allow: true, Obligations: policy.Obligations{Compartment: &policy.Compartment{Patient: "member-01"},
			ResourceTypes: map[string]policy.Constraints{"*": {}}, PublicTypes: []string{"Practitioner"}}}}
}

// fakeEnforcer records what it was given and answers what the test says.
type fakeEnforcer struct {
	gotStatus int
	gotType   string
	gotBody   []byte
	answer    func(status int, body []byte) (decision.Enforced, error)
}

func (f *fakeEnforcer) enforce(_ context.Context, _ *decision.Decision, status int, ct string, body []byte) (decision.Enforced, error) {
	f.gotStatus, f.gotType, f.gotBody = status, ct, body
	return f.answer(status, body)
}

// bodyExchange plays Envoy for an exchange whose body is sent BUFFERED: request headers, response headers,
// then (if the server continued) the whole body. It returns the server's three answers.
func bodyExchange(t *testing.T, c testClient, id string, respHeaders *corev3.HeaderMap, body []byte) (req, hdr, bdy *extprocv3.ProcessingResponse) {
	t.Helper()
	s, err := c.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseSend()
	send := func(r *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		t.Helper()
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	req = send(c.requestHeaders(id))
	hdr = send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: respHeaders}}})
	if hdr.GetImmediateResponse() != nil {
		return req, hdr, nil
	}
	bdy = send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}})
	return req, hdr, bdy
}

func record(t *testing.T, sink *fakeSink) audit.Record {
	t.Helper()
	select {
	case r := <-sink.records:
		return r
	case <-time.After(2 * time.Second):
		t.Fatal("no audit record")
	}
	return audit.Record{}
}

func setHeader(m *extprocv3.HeaderMutation, name string) (string, bool) {
	for _, h := range m.GetSetHeaders() {
		if h.GetHeader().GetKey() == name {
			return string(h.GetHeader().GetRawValue()), true
		}
	}
	return "", false
}

const upstreamBundle = `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"member-02"}}]}`

func TestHeadersOnlyDecisionNeverAsksForTheBody(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	enf := &fakeEnforcer{answer: func(int, []byte) (decision.Enforced, error) {
		return decision.Enforced{}, errors.New("must not be called")
	}}
	c, pending := startWith(t, sink, enf.enforce)
	pending.Put(&decision.Decision{ID: "d-h", Allow: true})
	req, resp := exchange(t, c, "d-h", "200")
	if m := req.GetModeOverride(); m == nil || m.GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
		t.Fatalf("want mode_override to headers only, got %v", req.GetModeOverride())
	}
	if resp.GetResponseHeaders() == nil || enf.gotStatus != 0 {
		t.Fatalf("want the response to continue unenforced, got %v", resp)
	}
	if r := record(t, sink); r.Status != 200 {
		t.Fatalf("record %+v", r)
	}
}

func TestEnforcedBodyReplacesTheUpstreamBodyAndIsAudited(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	const filtered = `{"resourceType":"Bundle","entry":[]}`
	enf := &fakeEnforcer{answer: func(st int, _ []byte) (decision.Enforced, error) {
		return decision.Enforced{Status: st, Body: []byte(filtered), Patients: []string{"member-01"}, Categories: []string{"demographics"}, Removed: 1}, nil
	}}
	c, pending := startWith(t, sink, enf.enforce)
	pending.Put(compartmentDecision("d-e"))
	req, hdr, bdy := bodyExchange(t, c, "d-e", headers(":status", "200", "content-type", "application/fhir+json", "content-length", "95"), []byte(upstreamBundle))
	if m := req.GetModeOverride(); m.GetResponseBodyMode() != filterv3.ProcessingMode_BUFFERED {
		t.Fatalf("want mode_override BUFFERED, got %v", req.GetModeOverride())
	}
	hm := hdr.GetResponseHeaders().GetResponse().GetHeaderMutation()
	if !slices.Contains(hm.GetRemoveHeaders(), "content-length") {
		t.Fatalf("response headers must drop content-length while the body may change, got %v", hdr)
	}
	common := bdy.GetResponseBody().GetResponse()
	if string(common.GetBodyMutation().GetBody()) != filtered {
		t.Fatalf("want the enforced body, got %v", bdy)
	}
	if cl, _ := setHeader(common.GetHeaderMutation(), "content-length"); cl != "36" {
		t.Fatalf("content-length %q, want 36", cl)
	}
	if enf.gotStatus != 200 || enf.gotType != "application/fhir+json" || string(enf.gotBody) != upstreamBundle {
		t.Fatalf("enforcer saw %d %q %s", enf.gotStatus, enf.gotType, enf.gotBody)
	}
	r := record(t, sink)
	if r.Status != 200 || r.Bytes != int64(len(filtered)) || strings.Join(r.Patients, ",") != "member-01" || strings.Join(r.DataCategories, ",") != "demographics" {
		t.Fatalf("record %+v", r)
	}
}

func TestEnforcementRefusalReplacesTheAnswerWithItsStatus(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	notFound := []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`)
	enf := &fakeEnforcer{answer: func(int, []byte) (decision.Enforced, error) {
		return decision.Enforced{Status: 404, Body: notFound, Removed: 1}, nil
	}}
	c, pending := startWith(t, sink, enf.enforce)
	pending.Put(compartmentDecision("d-404"))
	_, _, bdy := bodyExchange(t, c, "d-404", headers(":status", "200", "content-type", "application/fhir+json"), []byte(upstreamBundle))
	ir := bdy.GetImmediateResponse()
	if ir.GetStatus().GetCode() != 404 || !bytes.Equal(ir.GetBody(), notFound) || ir.GetDetails() != RefusalDetails {
		t.Fatalf("want an immediate 404 with the refusal body, got %v", bdy)
	}
	if id, _ := setHeader(ir.GetHeaders(), "x-fhirwall-decision-id"); id != "d-404" {
		t.Fatalf("decision id %q", id)
	}
	if r := record(t, sink); r.Status != 404 || r.Bytes != int64(len(notFound)) {
		t.Fatalf("record %+v", r)
	}
}

func TestGzipUpstreamBodyIsDecodedBeforeEnforcement(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 1)}
	enf := &fakeEnforcer{answer: func(st int, b []byte) (decision.Enforced, error) { return decision.Enforced{Status: st, Body: b}, nil }}
	c, pending := startWith(t, sink, enf.enforce)
	pending.Put(compartmentDecision("d-gz"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(upstreamBundle))
	zw.Close()
	_, _, bdy := bodyExchange(t, c, "d-gz", headers(":status", "200", "content-type", "application/fhir+json", "content-encoding", "gzip"), gz.Bytes())
	common := bdy.GetResponseBody().GetResponse()
	if string(enf.gotBody) != upstreamBundle || string(common.GetBodyMutation().GetBody()) != upstreamBundle {
		t.Fatalf("enforcer saw %q, client gets %v", enf.gotBody, bdy)
	}
	if strings.Join(common.GetHeaderMutation().GetRemoveHeaders(), ",") != "content-encoding" {
		t.Fatalf("content-encoding must go with the decoded body, got %v", common.GetHeaderMutation())
	}
	record(t, sink)
}

func TestUncheckableAnswerIs502AndNeverTheUpstreamBody(t *testing.T) {
	for name, tc := range map[string]struct {
		encoding string
		body     []byte
		err      error
	}{
		"enforcement error":            {body: []byte(upstreamBundle), err: errors.New("fake enforcement failure")},
		"body that is not gzip":        {encoding: "gzip", body: []byte(upstreamBundle)},
		"unsupported content-encoding": {encoding: "br", body: []byte(upstreamBundle)},
		"body over the limit":          {body: make([]byte, decision.MaxResponseBytes+1)},
	} {
		t.Run(name, func(t *testing.T) {
			sink := &fakeSink{records: make(chan audit.Record, 1)}
			enf := &fakeEnforcer{answer: func(st int, b []byte) (decision.Enforced, error) {
				return decision.Enforced{Status: st, Body: b}, tc.err
			}}
			c, pending := startWith(t, sink, enf.enforce)
			pending.Put(compartmentDecision("d-502"))
			hs := headers(":status", "200", "content-type", "application/fhir+json")
			if tc.encoding != "" {
				hs = headers(":status", "200", "content-type", "application/fhir+json", "content-encoding", tc.encoding)
			}
			_, _, bdy := bodyExchange(t, c, "d-502", hs, tc.body)
			ir := bdy.GetImmediateResponse()
			if ir.GetStatus().GetCode() != 502 || bytes.Contains(ir.GetBody(), []byte("member-02")) ||
				!bytes.Contains(ir.GetBody(), []byte("OperationOutcome")) {
				t.Fatalf("want an immediate 502 OperationOutcome, got %v", bdy)
			}
			if r := record(t, sink); r.Status != 502 {
				t.Fatalf("record %+v", r)
			}
		})
	}
}

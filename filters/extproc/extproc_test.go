package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
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

func start(t *testing.T, sink *fakeSink) (extprocv3.ExternalProcessorClient, *decision.Pending) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	core := &decision.Core{Policy: fakePolicy{}, Audit: sink, Log: log, Now: time.Now}
	pending := decision.NewPending(time.Minute, time.Now)
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, &Server{Core: core, Pending: pending, DecisionHeader: "x-fhirwall-decision-id", Log: log})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn), pending
}

func headers(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

func exchange(t *testing.T, c extprocv3.ExternalProcessorClient, decisionID, status string) (*extprocv3.ProcessingResponse, *extprocv3.ProcessingResponse) {
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
	req := send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headers("x-fhirwall-decision-id", decisionID)}}})
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

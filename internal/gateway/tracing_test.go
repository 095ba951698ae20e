package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/tracing"
)

// clientTraceparent is a trace context a client made up; clientTraceID is its trace id.
const (
	clientTraceID     = "0af7651916cd43dd8448eb211c80319c"
	clientTraceparent = "00-" + clientTraceID + "-b7ad6b7169203331-01"
)

type tracedExchange struct {
	spans            []sdktrace.ReadOnlySpan
	record           audit.Record
	upstreamParent   string // the traceparent the FHIR server received
	upstreamHasState bool
}

// tracedRequest sends one Condition search (enforced for member-01) with the client's own trace context
// through a gateway whose tracer records in memory (the OpenTelemetry SDK, not a fake), and returns the
// spans once the request's span ended, the audit record and what the FHIR server was told.
func tracedRequest(t *testing.T, trustIncoming bool) tracedExchange {
	t.Helper()
	var ex tracedExchange
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex.upstreamParent, ex.upstreamHasState = r.Header.Get("traceparent"), r.Header.Get("tracestate") != ""
		w.Header().Set("Content-Type", "application/fhir+json")
		io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":`+memberObservation+`}]}`)
	}))
	t.Cleanup(fhir.Close)
	upstream, _ := url.Parse(fhir.URL + "/fhir")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	sink := &fakeSink{records: make(chan audit.Record, 4)}
	g := newFakeGateway(sink, upstream)
	g.Tracer = tracing.WithProvider(tp, trustIncoming)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Condition?code=x&patient=member-01", nil)
	req.Header.Set("Authorization", "Bearer member-token")
	req.Header.Set("traceparent", clientTraceparent)
	req.Header.Set("tracestate", "vendor=chosen-by-client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ex.record = <-sink.records
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ex.spans = rec.Ended()
		if slices.ContainsFunc(ex.spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == tracing.SpanRequest }) {
			return ex
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request's span never ended; spans: %v", names(ex.spans))
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func TestStandaloneRequestIsOneTraceOfDecisionPolicyUpstreamResponseCheckAndAuditWrite(t *testing.T) {
	ex := tracedRequest(t, false)
	want := []string{tracing.SpanRequest, tracing.SpanDecision, tracing.SpanPolicy, tracing.SpanUpstream, tracing.SpanResponseCheck, tracing.SpanAuditWrite}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range ex.spans {
		byName[s.Name()] = s
	}
	for _, n := range want {
		if byName[n] == nil {
			t.Fatalf("no %q span; spans: %v", n, names(ex.spans))
		}
	}
	root := byName[tracing.SpanRequest]
	traceID := root.SpanContext().TraceID().String()
	for _, s := range ex.spans {
		if s.SpanContext().TraceID().String() != traceID {
			t.Errorf("span %q is in trace %s, the request's is %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
	}
	if p := byName[tracing.SpanPolicy].Parent().SpanID(); p != byName[tracing.SpanDecision].SpanContext().SpanID() {
		t.Errorf("the policy span's parent is %s, not the decision span", p)
	}
	if ex.record.TraceID != traceID {
		t.Errorf("audit record trace_id %q, the request's trace is %s", ex.record.TraceID, traceID)
	}
	// The FHIR server is told the upstream span, in the same trace, and nothing of the client's.
	wantParent := "00-" + traceID + "-" + byName[tracing.SpanUpstream].SpanContext().SpanID().String() + "-01"
	if ex.upstreamParent != wantParent || ex.upstreamHasState {
		t.Errorf("FHIR server got traceparent %q (tracestate: %v), want %q and no tracestate", ex.upstreamParent, ex.upstreamHasState, wantParent)
	}
}

func TestStandaloneIgnoresAClientsTraceContextUnlessTrusted(t *testing.T) {
	ex := tracedRequest(t, false)
	if ex.record.TraceID == clientTraceID || ex.record.TraceID == "" {
		t.Fatalf("untrusted: audit record trace_id %q, want a trace of fhirwall's own", ex.record.TraceID)
	}
	for _, s := range ex.spans {
		if s.Name() == tracing.SpanRequest && s.Parent().IsValid() {
			t.Errorf("untrusted: the request's span has the client's span %s as its parent", s.Parent().SpanID())
		}
	}
	trusted := tracedRequest(t, true)
	if trusted.record.TraceID != clientTraceID {
		t.Fatalf("trusted: audit record trace_id %q, want the client's %s", trusted.record.TraceID, clientTraceID)
	}
}

// TestSpansCarryNoTokenQueryPathOrPatient: span attributes are the request's kind and verdict only.
func TestSpansCarryNoTokenQueryPathOrPatient(t *testing.T) {
	ex := tracedRequest(t, false)
	allowed := []string{string(tracing.AttrAPI), string(tracing.AttrInteraction), string(tracing.AttrResourceType), string(tracing.AttrDecision),
		string(tracing.AttrStatus), string(tracing.AttrReason), string(tracing.AttrDecisionID), string(tracing.AttrPolicyRevision)}
	for _, s := range ex.spans {
		for _, kv := range s.Attributes() {
			if !slices.Contains(allowed, string(kv.Key)) {
				t.Errorf("span %q has attribute %s outside the documented set", s.Name(), kv.Key)
			}
			v := kv.Value.Emit()
			for _, secret := range []string{"member-token", "member-01", "code=x", "Condition?"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %q attribute %s = %q carries %q", s.Name(), kv.Key, v, secret)
				}
			}
		}
	}
	var decision sdktrace.ReadOnlySpan
	for _, s := range ex.spans {
		if s.Name() == tracing.SpanDecision {
			decision = s
		}
	}
	got := map[string]string{}
	for _, kv := range decision.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got[string(tracing.AttrAPI)] != "patient-access" || got[string(tracing.AttrResourceType)] != "Condition" ||
		got[string(tracing.AttrInteraction)] != "search-type" || got[string(tracing.AttrDecision)] != "allow" {
		t.Errorf("decision span attributes %v", got)
	}
}

// TestTracingOffRecordsNoTraceID: without a tracer nothing is traced and the record has no trace_id, whatever
// the client sent.
func TestTracingOffRecordsNoTraceID(t *testing.T) {
	sink := &fakeSink{records: make(chan audit.Record, 4)}
	g := newFakeGateway(sink, serveObservation(t, nil))
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/patient-access/fhir/Observation?code=x", nil)
	req.Header.Set("Authorization", "Bearer member-token")
	req.Header.Set("traceparent", clientTraceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := <-sink.records; r.TraceID != "" {
		t.Fatalf("tracing off: trace_id %q", r.TraceID)
	}
}

package tracing

import (
	"context"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"
)

const envoyTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func recording(trust bool) (*Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	return WithProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), trust), rec
}

// TestStartWithoutATraceCostsNothing: tracing off, the core's spans return the same context and allocate
// nothing (the benchmarks with tracing off stay where they were).
func TestStartWithoutATraceCostsNothing(t *testing.T) {
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := Start(ctx, SpanDecision)
		span.End()
		if c != ctx {
			t.Fatal("Start without a trace returned a new context")
		}
	})
	if allocs != 0 {
		t.Fatalf("Start without a trace allocates %v times", allocs)
	}
	if TraceID(ctx) != "" {
		t.Fatal("a trace id without a trace")
	}
}

// TestEnvoysCallJoinsEnvoysTrace: the traceparent Envoy puts in an ext_authz/ext_proc call's metadata is
// the parent of the face's span, and so the trace every span and the audit record name.
func TestEnvoysCallJoinsEnvoysTrace(t *testing.T) {
	tr, rec := recording(false)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", envoyTraceparent))
	ctx, span := tr.StartServer(tr.FromEnvoy(ctx), SpanExtAuthz)
	_, child := Start(ctx, SpanDecision)
	child.End()
	span.End()
	if got := TraceID(ctx); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id %q, want Envoy's", got)
	}
	ended := rec.Ended()
	if len(ended) != 2 || ended[1].Parent().SpanID().String() != "00f067aa0ba902b7" || ended[0].Parent().SpanID() != ended[1].SpanContext().SpanID() {
		t.Fatalf("spans %v: want ext_authz under Envoy's span and decision under ext_authz", ended)
	}
}

// TestTracingOffIgnoresEnvoysAndClientsContext: a Tracer that is off (or nil) joins no trace.
func TestTracingOffIgnoresEnvoysAndClientsContext(t *testing.T) {
	for _, tr := range []*Tracer{Off(), nil} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", envoyTraceparent))
		h := http.Header{"Traceparent": {envoyTraceparent}}
		ctx, span := tr.StartServer(tr.FromClient(tr.FromEnvoy(ctx), h), SpanRequest)
		span.End()
		if id := TraceID(ctx); id != "" {
			t.Fatalf("tracing off: trace id %q", id)
		}
	}
}

func TestNewRefusesASamplingPercentOutOfRange(t *testing.T) {
	if _, err := New(context.Background(), Settings{Endpoint: "127.0.0.1:4317", ServiceName: "x", SamplingPercent: 101}); err == nil {
		t.Fatal("sampling 101% accepted")
	}
	tr, err := New(context.Background(), Settings{})
	if err != nil || tr.On() {
		t.Fatalf("no endpoint: tracer on=%v err=%v, want off", tr.On(), err)
	}
}

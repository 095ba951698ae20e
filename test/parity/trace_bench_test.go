package parity

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/metadata"

	"github.com/fhirwall/fhirwall/internal/tracing"
)

// discardExporter is an exporter that drops the spans: BenchmarkCheckTraced measures what tracing costs
// fhirwall-proxy per request (spans, attributes, the batch queue), not a collector's network.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkCheckTraced is BenchmarkCheck with tracing on, every trace sampled, joined to Envoy's trace from the
// call's metadata as in the stack: the ext_authz, decision, policy and audit write spans of one request.
//
//	go test -run '^$' -bench 'BenchmarkCheck$|BenchmarkCheckTraced' -benchmem ./test/parity
func BenchmarkCheckTraced(b *testing.B) {
	s, req := checkServer(b)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	s.Tracer = tracing.WithProvider(tp, false)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	b.ReportAllocs()
	for b.Loop() {
		resp, err := s.Check(ctx, req)
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("not allowed: %v %v", resp, err)
		}
	}
}

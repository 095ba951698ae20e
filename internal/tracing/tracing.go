// Package tracing is fhirwall-proxy's OpenTelemetry tracing: the tracer built from config (OTLP/gRPC export,
// or nothing at all), the spans' names and attributes, and the rule for trace context that arrives with a
// request (docs/tracing.md).
//
// Spans below a face's own span take their tracer from the span in the context (Start), so the decision core
// needs no tracer of its own and costs nothing when tracing is off: without a span in the context, Start
// returns the context unchanged.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
)

// Instrumentation names fhirwall's spans' instrumentation scope.
const Instrumentation = "github.com/fhirwall/fhirwall"

// Span names. A request's trace holds, below Envoy's spans or the standalone proxy's Request span: Decision
// (its child Policy), Upstream (standalone: the FHIR server's answer), ResponseCheck (response enforcement)
// and AuditWrite.
const (
	SpanRequest       = "request"
	SpanExtAuthz      = "ext_authz"
	SpanExtProc       = "ext_proc"
	SpanDecision      = "decision"
	SpanPolicy        = "policy"
	SpanUpstream      = "upstream"
	SpanResponseCheck = "response check"
	SpanAuditWrite    = "audit write"
)

// Attribute keys: the only attributes fhirwall records. Never a token, a query string, a path (it may hold a
// patient's id) or a patient id.
const (
	AttrAPI          = attribute.Key("fhirwall.api")
	AttrInteraction  = attribute.Key("fhir.interaction")
	AttrResourceType = attribute.Key("fhir.resource_type")
	AttrDecision     = attribute.Key("fhirwall.decision") // allow | refuse
	AttrStatus       = attribute.Key("http.response.status_code")
	AttrReason       = attribute.Key("fhirwall.reason") // reason codes, comma-separated
	AttrDecisionID   = attribute.Key("fhirwall.decision_id")
	// AttrPolicyRevision is the hash of the policy set that decided.
	AttrPolicyRevision = attribute.Key("fhirwall.policy_revision")
)

// Settings are config tracing as fhirwall-proxy uses it.
type Settings struct {
	// Endpoint is the collector's OTLP/gRPC host:port; empty: no tracing.
	Endpoint        string
	ServiceName     string
	SamplingPercent float64
	// TrustIncoming lets a standalone request's traceparent continue the client's trace.
	TrustIncoming bool
}

// Tracer is fhirwall-proxy's tracer: the faces start their spans with it.
type Tracer struct {
	trace.Tracer
	trustIncoming bool
	shutdown      func(context.Context) error
}

// Off is the tracer when tracing is off: a no-op that records nothing.
func Off() *Tracer {
	return &Tracer{Tracer: noop.NewTracerProvider().Tracer(Instrumentation), shutdown: func(context.Context) error { return nil }}
}

// New builds the tracer for s: Off when s.Endpoint is empty, else an SDK tracer that batches spans to the
// collector over OTLP/gRPC (plain gRPC: the collector runs beside fhirwall). Connecting is lazy, so a
// collector that is down loses spans, never requests.
func New(ctx context.Context, s Settings) (*Tracer, error) {
	if s.Endpoint == "" {
		return Off(), nil
	}
	if !(s.SamplingPercent >= 0 && s.SamplingPercent <= 100) {
		return nil, fmt.Errorf("tracing: sampling percent %v outside [0, 100]", s.SamplingPercent)
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.Endpoint), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", s.Endpoint, err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(s.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		// Envoy decided whether its trace is sampled; a trace fhirwall starts itself is sampled at the rate.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.SamplingPercent/100))),
	)
	return &Tracer{Tracer: tp.Tracer(Instrumentation), trustIncoming: s.TrustIncoming, shutdown: tp.Shutdown}, nil
}

// WithProvider is a Tracer over a provider built elsewhere (tests: the SDK with an in-memory exporter).
func WithProvider(tp trace.TracerProvider, trustIncoming bool) *Tracer {
	return &Tracer{Tracer: tp.Tracer(Instrumentation), trustIncoming: trustIncoming, shutdown: func(context.Context) error { return nil }}
}

// Shutdown exports the spans still buffered.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// On reports whether t records spans (New with an endpoint); a nil Tracer is off.
func (t *Tracer) On() bool {
	if t == nil {
		return false
	}
	_, off := t.Tracer.(noop.Tracer)
	return !off
}

// StartServer starts a face's span for one request (or one gRPC call from Envoy), a child of whatever trace
// context FromEnvoy or FromClient put in ctx, else the root of a new trace. Off: ctx unchanged, a no-op span.
func (t *Tracer) StartServer(ctx context.Context, name string) (context.Context, trace.Span) {
	if !t.On() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

var traceContext = propagation.TraceContext{}

// FromEnvoy is ctx joined to the trace of the gRPC call Envoy made (W3C traceparent in the call's metadata:
// Envoy's ext_authz and ext_proc clients inject their span's context there). Envoy is trusted: it removed the
// client's own trace context at the edge unless config trusts it. Tracing off: ctx unchanged.
func (t *Tracer) FromEnvoy(ctx context.Context) context.Context {
	if !t.On() {
		return ctx
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return traceContext.Extract(ctx, metadataCarrier(md))
}

// FromClient is ctx joined to the trace a client's request names (standalone), only when config trusts
// incoming trace context; otherwise the request starts a trace of its own, whatever it carries.
func (t *Tracer) FromClient(ctx context.Context, h http.Header) context.Context {
	if !t.On() || !t.trustIncoming {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.HeaderCarrier(h))
}

// Inject writes ctx's trace context into h (a request fhirwall sends on), replacing whatever was there.
func Inject(ctx context.Context, h http.Header) {
	for _, k := range traceContext.Fields() {
		h.Del(k)
	}
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
}

// Start starts a child of the span in ctx, with that span's tracer. Without a span in ctx (tracing off) it
// returns ctx unchanged and a no-op span, allocating nothing; so it takes no attributes (a variadic list
// would be built on every call): set them after, under span.IsRecording().
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer(Instrumentation).Start(ctx, name)
}

// TraceID is the id of the trace ctx belongs to, in W3C's 32 lower-case hex digits; "" when none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

// Reasons is the reason codes as one attribute value.
func Reasons(rs []string) attribute.KeyValue { return AttrReason.String(strings.Join(rs, ",")) }

// End ends span, marking it failed when err is set (the error's kind only: messages may name what a span
// must not carry).
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(otelcodes.Error, errorKind(err))
	}
	span.End()
}

// errorKind is the type of the innermost error of the chain (the cause), never its message.
func errorKind(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return fmt.Sprintf("%T", err)
		}
		err = u
	}
}

// metadataCarrier reads gRPC metadata as a propagation carrier (keys are lower case there already).
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m metadataCarrier) Set(key, value string) { metadata.MD(m).Set(key, value) }

func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

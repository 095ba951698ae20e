package config

import (
	"fmt"
	"net"
	"regexp"
	"strconv"

	"github.com/spf13/viper"
)

// Tracing is OpenTelemetry tracing of every request, in Envoy (its OpenTelemetry tracer, configured by
// fhirwall-xds) and in fhirwall-proxy (decision, policy, upstream, response check, audit write), exported over
// OTLP/gRPC to one collector; each access record names its trace (trace_id). docs/tracing.md.
// Endpoint empty: off, and fhirwall-proxy runs a no-op tracer.
type Tracing struct {
	// Endpoint is the collector's OTLP/gRPC host:port (plain gRPC: run the collector, or an agent of it, on a
	// trusted network beside fhirwall). Empty: tracing off.
	Endpoint string `mapstructure:"endpoint"`
	// ServiceName names fhirwall-proxy's spans (service.name), EnvoyServiceName Envoy's.
	ServiceName      string `mapstructure:"service_name"`
	EnvoyServiceName string `mapstructure:"envoy_service_name"`
	// SamplingPercent of the requests that start a trace are sampled (exported), 0 to 100. A request of a
	// sampled trace still gets its trace id in the audit record when it is not exported.
	SamplingPercent float64 `mapstructure:"sampling_percent"`
	// TrustIncoming lets a client's W3C traceparent/tracestate join its trace. Off (the default), Envoy removes
	// them at the edge and the standalone proxy ignores them: every request starts a trace of its own, so a
	// client can neither choose the trace id an audit record carries nor force sampling.
	TrustIncoming bool `mapstructure:"trust_incoming"`
}

// Enabled reports whether tracing is on.
func (t Tracing) Enabled() bool { return t.Endpoint != "" }

func tracingDefaults(v *viper.Viper) {
	v.SetDefault("tracing.endpoint", "") // so FHIRWALL_TRACING_ENDPOINT applies
	v.SetDefault("tracing.service_name", "fhirwall-proxy")
	v.SetDefault("tracing.envoy_service_name", "fhirwall-envoy")
	v.SetDefault("tracing.sampling_percent", 100)
	v.SetDefault("tracing.trust_incoming", false)
}

func (t Tracing) validate() []error {
	var errs []error
	if t.Endpoint != "" {
		host, port, err := net.SplitHostPort(t.Endpoint)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
			errs = append(errs, fmt.Errorf("tracing.endpoint %q: want the collector's OTLP/gRPC host:port, e.g. 127.0.0.1:4317", t.Endpoint))
		}
	}
	if t.SamplingPercent < 0 || t.SamplingPercent > 100 || t.SamplingPercent != t.SamplingPercent {
		errs = append(errs, fmt.Errorf("tracing.sampling_percent %v: want 0 to 100", t.SamplingPercent))
	}
	for key, name := range map[string]string{"tracing.service_name": t.ServiceName, "tracing.envoy_service_name": t.EnvoyServiceName} {
		if !serviceNameRE.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s %q: want 1-63 letters, digits, '.', '_' or '-'", key, name))
		}
	}
	return errs
}

// serviceNameRE bounds a service name to what lands in a span's resource and Envoy's config unescaped.
var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

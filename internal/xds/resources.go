package xds

import (
	"fmt"
	"slices"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	ext_authzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ext_procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	reqwithoutqueryv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/req_without_query/v3"
	earlyheadermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	tracingtypev3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fhirwall/fhirwall/internal/cors"
	"github.com/fhirwall/fhirwall/internal/outcome"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

// Resources are the Envoy resources for one IR, in a fixed order.
type Resources struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Secrets   []types.Resource
}

// Well-known Envoy extension names used here.
const (
	hcmFilterName        = "envoy.filters.network.http_connection_manager"
	extAuthzFilterName   = "envoy.filters.http.ext_authz"
	extProcFilterName    = "envoy.filters.http.ext_proc"
	routerFilterName     = "envoy.filters.http.router"
	corsFilterName       = "envoy.filters.http.cors"
	httpProtocolOptions  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	fhirJSON             = "application/fhir+json"
	notFoundRouteName    = "not_found"
	virtualHostName      = "fhirwall"
	extAuthzDeniedDetail = "ext_authz_denied"
	extAuthzErrorDetail  = "ext_authz_error"
	// extProcRefusalDetail is the details fhirwall-proxy's ext_proc sets on its immediate responses
	// (= extproc.RefusalDetails): a refusal it chose, such as the 404 for another patient's resource.
	extProcRefusalDetail = "fhirwall_response_refused"
)

// Build turns a validated IR into Envoy resources. It validates the IR again, so it never builds from a
// half-checked one, and every resource against Envoy's own proto constraints.
func Build(x *ir.Xds) (*Resources, error) {
	if err := x.Validate(); err != nil {
		return nil, err
	}
	hcm, err := httpConnectionManager(x.Listener)
	if err != nil {
		return nil, err
	}
	res := &Resources{
		Listeners: []types.Resource{listener(x.Listener, hcm)},
		Routes:    []types.Resource{routeConfiguration(x.Listener)},
	}
	for _, c := range x.Clusters {
		res.Clusters = append(res.Clusters, envoyCluster(c))
	}
	if t := x.Listener.TLS; t != nil {
		res.Secrets = append(res.Secrets, listenerSecret(t))
	}
	for _, group := range [][]types.Resource{res.Listeners, res.Routes, res.Clusters, res.Secrets} {
		for _, r := range group {
			if v, ok := r.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					return nil, fmt.Errorf("generated %T does not satisfy Envoy's constraints: %w", r, err)
				}
			}
		}
	}
	return res, nil
}

func listener(l *ir.HTTPListener, hcm *anypb.Any) *listenerv3.Listener {
	chain := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{{
			Name:       hcmFilterName,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}},
	}
	if l.TLS != nil {
		chain.TransportSocket = downstreamTLS(l.TLS)
	}
	return &listenerv3.Listener{
		PerConnectionBufferLimitBytes: bufferLimit(l.BufferLimitBytes),
		Name:                          l.Name,
		Address:                       socketAddress(l.Address, l.Port),
		FilterChains:                  []*listenerv3.FilterChain{chain},
	}
}

func httpConnectionManager(l *ir.HTTPListener) (*anypb.Any, error) {
	var filters []*hcmv3.HttpFilter
	for _, f := range httpFilterChain() {
		hf, err := f.build(l)
		if err != nil {
			return nil, err
		}
		if hf != nil {
			filters = append(filters, hf)
		}
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: l.Name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: RouteConfigName,
		}},
		HttpFilters: filters,
		// Paths are normalised once, here, so the route match, ext_authz and the FHIR server all see the same
		// path: RFC 3986 dot-segment removal, '//' merged, and %2F/%5C refused outright because a FHIR id
		// never contains a slash.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			// x_fhirwall_patient would slip past the x-fhirwall- prefix strip, and some servers fold '_' to '-'.
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_DROP_HEADER,
		},
		UseRemoteAddress:             wrapperspb.Bool(true),
		GenerateRequestId:            wrapperspb.Bool(true),
		PreserveExternalRequestId:    false,
		AlwaysSetRequestIdInResponse: true,
		AccessLog:                    []*accesslogv3.AccessLog{stdoutJSONAccessLog()},
		LocalReplyConfig:             localReplyConfig(),
	}
	if m := earlyHeaderMutations(l); len(m) > 0 {
		hcm.EarlyHeaderMutationExtensions = []*corev3.TypedExtensionConfig{{
			Name:        "envoy.http.early_header_mutation.header_mutation",
			TypedConfig: mustAny(&earlyheadermutationv3.HeaderMutation{Mutations: m}),
		}}
	}
	if t := l.Tracing; t != nil {
		hcm.Tracing = hcmTracing(t)
	}
	return packAny(hcm)
}

// earlyHeaderMutations remove what a client may not send. Early header mutation runs before routing, the
// tracer and any HTTP filter. Route-level request_headers_to_remove would be the wrong tool: the router applies
// it last, so it would also strip the x-fhirwall-* headers ext_authz adds for the FHIR server, and the tracer
// would already have read a client's traceparent.
func earlyHeaderMutations(l *ir.HTTPListener) []*mutationrulesv3.HeaderMutation {
	var m []*mutationrulesv3.HeaderMutation
	if l.StripRequestHeaderPrefix != "" {
		m = append(m, &mutationrulesv3.HeaderMutation{
			Action: &mutationrulesv3.HeaderMutation_RemoveOnMatch_{
				RemoveOnMatch: &mutationrulesv3.HeaderMutation_RemoveOnMatch{
					KeyMatcher: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: l.StripRequestHeaderPrefix},
						IgnoreCase:   true,
					},
				},
			},
		})
	}
	if t := l.Tracing; t != nil && !t.TrustIncoming {
		// W3C Trace Context §3.2 "restart trace", at the front gate: Envoy's OpenTelemetry tracer would
		// otherwise continue the client's trace, take its sampled flag, and fhirwall would record the client's
		// chosen trace id in the audit record. The HCM has no setting for this (envoyproxy/envoy#40012).
		for _, h := range traceContextHeaders {
			m = append(m, &mutationrulesv3.HeaderMutation{Action: &mutationrulesv3.HeaderMutation_Remove{Remove: h}})
		}
	}
	return m
}

// traceContextHeaders are W3C Trace Context's request headers.
var traceContextHeaders = []string{"traceparent", "tracestate"}

// Well-known names of the tracing configuration.
const (
	openTelemetryTracerName = "envoy.tracers.opentelemetry"
	// tracingExportTimeout bounds one OTLP export call from Envoy to the collector.
	tracingExportTimeout = 5 * time.Second
)

// hcmTracing has Envoy's OpenTelemetry tracer trace every request and export to the collector cluster. The
// span's default http.url tag (the path and query as sent: a patient id, a search, an access_token
// parameter) is replaced by the route's name, the API; x-client-trace-id forces no sampling unless the
// client's trace context is trusted.
func hcmTracing(t *ir.Tracing) *hcmv3.HttpConnectionManager_Tracing {
	client := 0.0
	if t.TrustIncoming {
		client = 100
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		ClientSampling:  &typev3.Percent{Value: client},
		RandomSampling:  &typev3.Percent{Value: t.SamplingPercent},
		OverallSampling: &typev3.Percent{Value: 100},
		CustomTags: []*tracingtypev3.CustomTag{{
			Tag:  "http.url",
			Type: &tracingtypev3.CustomTag_Value{Value: "%ROUTE_NAME%"},
		}},
		Provider: &tracev3.Tracing_Http{
			Name: openTelemetryTracerName,
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{
				GrpcService: &corev3.GrpcService{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: t.Cluster}},
					Timeout:         durationpb.New(tracingExportTimeout),
				},
				ServiceName: t.ServiceName,
			})},
		},
	}
}

// httpFilter is one Envoy HTTP filter of the listener's chain; build returns nil when the listener does not
// use it.
type httpFilter interface {
	build(l *ir.HTTPListener) (*hcmv3.HttpFilter, error)
}

// httpFilterChain is the filter order: answer CORS preflights, decide, watch the exchange (ext_proc), count,
// route. CORS comes first so a preflight (no token, nothing to decide) is answered before ext_authz, and so
// its encoder adds the CORS headers to every answer, ext_authz's refusals included.
func httpFilterChain() []httpFilter {
	return []httpFilter{corsFilter{}, extAuthzFilter{}, extProcFilter{}, localRateLimitFilter{}, globalRateLimitFilter{user: true}, globalRateLimitFilter{}, routerFilter{}}
}

type corsFilter struct{}

var _ httpFilter = corsFilter{}

func (corsFilter) build(l *ir.HTTPListener) (*hcmv3.HttpFilter, error) {
	if !slices.ContainsFunc(l.Routes, func(r *ir.HTTPRoute) bool { return r.CORS != nil }) {
		return nil, nil
	}
	// The policies are per route (typed_per_filter_config); the filter itself has no settings.
	return &hcmv3.HttpFilter{Name: corsFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}}, nil
}

// routeCORS is Envoy's CorsPolicy for c. Credentials are never allowed (SMART apps send a bearer token,
// never a cookie), and a preflight no policy admits is answered here rather than forwarded to ext_authz.
func routeCORS(c *ir.CORS) *anypb.Any {
	p := &corsv3.CorsPolicy{
		AllowMethods:                 c.AllowMethods,
		AllowHeaders:                 c.AllowHeaders,
		ExposeHeaders:                c.ExposeHeaders,
		MaxAge:                       c.MaxAge,
		AllowCredentials:             wrapperspb.Bool(false),
		ForwardNotMatchingPreflights: wrapperspb.Bool(false),
	}
	if c.AnyOrigin {
		// Envoy echoes the request's Origin when a matcher admits it; it never writes "*".
		p.AllowOriginStringMatch = []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}}
	}
	for _, o := range c.Origins {
		p.AllowOriginStringMatch = append(p.AllowOriginStringMatch, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o}})
	}
	return mustAny(p)
}

type extAuthzFilter struct{}

var _ httpFilter = extAuthzFilter{}

func (extAuthzFilter) build(l *ir.HTTPListener) (*hcmv3.HttpFilter, error) {
	a := l.ExtAuthz
	if a == nil {
		return nil, nil
	}
	cfg := &ext_authzv3.ExtAuthz{
		Services: &ext_authzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: a.Cluster,
			}},
			Timeout:     durationpb.New(a.Timeout),
			RetryPolicy: replicaRetryPolicy("connect-failure,refused-stream,reset-before-request", a.Timeout),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		// Fail closed: no decision, no request.
		FailureModeAllow: false,
		StatusOnError:    &typev3.HttpStatus{Code: typev3.StatusCode(a.StatusOnError)},
		// The decision needs _search form bodies and batch/transaction bundles. Over the limit Envoy answers
		// 413 itself rather than asking about a truncated body.
		WithRequestBody: &ext_authzv3.BufferSettings{
			MaxRequestBytes:     a.MaxRequestBytes,
			AllowPartialMessage: false,
			PackAsBytes:         true,
		},
	}
	tc, err := packAny(cfg)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: extAuthzFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, nil
}

// replicaRetryPolicy retries a gRPC call that never reached a replica (connection refused, stream refused, or
// for a Check also reset before the request went out: a replica that just died) on another replica, up to
// authzRetries times. A Check is idempotent and such a request was never decided; an ext_proc stream that
// could not connect has processed nothing. An answer, a timeout or a reset after the request was sent is never
// retried. Envoy turns this into a route retry policy whose per-try timeout is the back-off's max_interval
// (Http::Utility::convertCoreToRouteRetryPolicy): left at its default, or small, it cuts every slower call
// short, so it is the call's own bound (perTry). Envoy keeps at most 64 KiB of a stream for a retry.
func replicaRetryPolicy(on string, perTry time.Duration) *corev3.RetryPolicy {
	return &corev3.RetryPolicy{
		NumRetries: wrapperspb.UInt32(authzRetries),
		RetryOn:    on,
		RetryHostPredicate: []*corev3.RetryPolicy_RetryHostPredicate{{
			Name:       "envoy.retry_host_predicates.previous_hosts",
			ConfigType: &corev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
		}},
		HostSelectionRetryMaxAttempts: 3,
		RetryBackOff:                  &corev3.BackoffStrategy{BaseInterval: durationpb.New(authzRetryBackOff), MaxInterval: durationpb.New(max(perTry, authzRetryBackOff))},
	}
}

// extProcStreamBound is the per-try bound of an ext_proc stream's retry policy: a stream lasts as long as its
// exchange (the FHIR server's timeout, a bulk file's download), and each message has its own timeout
// (message_timeout), so this only has to be longer than any exchange.
const extProcStreamBound = time.Hour

// authzRetries and authzRetryBackOff: a Check that could not reach a replica tries two others, the first
// after up to 25 ms.
const (
	authzRetries      = 2
	authzRetryBackOff = 25 * time.Millisecond
)

// routeBodyLimit overrides ext_authz's body buffering on one route: the same settings as the listener's
// (whole body, as bytes, never partial) with a larger limit.
func routeBodyLimit(max uint32) *anypb.Any {
	return mustAny(&ext_authzv3.ExtAuthzPerRoute{Override: &ext_authzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &ext_authzv3.CheckSettings{WithRequestBody: &ext_authzv3.BufferSettings{
			MaxRequestBytes:     max,
			AllowPartialMessage: false,
			PackAsBytes:         true,
		}},
	}})
}

type extProcFilter struct{}

var _ httpFilter = extProcFilter{}

func (extProcFilter) build(l *ir.HTTPListener) (*hcmv3.HttpFilter, error) {
	p := l.ExtProc
	if p == nil {
		return nil, nil
	}
	cfg := &ext_procv3.ExternalProcessor{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
			ClusterName: p.Cluster,
		}},
			// A replica that just died costs no exchange that had not reached it: its stream opens on another.
			RetryPolicy: replicaRetryPolicy("connect-failure,refused-stream", extProcStreamBound),
		},
		// Fail closed: a response nobody audited does not go out.
		FailureModeAllow: false,
		// Envoy runs ext_proc on the encode path of local replies too (an ext_authz refusal, or its failure when
		// fhirwall-proxy is down); an ext_proc failure there must read as the same 503, not a 500.
		StatusOnError:  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		MessageTimeout: durationpb.New(p.MessageTimeout),
		// Request headers carry the decision id ext_authz set; response headers carry the status to audit.
		ProcessingMode: extProcMode(ext_procv3.ProcessingMode_NONE),
		// The decision ext_authz sealed into its dynamic metadata travels with every message to
		// fhirwall-proxy's ext_proc, which may be another replica than the one that decided (Invariant 4).
		MetadataOptions: &ext_procv3.MetadataOptions{ForwardingNamespaces: &ext_procv3.MetadataOptions_MetadataNamespaces{
			Untyped: []string{extAuthzFilterName},
		}},
	}
	if p.MaxMessageTimeout > 0 {
		cfg.MaxMessageTimeout = durationpb.New(p.MaxMessageTimeout)
	}
	if len(p.ForwardHeaders) > 0 {
		allowed := &matcherv3.ListStringMatcher{}
		for _, h := range p.ForwardHeaders {
			allowed.Patterns = append(allowed.Patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h}})
		}
		cfg.ForwardRules = &ext_procv3.HeaderForwardingRules{AllowedHeaders: allowed}
	}
	if p.BufferResponseBody {
		// Response bodies come whole (BUFFERED, bounded by the listener's buffer limit) unless fhirwall-proxy
		// answers the request headers with mode_override to headers only, which it does for every decision
		// that needs no response enforcement, or to the request body whole for a decision an adapter answers
		// on it (the decision travelled without the body). These three modes are the only ones it may choose.
		cfg.ProcessingMode = extProcMode(ext_procv3.ProcessingMode_BUFFERED)
		cfg.AllowModeOverride = true
		cfg.AllowedOverrideModes = extProcOverrideModes()
	}
	tc, err := packAny(cfg)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: extProcFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, nil
}

// extProcForwardedHeaders are the headers fhirwall-proxy's ext_proc reads (extproc.ForwardedHeaders, with
// filters/authz's decision header; a test keeps the two lists equal): the request's decision id and request
// id, and the response's status and the headers its answer depends on. Nothing else of a request — its
// bearer token above all — leaves Envoy for ext_proc.
var extProcForwardedHeaders = []string{"x-fhirwall-decision-id", "x-request-id", ":status", "content-type", "content-encoding",
	"content-length", "content-location", "retry-after"}

// extProcOverrideModes are the modes fhirwall-proxy may choose per exchange (= extproc.HeadersOnly,
// BufferedResponse and BufferedRequest): headers only, the response body whole, the request body whole.
func extProcOverrideModes() []*ext_procv3.ProcessingMode {
	requestBody := extProcMode(ext_procv3.ProcessingMode_NONE)
	requestBody.RequestBodyMode = ext_procv3.ProcessingMode_BUFFERED
	return []*ext_procv3.ProcessingMode{
		extProcMode(ext_procv3.ProcessingMode_NONE),
		extProcMode(ext_procv3.ProcessingMode_BUFFERED),
		requestBody,
	}
}

// extProcMode is the processing mode fhirwall uses: request and response headers, the response body as
// given, no request body (ext_authz had it; only an adapter's mode asks for it again) and no trailers.
func extProcMode(responseBody ext_procv3.ProcessingMode_BodySendMode) *ext_procv3.ProcessingMode {
	return &ext_procv3.ProcessingMode{
		RequestHeaderMode:   ext_procv3.ProcessingMode_SEND,
		ResponseHeaderMode:  ext_procv3.ProcessingMode_SEND,
		RequestBodyMode:     ext_procv3.ProcessingMode_NONE,
		ResponseBodyMode:    responseBody,
		RequestTrailerMode:  ext_procv3.ProcessingMode_SKIP,
		ResponseTrailerMode: ext_procv3.ProcessingMode_SKIP,
	}
}

type routerFilter struct{}

var _ httpFilter = routerFilter{}

func (routerFilter) build(*ir.HTTPListener) (*hcmv3.HttpFilter, error) {
	return &hcmv3.HttpFilter{
		Name:       routerFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
	}, nil
}

// forwardedHeadersToRemove are the request headers besides x-forwarded-{host,proto,prefix} from which the FHIR
// server could take its public base: Forwarded (RFC 7239 host= and proto=), X-Forwarded-Port and
// X-Forwarded-Ssl (Spring's ForwardedHeaderUtils, which HAPI's ApacheProxyAddressStrategy calls).
var forwardedHeadersToRemove = []string{"forwarded", "x-forwarded-port", "x-forwarded-ssl"}

func routeConfiguration(l *ir.HTTPListener) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	for _, r := range l.Routes {
		match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: r.Path}}
		if r.PathPrefix != "" {
			// path_separated_prefix matches /p and /p/..., never /pX: an API's base is whole segments.
			match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: r.PathPrefix}}
		}
		action := &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.Cluster},
			PrefixRewrite:    r.RewritePrefix,
		}
		if r.Timeout > 0 {
			action.Timeout = durationpb.New(r.Timeout)
		}
		route := &routev3.Route{
			Name:  r.Name,
			Match: match,
			// Per-API stats: vhost.fhirwall.route.<api>.upstream_rq_*.
			StatPrefix: r.Name,
			Action:     &routev3.Route_Route{Route: action},
			// The token is for fhirwall: the upstream never sees it (applied by the router, after
			// ext_authz has read it). A method override would turn the GET that was decided into something else.
			// The standalone proxy does the same. The rate-limit headers ext_authz set are for Envoy alone.
			RequestHeadersToRemove: []string{"authorization", "cookie", "x-http-method-override", ratelimit.ClientHeader, ratelimit.TierHeader, ratelimit.UserHeader},
		}
		if r.RateLimit != nil {
			route.TypedPerFilterConfig = map[string]*anypb.Any{localRateLimitFilterName: routeRateLimit(r.Name, r.RateLimit)}
			if l.GlobalRateLimit != nil {
				route.TypedPerFilterConfig[globalRateLimitFilterName] = routeGlobalRateLimit(r.RateLimit)
				if u := routeGlobalUserRateLimit(r.RateLimit); u != nil {
					route.TypedPerFilterConfig[globalUserRateLimitFilterName] = u
				}
			}
		}
		if r.MaxRequestBytes > 0 {
			if route.TypedPerFilterConfig == nil {
				route.TypedPerFilterConfig = map[string]*anypb.Any{}
			}
			route.TypedPerFilterConfig[extAuthzFilterName] = routeBodyLimit(r.MaxRequestBytes)
			route.RequestBodyBufferLimit = wrapperspb.UInt64(uint64(r.MaxRequestBytes))
		}
		if r.CORS != nil {
			if route.TypedPerFilterConfig == nil {
				route.TypedPerFilterConfig = map[string]*anypb.Any{}
			}
			route.TypedPerFilterConfig[corsFilterName] = routeCORS(r.CORS)
			// CORS is fhirwall's to say: whatever the FHIR server says about it is dropped before the CORS
			// filter writes its own.
			route.ResponseHeadersToRemove = slices.Clone(cors.ResponseHeaders)
			// Caches must not hand one origin's answer (its Access-Control-Allow-Origin) to another.
			route.ResponseHeadersToAdd = []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "vary", Value: "Origin"},
				AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
			}}
		}
		if f := r.Forwarded; f != nil {
			// The FHIR server builds its links (Bundle.link, fullUrl, Location) from these: the API's public base
			// from the configuration, literal, never the client's Host. Whatever the client sent under these names
			// is overwritten, and the other headers HAPI (ApacheProxyAddressStrategy) and Spring's
			// UriComponentsBuilder.fromHttpRequest read a base from are removed: Forwarded outranks every
			// X-Forwarded-* there. The IR admits no '%', which Envoy would read as a command operator.
			route.RequestHeadersToRemove = append(route.RequestHeadersToRemove, forwardedHeadersToRemove...)
			route.RequestHeadersToAdd = []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-forwarded-prefix", Value: f.Prefix}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
				{Header: &corev3.HeaderValue{Key: "x-forwarded-host", Value: f.Host}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
				{Header: &corev3.HeaderValue{Key: "x-forwarded-proto", Value: f.Proto}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
			}
		}
		routes = append(routes, route)
	}
	// Everything else is answered here, without bothering ext_authz: there is nothing to decide about a
	// path no API serves, and an unreachable authz service must not turn a 404 into a 503.
	routes = append(routes, &routev3.Route{
		Name:   notFoundRouteName,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
		TypedPerFilterConfig: map[string]*anypb.Any{
			extAuthzFilterName: mustAny(&ext_authzv3.ExtAuthzPerRoute{
				Override: &ext_authzv3.ExtAuthzPerRoute_Disabled{Disabled: true},
			}),
			extProcFilterName: mustAny(&ext_procv3.ExtProcPerRoute{
				Override: &ext_procv3.ExtProcPerRoute_Disabled{Disabled: true},
			}),
		},
	})
	return &routev3.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    virtualHostName,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

func envoyCluster(c *ir.Cluster) *clusterv3.Cluster {
	discovery := clusterv3.Cluster_STATIC
	if !c.IsIP() {
		discovery = clusterv3.Cluster_STRICT_DNS
	}
	out := &clusterv3.Cluster{
		Name:                          c.Name,
		PerConnectionBufferLimitBytes: bufferLimit(c.BufferLimitBytes),
		ConnectTimeout:                durationpb.New(c.ConnectTimeout),
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: discovery},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: c.Name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbEndpoints(c.Endpoints)}},
		},
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(c.MaxConnections),
			MaxPendingRequests: wrapperspb.UInt32(c.MaxPendingRequests),
			MaxRequests:        wrapperspb.UInt32(c.MaxRequests),
		}}},
	}
	if c.TLS != nil {
		out.TransportSocket = upstreamTLS(c.TLS)
	}
	if o := c.Outlier; o != nil {
		out.OutlierDetection = &clusterv3.OutlierDetection{
			Interval:                               durationpb.New(o.Interval),
			BaseEjectionTime:                       durationpb.New(o.BaseEjection),
			MaxEjectionPercent:                     wrapperspb.UInt32(o.MaxEjectionPercent),
			SplitExternalLocalOriginErrors:         true,
			ConsecutiveLocalOriginFailure:          wrapperspb.UInt32(o.ConsecutiveLocalFailures),
			EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
			// Only failures to reach the server eject it; its own 5xx answers do not.
			EnforcingConsecutive_5Xx:           wrapperspb.UInt32(0),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(0),
			EnforcingSuccessRate:               wrapperspb.UInt32(0),
			EnforcingLocalOriginSuccessRate:    wrapperspb.UInt32(0),
		}
		if o.ConsecutiveGatewayFailures > 0 {
			out.OutlierDetection.ConsecutiveGatewayFailure = wrapperspb.UInt32(o.ConsecutiveGatewayFailures)
			out.OutlierDetection.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
		}
	}
	if h := c.HealthCheck; h != nil {
		out.HealthChecks = []*corev3.HealthCheck{{
			Timeout:            durationpb.New(h.Timeout),
			Interval:           durationpb.New(h.Interval),
			UnhealthyThreshold: wrapperspb.UInt32(h.UnhealthyThreshold),
			HealthyThreshold:   wrapperspb.UInt32(h.HealthyThreshold),
			// A host that stopped answering is probed at the same pace, not the default 60 s, so a restarted
			// replica rejoins within a second or two.
			NoTrafficInterval: durationpb.New(h.Interval),
			HealthChecker:     &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{}},
		}}
		// A replica that leaves service discovery (its pod gone from the headless Service) is dropped at once,
		// without waiting for its health checks to fail.
		out.IgnoreHealthOnHostRemoval = true
	}
	if c.HTTP2 {
		out.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			httpProtocolOptions: mustAny(&httpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
						},
					},
				},
			}),
		}
	}
	return out
}

// lbEndpoints lists every endpoint with equal weight.
func lbEndpoints(eps []ir.Endpoint) []*endpointv3.LbEndpoint {
	out := make([]*endpointv3.LbEndpoint, 0, len(eps))
	for _, e := range eps {
		out = append(out, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e.Host, e.Port)}},
		})
	}
	return out
}

func bufferLimit(n uint32) *wrapperspb.UInt32Value {
	if n == 0 {
		return nil
	}
	return wrapperspb.UInt32(n)
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// stdoutJSONAccessLog is Envoy's own request log. It leaves out the query string, which carries patient
// identifiers and search terms; the audit stream is where those belong.
func stdoutJSONAccessLog() *accesslogv3.AccessLog {
	format := mustStruct(map[string]any{
		"time":             "%START_TIME%",
		"request_id":       "%REQ(X-REQUEST-ID)%",
		"method":           "%REQ(:METHOD)%",
		"path":             "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":         "%PROTOCOL%",
		"status":           "%RESPONSE_CODE%",
		"details":          "%RESPONSE_CODE_DETAILS%",
		"flags":            "%RESPONSE_FLAGS%",
		"route":            "%ROUTE_NAME%",
		"upstream_cluster": "%UPSTREAM_CLUSTER%",
		"upstream_host":    "%UPSTREAM_HOST%",
		"duration_ms":      "%DURATION%",
		"bytes_received":   "%BYTES_RECEIVED%",
		"bytes_sent":       "%BYTES_SENT%",
		"downstream":       "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
		"user_agent":       "%REQ(USER-AGENT)%",
	})
	return &accesslogv3.AccessLog{
		Name: "envoy.access_loggers.stdout",
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&streamv3.StdoutAccessLog{
			AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: format},
				Formatters: []*corev3.TypedExtensionConfig{{
					Name:        "envoy.formatter.req_without_query",
					TypedConfig: mustAny(&reqwithoutqueryv3.ReqWithoutQuery{}),
				}},
			}},
		})},
	}
}

// localReply describes how one kind of reply Envoy generates itself becomes a FHIR OperationOutcome.
type localReply struct {
	filter *accesslogv3.AccessLogFilter
	// keep leaves the reply exactly as it is (no rewrite).
	keep bool
	// status, when set, replaces the reply's status code.
	status uint32
	// refusal is the OperationOutcome sent, encoded by internal/outcome like every refusal of fhirwall-proxy,
	// so the same status reads byte for byte the same from Envoy and from the proxy.
	refusal outcome.Refusal
	// retryAfter, when set, is the Retry-After added when the reply has none (the global rate limit's 429;
	// the local one sets its own).
	retryAfter string
}

// localReplies are tried in order; the first whose filter matches decides.
//
// ext_proc immediate responses are local replies too: fhirwall-proxy marks its own with
// extProcRefusalDetail so they are kept like ext_authz denials (a 404 refusal must read exactly like
// ext_authz's 404, not like "no API at this path").
//
// ext_authz denials go through the same local-reply path as Envoy's own errors, carrying the status, headers
// and OperationOutcome body fhirwall-proxy chose. They must come out untouched, and the only thing that
// tells them apart from an ext_authz *error* (service down, timeout) is the response code details: both
// carry the UAEX response flag, and a denial may use any status, 503 included. Hence CEL on
// response.code_details, and no top-level body_format (it would apply to every reply no mapper rewrites,
// denials included).
func localReplies() []localReply {
	authzDown := outcome.Unavailable.WithDiagnostics(authzUnavailable)
	return []localReply{
		{filter: celFilter(fmt.Sprintf(
			"response.code_details == '%s' || response.code_details == '%s' || (response.code_details == '%s' && 'content-type' in response.headers)",
			extAuthzDeniedDetail, extProcRefusalDetail, extAuthzErrorDetail)), keep: true},
		{filter: celFilter(fmt.Sprintf("response.code_details == '%s'", extAuthzErrorDetail)), refusal: authzDown},
		// ext_proc failing (fhirwall-proxy down or slower than the message timeout) is the same outage as
		// ext_authz failing, and must read the same: 503, not a 500 or a 504 that blames the FHIR server.
		{filter: celFilter("response.code_details.startsWith('ext_proc_error')"), status: 503, refusal: authzDown},
		// The same 404 as fhirwall-proxy's for a resource that is not the caller's: no path tells more.
		{filter: statusFilter(accesslogv3.ComparisonFilter_EQ, 404), refusal: outcome.NotFound},
		{filter: statusFilter(accesslogv3.ComparisonFilter_EQ, 413), refusal: outcome.TooLarge},
		// The global rate limit's 429 reads like the local one's; its counters are per second.
		{filter: statusFilter(accesslogv3.ComparisonFilter_EQ, 429), refusal: outcome.RateLimited, retryAfter: globalRetryAfter},
		// The rate limit service down or slower than its timeout (failure_mode_deny): refused, and said so.
		{filter: celFilter(fmt.Sprintf("response.code_details == '%s'", rateLimitErrorDetail)), status: 503,
			refusal: outcome.Unavailable.WithDiagnostics(rateLimiterUnavailable)},
		{filter: statusFilter(accesslogv3.ComparisonFilter_EQ, 503), refusal: outcome.Unavailable},
		{filter: statusFilter(accesslogv3.ComparisonFilter_EQ, 504), refusal: outcome.Timeout},
		// Envoy's own details (which connection failed, how) stay in its access log, under the request id;
		// the client learns only that the request failed.
		{filter: statusFilter(accesslogv3.ComparisonFilter_GE, 500), refusal: outcome.Failed},
		{filter: statusFilter(accesslogv3.ComparisonFilter_GE, 400), refusal: outcome.Rejected},
	}
}

// authzUnavailable is what a client reads when fhirwall-proxy could not decide or watch its request.
const authzUnavailable = "The authorization service is unavailable; the request was not processed."

func localReplyConfig() *hcmv3.LocalReplyConfig {
	cfg := &hcmv3.LocalReplyConfig{}
	for _, r := range localReplies() {
		m := &hcmv3.ResponseMapper{Filter: r.filter}
		if r.status != 0 {
			m.StatusCode = wrapperspb.UInt32(r.status)
		}
		if !r.keep {
			m.BodyFormatOverride = operationOutcome(r.refusal)
			if r.retryAfter != "" {
				m.HeadersToAdd = []*corev3.HeaderValueOption{{
					Header:       &corev3.HeaderValue{Key: "retry-after", Value: r.retryAfter},
					AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT,
				}}
			}
			// Every 503 carries Retry-After, as fhirwall-proxy's do (outcome.Refusal.Headers).
			if r.status == 503 || r.refusal.Status == 503 {
				m.HeadersToAdd = []*corev3.HeaderValueOption{{
					Header:       &corev3.HeaderValue{Key: "retry-after", Value: outcome.RetryAfterSeconds},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
				}}
			}
		}
		cfg.Mappers = append(cfg.Mappers, m)
	}
	return cfg
}

// operationOutcome is the body of a reply Envoy makes itself: outcome's own compact encoding (resourceType
// first), as a literal text format. A json_format would have Envoy sort the keys, putting issue first. The
// request id (x-request-id, always set in the response) lets an operator find it in the access log.
func operationOutcome(r outcome.Refusal) *corev3.SubstitutionFormatString {
	return &corev3.SubstitutionFormatString{
		// '%' starts a command operator in Envoy's format strings; "%%" is a literal one.
		Format:      &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: strings.ReplaceAll(string(r.Body()), "%", "%%")}}},
		ContentType: fhirJSON,
	}
}

func celFilter(expr string) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
		ExtensionFilter: &accesslogv3.ExtensionFilter{
			Name:       "envoy.access_loggers.extension_filters.cel",
			ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: expr})},
		},
	}}
}

func statusFilter(op accesslogv3.ComparisonFilter_Op, code uint32) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op: op,
			Value: &corev3.RuntimeUInt32{
				DefaultValue: code,
				RuntimeKey:   fmt.Sprintf("fhirwall.local_reply.status_%s_%d", op, code),
			},
		}},
	}}
}

// packAny packs deterministically: Any holds bytes, and the snapshot version hashes them, so map order
// (structpb formats, per-filter configs) must not change the bytes from one build to the next.
func packAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return a, nil
}

// mustAny packs a message built in this file; it only fails for a nil message, a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a, err := packAny(m)
	if err != nil {
		panic(fmt.Sprintf("xds: pack %T: %v", m, err))
	}
	return a
}

// mustStruct converts a literal map from this file; it only fails for value types structpb does not know.
func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(fmt.Sprintf("xds: struct: %v", err))
	}
	return s
}

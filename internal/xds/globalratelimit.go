package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

const (
	globalRateLimitFilterName = "envoy.filters.http.ratelimit"
	// globalUserRateLimitFilterName is the second instance of the ratelimit filter, the one that asks about a
	// user's own counter before globalRateLimitFilterName asks about the app's (globalRateLimitFilter).
	globalUserRateLimitFilterName = "fhirwall.filters.http.ratelimit.user"
	// rateLimitErrorDetail is the response code details of the ratelimit filter's reply when the service
	// failed and failure_mode_deny refused the request (Envoy's RcDetails "rate_limiter_error").
	rateLimitErrorDetail = "rate_limiter_error"
	// rateLimiterUnavailable is what a client reads then; fhirwall-proxy's standalone answer says the same.
	rateLimiterUnavailable = ratelimit.UnavailableDiagnostics
	// globalRetryAfter is the Retry-After of the global limit's 429: its counters are per second.
	globalRetryAfter = "1"
)

// globalRateLimitFilter asks the rate limit service after the local rate limit (the first line: a client
// far over its rate is refused by its own Envoy without a call) and before the router. Only routes with a
// per-route configuration (routeGlobalRateLimit) produce descriptors; the others make no call. The service
// failing or slower than the timeout refuses the request with 503 (failure_mode_deny): a limit that let
// everything through whenever Redis is down would be no limit.
//
// Two instances, the user's counter first (user true): the rate limit service counts every descriptor of a
// call, the ones under their limit too, so asking about the user's and the app's counters in one call would let
// one member far over its own rate use up the app's for its other members. Asked in turn, a member refused by
// its own counter never reaches the app's (as the local limit takes a token from the user's bucket first and
// stops there). A request of an app refused by the app's counter has counted once on its user's: the user is
// then a little stricter, never looser.
type globalRateLimitFilter struct{ user bool }

var _ httpFilter = globalRateLimitFilter{}

func (f globalRateLimitFilter) build(l *ir.HTTPListener) (*hcmv3.HttpFilter, error) {
	g := l.GlobalRateLimit
	uses := func(r *ir.HTTPRoute) bool { return r.RateLimit != nil && (!f.user || perUser(r.RateLimit)) }
	if g == nil || !slices.ContainsFunc(l.Routes, uses) {
		return nil, nil
	}
	name, stats := globalRateLimitFilterName, "fhirwall_global_rate_limit"
	if f.user {
		name, stats = globalUserRateLimitFilterName, "fhirwall_global_user_rate_limit"
	}
	tc, err := packAny(&ratelimitfilterv3.RateLimit{
		Domain:          g.Domain,
		Stage:           0,
		RequestType:     "both",
		Timeout:         durationpb.New(g.Timeout),
		FailureModeDeny: true,
		StatusOnError:   &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		// The local limit's 429 carries no x-envoy-ratelimited; the global one's must read the same.
		DisableXEnvoyRatelimitedHeader: true,
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
				ClusterName: g.Cluster,
			}}},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		StatPrefix: stats,
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, nil
}

// perUser reports whether an API has a tier with a per-user rate.
func perUser(r *ir.RateLimit) bool {
	return slices.ContainsFunc(r.Tiers, func(t ir.TierLimit) bool { return t.PerUser != nil })
}

// routeGlobalRateLimit is the actions that make a route's descriptors for the app's counters, those of
// ratelimit.Descriptors: (api, tier, client) when ext_authz set the client and tier headers; (api, anonymous)
// when it set no client header. A request_headers action whose header is missing produces no descriptor.
// Per-route rate_limits, so the local rate limit's own (in its per-route config) are untouched. Every route of
// one API names the API, so its discovery documents and its data share the API's counters.
func routeGlobalRateLimit(r *ir.RateLimit) *anypb.Any {
	api := apiAction(r)
	tier := requestHeaderAction(r.TierHeader, ratelimit.DescriptorTier)
	client := requestHeaderAction(r.ClientHeader, ratelimit.DescriptorClient)
	return mustAny(&ratelimitfilterv3.RateLimitPerRoute{RateLimits: []*routev3.RateLimit{
		{Actions: []*routev3.RateLimit_Action{api, tier, client}},
		{Actions: []*routev3.RateLimit_Action{
			api,
			{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
				DescriptorKey:   ratelimit.DescriptorAnonymous,
				DescriptorValue: ratelimit.AnonymousValue,
				ExpectMatch:     wrapperspb.Bool(false), // the descriptor when the client header is absent
				Headers: []*routev3.HeaderMatcher{{
					Name:                 r.ClientHeader,
					HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
				}},
			}}},
		}},
	}})
}

// routeGlobalUserRateLimit is the actions of a route's user descriptor, (api, tier, client, user), asked
// before the app's (globalRateLimitFilter); nil for an API without a per-user tier. No user header (a
// backend token without a subject) or no client: no descriptor, no call.
func routeGlobalUserRateLimit(r *ir.RateLimit) *anypb.Any {
	if !perUser(r) {
		return nil
	}
	return mustAny(&ratelimitfilterv3.RateLimitPerRoute{RateLimits: []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
		apiAction(r),
		requestHeaderAction(r.TierHeader, ratelimit.DescriptorTier),
		requestHeaderAction(r.ClientHeader, ratelimit.DescriptorClient),
		requestHeaderAction(r.UserHeader, ratelimit.DescriptorUser),
	}}}})
}

func apiAction(r *ir.RateLimit) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
		GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorKey: ratelimit.DescriptorAPI, DescriptorValue: r.API},
	}}
}

// RateLimitConfigName names the one RateLimitConfig fhirwall-xds serves the rate limit service.
const RateLimitConfigName = "fhirwall"

// RateLimitConfig is the rate limit service's configuration for cfg's limits (nil when cfg has no global
// limit or no tiers): one domain, a subtree per API keyed like ratelimit.Descriptors.
//
//	fhirwall_api=API
//	  fhirwall_anonymous=true               anonymous rate (one counter per API)
//	  fhirwall_tier=TIER
//	    fhirwall_client (any value)         the tier's rate, a counter per client
//	      fhirwall_user (any value)         a per-user tier's user rate, a counter per user of each client
//	  fhirwall_tier (any other value)
//	    fhirwall_client (any value)         the anonymous rate, a counter per client
//
// The last branch holds a client whose tier the configuration does not know (Envoy's local limit gives it
// the anonymous bucket): without it, the service would find no limit and let it through. The service counts
// fixed one-second windows of requests_per_unit = per_second; burst is the local limit's business.
func RateLimitConfig(cfg Config) (*rlsconfv3.RateLimitConfig, error) {
	if cfg.GlobalRateLimit == nil {
		return nil, nil
	}
	x, err := Translate(cfg)
	if err != nil {
		return nil, err
	}
	return rateLimitConfig(x)
}

func rateLimitConfig(x *ir.Xds) (*rlsconfv3.RateLimitConfig, error) {
	g := x.Listener.GlobalRateLimit
	if g == nil {
		return nil, nil
	}
	out := &rlsconfv3.RateLimitConfig{Name: RateLimitConfigName, Domain: g.Domain}
	seen := map[string]bool{}
	for _, r := range x.Listener.Routes {
		rl := r.RateLimit
		if rl == nil || seen[rl.API] {
			continue
		}
		if rl.API == "" {
			return nil, fmt.Errorf("%w: route %q: a global rate limit needs the API's name", ir.ErrInvalid, r.Name)
		}
		seen[rl.API] = true
		api := &rlsconfv3.RateLimitDescriptor{Key: ratelimit.DescriptorAPI, Value: rl.API}
		api.Descriptors = append(api.Descriptors, &rlsconfv3.RateLimitDescriptor{
			Key: ratelimit.DescriptorAnonymous, Value: ratelimit.AnonymousValue, RateLimit: perSecond(rl.Anonymous),
		})
		for _, t := range rl.Tiers {
			client := &rlsconfv3.RateLimitDescriptor{Key: ratelimit.DescriptorClient, RateLimit: perSecond(t.Bucket)}
			if t.PerUser != nil {
				client.Descriptors = []*rlsconfv3.RateLimitDescriptor{{Key: ratelimit.DescriptorUser, RateLimit: perSecond(*t.PerUser)}}
			}
			api.Descriptors = append(api.Descriptors, &rlsconfv3.RateLimitDescriptor{
				Key: ratelimit.DescriptorTier, Value: t.Tier, Descriptors: []*rlsconfv3.RateLimitDescriptor{client},
			})
		}
		api.Descriptors = append(api.Descriptors, &rlsconfv3.RateLimitDescriptor{
			Key: ratelimit.DescriptorTier,
			Descriptors: []*rlsconfv3.RateLimitDescriptor{{
				Key: ratelimit.DescriptorClient, RateLimit: perSecond(rl.Anonymous),
			}},
		})
		out.Descriptors = append(out.Descriptors, api)
	}
	return out, nil
}

// perSecond is b's refill rate as the service's fixed window: whole requests per second, rounded up.
func perSecond(b ir.Bucket) *rlsconfv3.RateLimitPolicy {
	n := math.Ceil(float64(b.TokensPerFill) / b.FillInterval.Seconds())
	return &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: uint32(n)}
}

// RateLimitSnapshot is the rate limit service's snapshot for cfg: its RateLimitConfig, none when cfg has no
// global limit (the service then has no limits, and nothing asks it). Versioned by content, like Envoy's.
func RateLimitSnapshot(cfg Config) (*cache.Snapshot, error) {
	rlc, err := RateLimitConfig(cfg)
	if err != nil {
		return nil, err
	}
	var res []types.Resource
	if rlc != nil {
		res = append(res, rlc)
	}
	h := sha256.New()
	for _, r := range res {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("hash rate limit config: %w", err)
		}
		h.Write(b)
	}
	snap, err := cache.NewSnapshot(hex.EncodeToString(h.Sum(nil))[:16], map[resource.Type][]types.Resource{resource.RateLimitConfigType: res})
	if err != nil {
		return nil, fmt.Errorf("rate limit snapshot: %w", err)
	}
	return snap, nil
}

package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	local_ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fhirwall/fhirwall/internal/xds/ir"
)

const (
	localRateLimitFilterName = "envoy.filters.http.local_ratelimit"
	// Descriptor keys: the tier, the client and the user, in this order, from the headers ext_authz set.
	tierDescriptorKey   = "fhirwall_tier"
	clientDescriptorKey = "fhirwall_client"
	userDescriptorKey   = "fhirwall_user"
)

// localRateLimitFilter sits after ext_authz (which sets the client and tier headers, so only allowed
// requests are counted) and after ext_proc (so a 429 passes ext_proc on its way out and is audited). The
// listener-level filter has no bucket of its own: routes without a per-route config are not limited.
type localRateLimitFilter struct{}

var _ httpFilter = localRateLimitFilter{}

func (localRateLimitFilter) build(l *ir.HTTPListener) (*hcmv3.HttpFilter, error) {
	limited := false
	for _, r := range l.Routes {
		limited = limited || r.RateLimit != nil
	}
	if !limited {
		return nil, nil
	}
	tc, err := packAny(&local_ratelimitv3.LocalRateLimit{StatPrefix: "fhirwall_rate_limit"})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: localRateLimitFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, nil
}

// routeRateLimit is one route's limits: a bucket per (tier, client) seen — the client entry is a wildcard,
// so each client gets its own bucket of its tier's size — and the anonymous bucket for requests without a
// client. Buckets are shared by Envoy's worker threads, and the anonymous one is not also charged for
// requests that matched a client's.
//
// A tier with a per-user bucket adds a descriptor (tier, client, user) with two wildcards: a bucket per
// user of each client. The request then yields two descriptors (the second only when ext_authz set the user
// header) and Envoy takes a token from every configured descriptor it matches, strictest rate first,
// refusing at the first empty one (LocalRateLimiterImpl::requestAllowed), so the user's bucket and the
// client's both bound it. Unlike the standalone limiter, a user's token is not given back when the client's
// bucket is the one that refuses. max_dynamic_descriptors bounds each wildcard descriptor's LRU of buckets
// separately (local_rate_limit.proto), so it is the larger of the client and user bounds.
func routeRateLimit(route string, r *ir.RateLimit) *anypb.Any {
	all := runtimePercent(route, 100)
	cfg := &local_ratelimitv3.LocalRateLimit{
		StatPrefix:                      route,
		Status:                          &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
		TokenBucket:                     tokenBucket(r.Anonymous),
		FilterEnabled:                   all("enabled"),
		FilterEnforced:                  all("enforced"),
		AlwaysConsumeDefaultTokenBucket: wrapperspb.Bool(false),
		MaxDynamicDescriptors:           wrapperspb.UInt32(r.MaxClients),
		EnableRetryAfterHeader:          true,
		RateLimits: []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
			requestHeaderAction(r.TierHeader, tierDescriptorKey),
			requestHeaderAction(r.ClientHeader, clientDescriptorKey),
		}}},
	}
	perUser := false
	for _, t := range r.Tiers {
		cfg.Descriptors = append(cfg.Descriptors, &ratelimitv3.LocalRateLimitDescriptor{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
				{Key: tierDescriptorKey, Value: t.Tier},
				{Key: clientDescriptorKey}, // no value: one bucket per distinct client
			},
			TokenBucket: tokenBucket(t.Bucket),
		})
		if t.PerUser != nil {
			perUser = true
			cfg.Descriptors = append(cfg.Descriptors, &ratelimitv3.LocalRateLimitDescriptor{
				Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
					{Key: tierDescriptorKey, Value: t.Tier},
					{Key: clientDescriptorKey},
					{Key: userDescriptorKey}, // one bucket per distinct user of each client
				},
				TokenBucket: tokenBucket(*t.PerUser),
			})
		}
	}
	if perUser {
		// Without the user header (a tier with no per-user rate, a token without a subject) this descriptor
		// is not produced, and the request is limited by the client's bucket alone.
		cfg.RateLimits = append(cfg.RateLimits, &routev3.RateLimit{Actions: []*routev3.RateLimit_Action{
			requestHeaderAction(r.TierHeader, tierDescriptorKey),
			requestHeaderAction(r.ClientHeader, clientDescriptorKey),
			requestHeaderAction(r.UserHeader, userDescriptorKey),
		}})
		cfg.MaxDynamicDescriptors = wrapperspb.UInt32(max(r.MaxClients, r.MaxUsers))
	}
	return mustAny(cfg)
}

func requestHeaderAction(header, key string) *routev3.RateLimit_Action {
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
		RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{HeaderName: header, DescriptorKey: key},
	}}
}

func tokenBucket(b ir.Bucket) *typev3.TokenBucket {
	return &typev3.TokenBucket{
		MaxTokens:     b.MaxTokens,
		TokensPerFill: wrapperspb.UInt32(b.TokensPerFill),
		FillInterval:  durationpb.New(b.FillInterval),
	}
}

// runtimePercent returns a fraction that defaults to pct and can be changed at runtime under
// fhirwall.rate_limit.<route>.<what>, e.g. to shadow a limit during an incident.
func runtimePercent(route string, pct uint32) func(what string) *corev3.RuntimeFractionalPercent {
	return func(what string) *corev3.RuntimeFractionalPercent {
		return &corev3.RuntimeFractionalPercent{
			DefaultValue: &typev3.FractionalPercent{Numerator: pct, Denominator: typev3.FractionalPercent_HUNDRED},
			RuntimeKey:   "fhirwall.rate_limit." + route + "." + what,
		}
	}
}

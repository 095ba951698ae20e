package ir

import (
	"errors"
	"time"
)

// RateLimit is one API route's local rate limit. Envoy keeps a token bucket per (tier, client) pair it sees:
// the descriptors come from two request headers that only ext_authz sets (the client's id and its tier in
// the client registry), so a client cannot pick its own bucket. Requests that carry no client (the API's
// discovery documents) share the Anonymous bucket. A tier with a PerUser bucket also keeps one per (tier,
// client, user), keyed on a third header ext_authz sets: a request then takes a token from both.
type RateLimit struct {
	// API names the API in the global rate limit's descriptors: every route of one API shares its counters.
	API string
	// ClientHeader, TierHeader and UserHeader are the headers ext_authz sets on allowed requests.
	ClientHeader string
	TierHeader   string
	UserHeader   string
	// Tiers gives each tier's per-client bucket, sorted by name.
	Tiers []TierLimit
	// Anonymous is the one bucket shared by requests without a client on this route.
	Anonymous Bucket
	// MaxClients bounds the buckets Envoy keeps per tier (least recently used go first).
	MaxClients uint32
	// MaxUsers bounds the user buckets Envoy keeps per tier the same way.
	MaxUsers uint32
}

// TierLimit is the bucket every client of one tier gets, each its own, and, when PerUser is set, the bucket
// each user of such a client gets.
type TierLimit struct {
	Tier    string
	Bucket  Bucket
	PerUser *Bucket
}

// Bucket is a token bucket: it holds at most MaxTokens and gains TokensPerFill every FillInterval.
type Bucket struct {
	MaxTokens     uint32
	TokensPerFill uint32
	FillInterval  time.Duration
}

// Validate checks the rate limit of route name.
func (r *RateLimit) Validate(route string) error {
	var errs []error
	if r.API != "" && !nameRE.MatchString(r.API) {
		errs = append(errs, invalid("route %q: rate limit API %q must be a lower-case name", route, r.API))
	}
	if !headerPrefixRE.MatchString(r.ClientHeader) || !headerPrefixRE.MatchString(r.TierHeader) || !headerPrefixRE.MatchString(r.UserHeader) ||
		r.ClientHeader == r.TierHeader || r.UserHeader == r.ClientHeader || r.UserHeader == r.TierHeader {
		errs = append(errs, invalid("route %q: rate limit headers %q, %q and %q must be three lower-case header names", route, r.ClientHeader, r.TierHeader, r.UserHeader))
	}
	perUser := false
	if err := r.Anonymous.validate(route, "anonymous"); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{}
	for i, t := range r.Tiers {
		if !nameRE.MatchString(t.Tier) || seen[t.Tier] {
			errs = append(errs, invalid("route %q: rate limit tier %q (%d) must be a lower-case name, listed once", route, t.Tier, i))
		}
		if i > 0 && r.Tiers[i-1].Tier >= t.Tier {
			errs = append(errs, invalid("route %q: rate limit tiers must be sorted by name", route))
		}
		seen[t.Tier] = true
		if err := t.Bucket.validate(route, t.Tier); err != nil {
			errs = append(errs, err)
		}
		// Envoy requires every descriptor's fill interval to be a multiple of the route's default one.
		if t.Bucket.FillInterval%r.Anonymous.FillInterval != 0 {
			errs = append(errs, invalid("route %q: tier %q fill interval %s is not a multiple of the anonymous one (%s)", route, t.Tier, t.Bucket.FillInterval, r.Anonymous.FillInterval))
		}
		if u := t.PerUser; u != nil {
			perUser = true
			if err := u.validate(route, t.Tier+" per-user"); err != nil {
				errs = append(errs, err)
			}
			// Envoy takes tokens from the matched descriptors strictest rate first and stops at the first empty
			// one: were the client's rate as strict, a user over its own rate could still drain the client's.
			if u.rate() >= t.Bucket.rate() {
				errs = append(errs, invalid("route %q: tier %q per-user rate must be below the tier's own", route, t.Tier))
			}
			if u.FillInterval%r.Anonymous.FillInterval != 0 {
				errs = append(errs, invalid("route %q: tier %q per-user fill interval %s is not a multiple of the anonymous one (%s)", route, t.Tier, u.FillInterval, r.Anonymous.FillInterval))
			}
		}
	}
	if r.MaxClients == 0 {
		errs = append(errs, invalid("route %q: rate limit keeps no client buckets", route))
	}
	if perUser && r.MaxUsers == 0 {
		errs = append(errs, invalid("route %q: rate limit keeps no user buckets", route))
	}
	return errors.Join(errs...)
}

// rate is b's tokens a second.
func (b Bucket) rate() float64 { return float64(b.TokensPerFill) / b.FillInterval.Seconds() }

func (b Bucket) validate(route, what string) error {
	switch {
	case b.MaxTokens == 0 || b.TokensPerFill == 0:
		return invalid("route %q: %s bucket must hold and gain at least one token", route, what)
	case b.FillInterval < 50*time.Millisecond || b.FillInterval%time.Millisecond != 0:
		// Envoy's floor; finer intervals only burn CPU.
		return invalid("route %q: %s fill interval %s must be whole milliseconds, at least 50ms", route, what, b.FillInterval)
	}
	return nil
}

// GlobalRateLimit is the rate limit service Envoy asks after its local rate limit: a gRPC cluster, the
// domain the service's configuration is kept under, and how long one call may take. The service failing or
// taking longer refuses the request (fail closed).
type GlobalRateLimit struct {
	Cluster string
	Domain  string
	Timeout time.Duration
}

// Validate checks the global rate limit's own fields; Xds.Validate checks its cluster.
func (g *GlobalRateLimit) Validate() error {
	var errs []error
	if g.Cluster == "" {
		errs = append(errs, invalid("global rate limit has no cluster"))
	}
	if !nameRE.MatchString(g.Domain) {
		errs = append(errs, invalid("global rate limit domain %q must be a lower-case name", g.Domain))
	}
	if g.Timeout < time.Millisecond || g.Timeout%time.Millisecond != 0 {
		errs = append(errs, invalid("global rate limit timeout %s must be whole milliseconds, at least 1ms", g.Timeout))
	}
	return errors.Join(errs...)
}

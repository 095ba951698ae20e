package ir

import (
	"errors"
	"time"
)

// RateLimit is one API route's local rate limit. Envoy keeps a token bucket per (tier, client) pair it sees:
// the descriptors come from two request headers that only ext_authz sets (the client's id and its tier in
// the client registry), so a client cannot pick its own bucket. Requests that carry no client (the API's
// discovery documents) share the Anonymous bucket.
type RateLimit struct {
	// ClientHeader and TierHeader are the headers ext_authz sets on allowed requests.
	ClientHeader string
	TierHeader   string
	// Tiers gives each tier's per-client bucket, sorted by name.
	Tiers []TierLimit
	// Anonymous is the one bucket shared by requests without a client on this route.
	Anonymous Bucket
	// MaxClients bounds the buckets Envoy keeps per tier (least recently used go first).
	MaxClients uint32
}

// TierLimit is the bucket every client of one tier gets, each its own.
type TierLimit struct {
	Tier   string
	Bucket Bucket
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
	if !headerPrefixRE.MatchString(r.ClientHeader) || !headerPrefixRE.MatchString(r.TierHeader) || r.ClientHeader == r.TierHeader {
		errs = append(errs, invalid("route %q: rate limit headers %q and %q must be two lower-case header names", route, r.ClientHeader, r.TierHeader))
	}
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
	}
	if r.MaxClients == 0 {
		errs = append(errs, invalid("route %q: rate limit keeps no client buckets", route))
	}
	return errors.Join(errs...)
}

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

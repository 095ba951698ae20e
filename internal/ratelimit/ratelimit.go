// Package ratelimit is fhirwall's per-API, per-client rate limit: the tiers and rates both modes enforce,
// the headers ext_authz hands to Envoy's local rate limit filter, and the standalone proxy's own limiter.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Headers ext_authz sets on allowed requests for Envoy's local rate limit filter. They carry the x-fhirwall-
// prefix, which Envoy strips from what clients send, so only ext_authz can choose a client's bucket; the
// route removes them before the FHIR server sees the request.
const (
	ClientHeader = "x-fhirwall-client"
	TierHeader   = "x-fhirwall-rate-tier"
)

// DefaultTier is the tier of a client the registry gives none.
const DefaultTier = "standard"

// Rate is a token bucket: PerSecond requests a second, up to Burst at once (0: PerSecond).
// The same type is read from fhirwall.yaml (mapstructure) and from the xDS golden inputs (yaml).
type Rate struct {
	PerSecond uint32 `mapstructure:"per_second" yaml:"per_second"`
	Burst     uint32 `mapstructure:"burst" yaml:"burst"`
}

// Validate checks one rate; what names it in the message.
func (r Rate) Validate(what string) error {
	if r.PerSecond == 0 {
		return fmt.Errorf("%s: per_second must be at least 1 (remove the client's API access to block it)", what)
	}
	if r.Burst != 0 && r.Burst < r.PerSecond {
		return fmt.Errorf("%s: burst %d is below per_second %d; a bucket that small never fills a second's worth", what, r.Burst, r.PerSecond)
	}
	return nil
}

func (r Rate) burst() int {
	if r.Burst == 0 {
		return int(r.PerSecond)
	}
	return int(r.Burst)
}

// Limits are the rates of every API. No tiers: nothing is limited.
type Limits struct {
	// Tiers is the rate each client of a tier gets, per API.
	Tiers map[string]Rate
	// PerAPI overrides Tiers for one API, tier by tier.
	PerAPI map[string]map[string]Rate
	// Anonymous is the one bucket per API shared by requests without a known client and tier.
	Anonymous Rate
	// MaxClients bounds the client buckets kept per API and tier (least recently used go first). The buckets
	// are spread over 16 shards, each keeping its share (MaxClients/16 rounded up): the bucket that goes is
	// the least recently used of its shard, and a MaxClients that is not a multiple of 16 is rounded up.
	MaxClients int
}

// Enabled reports whether any limit applies.
func (l Limits) Enabled() bool { return len(l.Tiers) > 0 }

// rateFor is the rate of a client of tier on api; ok false when the tier is unknown there.
func (l Limits) rateFor(api, tier string) (Rate, bool) {
	if r, ok := l.PerAPI[api][tier]; ok {
		return r, true
	}
	r, ok := l.Tiers[tier]
	return r, ok
}

// Limiter enforces Limits in the standalone proxy as Envoy does in front of ext_authz: a bucket per (API,
// tier, client), and one shared anonymous bucket per API for requests without a client or with a tier the
// configuration does not know. Envoy refills its buckets once a second in whole steps; this one refills
// continuously at the same rate, so the two agree on the rate and the burst, not on the exact instant a
// token comes back.
type Limiter struct {
	state atomic.Pointer[limiterState]
	now   func() time.Time
}

type limiterState struct {
	limits Limits
	// Buckets are spread over shards by (API, tier, client), each with its own lock: with one lock for all,
	// Allow got slower with every core added (BenchmarkAllowParallel).
	shards [shards]shard
	seed   maphash.Seed
}

const shards = 16

type shard struct {
	mu      sync.Mutex
	clients map[string]*lru.Cache[string, *rate.Limiter] // by API + tier
	anon    map[string]*rate.Limiter                     // by API, in the shard of the API alone
	_       [64]byte                                     // keeps neighbouring shards' locks off one cache line
}

func newState(limits Limits) *limiterState {
	s := &limiterState{limits: limits, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].clients = map[string]*lru.Cache[string, *rate.Limiter]{}
		s.shards[i].anon = map[string]*rate.Limiter{}
	}
	return s
}

func (s *limiterState) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shards]
}

// New returns a Limiter for limits; now is the clock (time.Now in production).
func New(limits Limits, now func() time.Time) *Limiter {
	l := &Limiter{now: now}
	l.Update(limits)
	return l
}

// Update replaces the limits. Buckets start full again, as Envoy's do when its configuration changes.
func (l *Limiter) Update(limits Limits) {
	if limits.MaxClients <= 0 {
		limits.MaxClients = 10000
	}
	l.state.Store(newState(limits))
}

// Allow takes one token from the bucket of client (of tier) on api. When the bucket is empty it reports
// how long until a token is back, rounded up to whole seconds for Retry-After (at least 1).
func (l *Limiter) Allow(api, client, tier string) (bool, time.Duration) {
	s := l.state.Load()
	if !s.limits.Enabled() {
		return true, 0
	}
	b := s.bucket(api, client, tier)
	now := l.now()
	if b.AllowN(now, 1) {
		return true, 0
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, time.Duration(math.Max(1, math.Ceil(wait.Seconds()))) * time.Second
}

func (s *limiterState) bucket(api, client, tier string) *rate.Limiter {
	if tier == "" {
		tier = DefaultTier
	}
	r, known := s.limits.rateFor(api, tier)
	if client == "" || !known {
		sh := s.shard(api)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		b, ok := sh.anon[api]
		if !ok {
			b = newBucket(s.limits.Anonymous)
			sh.anon[api] = b
		}
		return b
	}
	key := api + "\x00" + tier
	sh := s.shard(key + "\x00" + client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cache, ok := sh.clients[key]
	if !ok {
		var err error
		cache, err = lru.New[string, *rate.Limiter](max(1, (s.limits.MaxClients+shards-1)/shards))
		if err != nil {
			panic(fmt.Sprintf("ratelimit: lru size %d: %v", s.limits.MaxClients, err)) // at least 1 above
		}
		sh.clients[key] = cache
	}
	b, ok := cache.Get(client)
	if !ok {
		b = newBucket(r)
		cache.Add(client, b)
	}
	return b
}

func newBucket(r Rate) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r.PerSecond), r.burst())
}

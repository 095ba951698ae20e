// Package ratelimit is fhirwall's per-API, per-client rate limit: the tiers and rates both modes enforce,
// the headers ext_authz hands to Envoy's local rate limit filter, and the standalone proxy's own limiter.
package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
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
// route removes them before the FHIR server sees the request. UserHeader is set only for clients whose tier
// has a per-user rate.
const (
	ClientHeader = "x-fhirwall-client"
	TierHeader   = "x-fhirwall-rate-tier"
	UserHeader   = "x-fhirwall-user"
)

// UserKey is what ext_authz puts in UserHeader for a token's subject: a digest, so Envoy's buckets, logs and
// traces never hold a member's identifier, and any subject makes a valid header value.
func UserKey(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(sum[:16])
}

// DefaultTier is the tier of a client the registry gives none.
const DefaultTier = "standard"

// Rate is a token bucket: PerSecond requests a second, up to Burst at once (0: PerSecond).
// The same type is read from fhirwall.yaml (mapstructure) and from the xDS golden inputs (yaml).
type Rate struct {
	PerSecond uint32 `mapstructure:"per_second" yaml:"per_second"` // tokens added per second (at least 1)
	Burst     uint32 `mapstructure:"burst" yaml:"burst"`           // bucket size: the most requests at once; 0: per_second
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
	// PerUser gives the tiers named here a bucket per user (token subject) of each client, on top of the
	// client's own: a user is served while both have a token, so one busy member of a patient app cannot use
	// up the app's rate for its other members, and the tier's rate stays the bound on the app as a whole.
	// Tiers not named here (backend clients) have the client's bucket only, and so does a tier on an API
	// whose override is no faster than the per-user rate.
	PerUser map[string]Rate
	// MaxClients bounds the client buckets kept per API and tier (least recently used go first). The buckets
	// are spread over 16 shards, each keeping its share (MaxClients/16 rounded up): the bucket that goes is
	// the least recently used of its shard, and a MaxClients that is not a multiple of 16 is rounded up.
	MaxClients int
	// MaxUsers bounds the user buckets kept per API and tier the same way (0: 100,000). Subjects run to
	// millions; an evicted user comes back with a full bucket, which favours that user alone: the client's
	// bucket still bounds the app.
	MaxUsers int
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

// userRate is the per-user rate of a client of tier on api; ok false when its users share the client's bucket:
// the tier has no per-user rate, or api overrides the tier's rate to one no faster than it (the client's
// bucket is then the strictest, and Envoy would take from it first; see internal/xds ratelimit.go).
func (l Limits) userRate(api, tier string) (Rate, bool) {
	app, known := l.rateFor(api, tier)
	if !known {
		return Rate{}, false
	}
	r, ok := l.PerUser[tier]
	return r, ok && r.PerSecond < app.PerSecond
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
	users   map[string]*lru.Cache[string, *rate.Limiter] // by API + tier, then client + user
	anon    map[string]*rate.Limiter                     // by API, in the shard of the API alone
	_       [64]byte                                     // keeps neighbouring shards' locks off one cache line
}

func newState(limits Limits) *limiterState {
	s := &limiterState{limits: limits, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].clients = map[string]*lru.Cache[string, *rate.Limiter]{}
		s.shards[i].users = map[string]*lru.Cache[string, *rate.Limiter]{}
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
	if limits.MaxUsers <= 0 {
		limits.MaxUsers = 100000
	}
	l.state.Store(newState(limits))
}

// HasUserRate reports whether a client of tier on api has a per-user rate besides its own (Limits.PerUser),
// as the limits stand now: the global limiter asks about a user's counter only then (Global.PerUser).
func (l *Limiter) HasUserRate(api, tier string) bool {
	if tier == "" {
		tier = DefaultTier
	}
	_, ok := l.state.Load().limits.userRate(api, tier)
	return ok
}

// Allow takes one token from the bucket of client (of tier) on api. When the bucket is empty it reports
// how long until a token is back, rounded up to whole seconds for Retry-After (at least 1).
func (l *Limiter) Allow(api, client, tier string) (bool, time.Duration) {
	return l.AllowUser(api, client, tier, "")
}

// AllowUser is Allow for a request of user (the token's subject; "" for none). When client's tier has a
// per-user rate, the request takes a token from the user's bucket and one from the client's, or from
// neither: a user refused by its own bucket does not use up the app's, and a user refused because the app
// is over its rate gets its token back.
func (l *Limiter) AllowUser(api, client, tier, user string) (bool, time.Duration) {
	s := l.state.Load()
	if !s.limits.Enabled() {
		return true, 0
	}
	now := l.now()
	app := s.bucket(api, client, tier)
	u := s.userBucket(api, client, tier, user)
	if u == nil {
		return take(app, now)
	}
	r := u.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return false, retryAfter(wait)
	}
	if ok, wait := take(app, now); !ok {
		r.CancelAt(now)
		return false, wait
	}
	return true, 0
}

func take(b *rate.Limiter, now time.Time) (bool, time.Duration) {
	if b.AllowN(now, 1) {
		return true, 0
	}
	r := b.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, retryAfter(wait)
}

func retryAfter(wait time.Duration) time.Duration {
	return time.Duration(math.Max(1, math.Ceil(wait.Seconds()))) * time.Second
}

// userBucket is user's bucket at client on api, or nil when there is none to take from (no user, no client,
// or a tier whose users share the client's bucket).
func (s *limiterState) userBucket(api, client, tier, user string) *rate.Limiter {
	if tier == "" {
		tier = DefaultTier
	}
	r, ok := s.limits.userRate(api, tier)
	if !ok || client == "" || user == "" {
		return nil
	}
	key := api + "\x00" + tier
	who := client + "\x00" + user
	sh := s.shard(key + "\x00" + who)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.kept(sh.users, key, who, r, s.limits.MaxUsers)
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
	return sh.kept(sh.clients, key, client, r, s.limits.MaxClients)
}

// kept is who's bucket in caches[key], made with rate r if it is not kept, each cache holding this shard's
// share of limit. The caller holds sh.mu.
func (sh *shard) kept(caches map[string]*lru.Cache[string, *rate.Limiter], key, who string, r Rate, limit int) *rate.Limiter {
	cache, ok := caches[key]
	if !ok {
		var err error
		cache, err = lru.New[string, *rate.Limiter](max(1, (limit+shards-1)/shards))
		if err != nil {
			panic(fmt.Sprintf("ratelimit: lru size %d: %v", limit, err)) // at least 1 above
		}
		caches[key] = cache
	}
	b, ok := cache.Get(who)
	if !ok {
		b = newBucket(r)
		cache.Add(who, b)
	}
	return b
}

func newBucket(r Rate) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r.PerSecond), r.burst())
}

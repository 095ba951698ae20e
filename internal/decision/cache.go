package decision

import (
	"bytes"
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fhirwall/fhirwall/internal/policy"
)

// VersionedPolicy is a Policy that says which compiled set is in force (policy.Engine).
type VersionedPolicy interface {
	Policy
	Version() policy.Version
}

// CacheOptions bound a CachedPolicy.
type CacheOptions struct {
	Entries  int // at most this many decisions; 0 or less: no cache (NewCachedPolicy returns the policy itself)
	MaxBytes int // and at most about this much memory for them (keys, results, bookkeeping)
}

// CachedPolicy answers a policy input it has already seen with the result the policy gave for it, without
// evaluating the Rego again. The key is the whole input, canonically encoded (canonical.go): identity and
// scopes, client state, API, the classified request and every fact. A hit compares the stored encoding with the
// request's byte for byte, so a hash collision is a miss, never another input's decision. Entries belong to one
// compiled policy set (policy.Version: revision and load number); the first request that sees another set in
// force drops them all. A set that calls a clock-, network- or random-dependent built-in is never cached, and
// neither is an error. Every hit returns a deep copy: callers own what they get (d.refuse appends to Reasons).
//
// The dry-run candidate (Core.DryRun) is another Policy, never wrapped: it is evaluated on every request.
type CachedPolicy struct {
	next  VersionedPolicy
	opts  CacheOptions
	hash  func([]byte) uint64
	gen   atomic.Pointer[generation]
	stats [cacheShards]shardStats
	pool  sync.Pool // *canonicalEncoder
}

var _ Policy = (*CachedPolicy)(nil)

const cacheShards = 16

// entryOverhead is what an entry costs beyond its key and its result's contents: the entry, its map slot, the
// Result's headers.
const entryOverhead = 320

// NewCachedPolicy wraps p in a cache bounded by opts; with opts.Entries 0 or less it returns p unchanged.
func NewCachedPolicy(p VersionedPolicy, opts CacheOptions) Policy {
	if opts.Entries <= 0 {
		return p
	}
	return newCachedPolicy(p, opts, nil)
}

// newCachedPolicy is NewCachedPolicy with the key hash given (tests inject a weak one); nil: maphash.
func newCachedPolicy(p VersionedPolicy, opts CacheOptions, hash func([]byte) uint64) *CachedPolicy {
	if hash == nil {
		seed := maphash.MakeSeed()
		hash = func(b []byte) uint64 { return maphash.Bytes(seed, b) }
	}
	c := &CachedPolicy{next: p, opts: opts, hash: hash}
	c.pool.New = func() any { return &canonicalEncoder{} }
	return c
}

// Revision implements Policy.
func (c *CachedPolicy) Revision() string { return c.next.Revision() }

// CacheStats counts a CachedPolicy's answers: from the cache, evaluated, evaluated without the cache (an impure
// policy set, an input without canonical encoding).
type CacheStats struct{ Hits, Misses, Bypasses uint64 }

// Stats sums the counters of every shard.
func (c *CachedPolicy) Stats() CacheStats {
	var s CacheStats
	for i := range c.stats {
		s.Hits += c.stats[i].hits.Load()
		s.Misses += c.stats[i].misses.Load()
		s.Bypasses += c.stats[i].bypasses.Load()
	}
	return s
}

// Decide implements Policy.
func (c *CachedPolicy) Decide(ctx context.Context, input any) (policy.Result, error) {
	v := c.next.Version()
	if !v.Pure {
		c.stats[0].bypasses.Add(1)
		return c.next.Decide(ctx, input)
	}
	enc := c.pool.Get().(*canonicalEncoder)
	defer c.release(enc)
	key, err := enc.encode(input)
	if err != nil {
		c.stats[0].bypasses.Add(1)
		return c.next.Decide(ctx, input)
	}
	h := c.hash(key)
	i := h % cacheShards
	g := c.generation(v)
	if g == nil { // v was replaced while this request began: decided as without a cache
		c.stats[i].bypasses.Add(1)
		return c.next.Decide(ctx, input)
	}
	if r, ok := g.shards[i].get(h, key); ok {
		c.stats[i].hits.Add(1)
		return r, nil
	}
	c.stats[i].misses.Add(1)
	r, err := c.next.Decide(ctx, input)
	if err != nil {
		return r, err
	}
	// Kept only when the set that decided is the one looked up in: Load numbers are never reused and a set
	// once replaced never comes back, so the same version before and after means no reload in between.
	if after := c.next.Version(); after == v && (r.Revision == "" || r.Revision == v.Revision) {
		g.shards[i].put(h, key, r, c.shardLimits()) // stores its own copy: r stays the caller's
	}
	return r, nil
}

// maxPooledKey: an encoder that grew past this (a batch's input, say) is left to the collector, not kept.
const maxPooledKey = 64 << 10

func (c *CachedPolicy) release(enc *canonicalEncoder) {
	if cap(enc.buf) <= maxPooledKey {
		c.pool.Put(enc)
	}
}

// generation is the cache of one compiled policy set.
type generation struct {
	version policy.Version
	shards  [cacheShards]shard
}

// generation returns the entries of the set v names, dropping every other set's at once; nil when v is older
// than the set cached (a request that read the version just before a reload), which must not drop the newer.
func (c *CachedPolicy) generation(v policy.Version) *generation {
	for {
		g := c.gen.Load()
		if g != nil && g.version == v {
			return g
		}
		if g != nil && g.version.Load > v.Load {
			return nil
		}
		fresh := &generation{version: v}
		if c.gen.CompareAndSwap(g, fresh) {
			return fresh
		}
	}
}

type limits struct{ entries, bytes int }

func (c *CachedPolicy) shardLimits() limits {
	return limits{entries: max(1, (c.opts.Entries+cacheShards-1)/cacheShards), bytes: c.opts.MaxBytes / cacheShards}
}

type shardStats struct {
	hits, misses, bypasses atomic.Uint64
	_                      [40]byte // one cache line per shard: cores counting in different shards do not contend
}

// shard is one of a generation's cacheShards parts: a map from key hash to entry and a least-recently-used list.
type shard struct {
	mu    sync.Mutex
	m     map[uint64]*cacheEntry
	lru   cacheEntry // sentinel: lru.next is the most recently used, lru.prev the least
	bytes int
}

type cacheEntry struct {
	hash       uint64
	key        []byte // the canonical input, compared whole on every hit
	result     policy.Result
	size       int
	prev, next *cacheEntry
}

func (s *shard) get(h uint64, key []byte) (policy.Result, bool) {
	s.mu.Lock()
	e, ok := s.m[h]
	if !ok || !bytes.Equal(e.key, key) {
		s.mu.Unlock()
		return policy.Result{}, false
	}
	s.unlink(e)
	s.pushFront(e)
	r := e.result
	s.mu.Unlock()
	// The stored result is never handed out or changed: a copy of it is.
	return cloneResult(r), true
}

// put stores a copy of r under key (copied too), evicting the least recently used entries past the limits.
// An entry whose hash is another key's replaces it: the map holds one entry per hash.
func (s *shard) put(h uint64, key []byte, r policy.Result, l limits) {
	e := &cacheEntry{hash: h, key: bytes.Clone(key), result: cloneResult(r)}
	e.size = len(e.key) + resultSize(r) + entryOverhead
	if e.size > l.bytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[uint64]*cacheEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
	}
	if old, ok := s.m[h]; ok {
		s.remove(old)
	}
	for len(s.m) > 0 && (len(s.m) >= l.entries || s.bytes+e.size > l.bytes) {
		s.remove(s.lru.prev)
	}
	s.m[h] = e
	s.bytes += e.size
	s.pushFront(e)
}

func (s *shard) remove(e *cacheEntry) {
	s.unlink(e)
	delete(s.m, e.hash)
	s.bytes -= e.size
}

func (s *shard) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) pushFront(e *cacheEntry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}

// cloneResult copies r so that the copy shares no memory with it (TestCloneResultSharesNothing walks every
// field by reflection, so a field added to policy.Result that this misses fails it). nil stays nil and empty
// stays empty: the sealed decision (carry.go) and the audit record encode them differently.
func cloneResult(r policy.Result) policy.Result {
	out := r
	out.Reasons = slices.Clone(r.Reasons)
	o := &out.Obligations
	if c := r.Obligations.Compartment; c != nil {
		cc := *c
		cc.Patients = slices.Clone(c.Patients)
		o.Compartment = &cc
	}
	o.Narrow = slices.Clone(r.Obligations.Narrow)
	o.PublicTypes = slices.Clone(r.Obligations.PublicTypes)
	if rt := r.Obligations.ResourceTypes; rt != nil {
		o.ResourceTypes = make(map[string]policy.Constraints, len(rt))
		for t, cs := range rt {
			var cc policy.Constraints
			if cs != nil {
				cc = make(policy.Constraints, len(cs))
				for p, vs := range cs {
					cc[p] = slices.Clone(vs)
				}
			}
			o.ResourceTypes[t] = cc
		}
	}
	return out
}

// resultSize is about how many bytes r's contents take, for the cache's byte budget.
func resultSize(r policy.Result) int {
	n := len(r.Details) + len(r.Revision)
	for _, s := range r.Reasons {
		n += 16 + len(s)
	}
	o := r.Obligations
	if c := o.Compartment; c != nil {
		n += 64 + len(c.Patient) + len(c.Provider) + len(c.Payer)
		for _, p := range c.Patients {
			n += 16 + len(p)
		}
	}
	for _, nw := range o.Narrow {
		n += 32 + len(nw.Param) + len(nw.Value)
	}
	n += len(o.DataScope) + len(o.RateClass) + len(o.Adapter)
	for _, t := range o.PublicTypes {
		n += 16 + len(t)
	}
	for t, cs := range o.ResourceTypes {
		n += 64 + len(t)
		for p, vs := range cs {
			n += 64 + len(p)
			for _, v := range vs {
				n += 16 + len(v)
			}
		}
	}
	return n
}

// len is the number of entries the current generation holds.
func (c *CachedPolicy) len() int {
	g := c.gen.Load()
	if g == nil {
		return 0
	}
	n := 0
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

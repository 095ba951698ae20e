package token

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// MaxCacheTTL bounds how long a verified token is trusted without checking it again: a revoked opaque
// token, or a JWT whose key the issuer withdrew, is refused at most this long after the fact.
const MaxCacheTTL = 5 * time.Minute

// identityCache holds the identities of verified tokens, keyed by the SHA-256 of the token so the cache
// never holds a usable credential. Hits take no lock; inserts do, and evict the oldest entry when full.
type identityCache struct {
	m sync.Map // [32]byte → *cacheEntry

	mu   sync.Mutex
	ring [][32]byte // insertion order; every key in m is in ring
	next int
	size int
}

type cacheEntry struct {
	id    Identity
	until time.Time
}

func newIdentityCache(size int) *identityCache {
	return &identityCache{size: size, ring: make([][32]byte, 0, max(0, min(size, 1024)))}
}

func cacheKey(raw string) [32]byte { return sha256.Sum256([]byte(raw)) }

func (c *identityCache) get(k [32]byte, now time.Time) (Identity, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		return Identity{}, false
	}
	e := v.(*cacheEntry)
	if !now.Before(e.until) {
		c.m.CompareAndDelete(k, v)
		return Identity{}, false
	}
	id := e.id
	id.Scopes = slices.Clone(id.Scopes) // callers may narrow their copy; the cached one stays whole
	return id, true
}

func (c *identityCache) put(k [32]byte, id Identity, until time.Time) {
	if c.size <= 0 {
		return
	}
	id.Scopes = slices.Clone(id.Scopes)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, loaded := c.m.Swap(k, &cacheEntry{id: id, until: until}); loaded {
		return
	}
	if len(c.ring) < c.size {
		c.ring = append(c.ring, k)
		return
	}
	// A key evicted here may have been stored again since (after expiring); dropping it early only costs a
	// verification, and keeps len(m) ≤ size.
	c.m.Delete(c.ring[c.next])
	c.ring[c.next] = k
	c.next = (c.next + 1) % c.size
}

func (c *identityCache) len() int {
	n := 0
	c.m.Range(func(any, any) bool { n++; return true })
	return n
}

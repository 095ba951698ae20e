package dcr

import (
	"context"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// maxAddresses bounds the addresses whose buckets are kept; the least recently seen go first (an address
// seen again after that starts with a full bucket).
const maxAddresses = 10000

// callLimit decides whether a client address may make one more call now; when not, it says how long until it
// may. An error means the limit could not be checked: the call is refused.
type callLimit interface {
	allow(ctx context.Context, remoteAddr string, now time.Time) (retryAfter time.Duration, ok bool, err error)
}

// Counter counts calls per key in one clock minute where every replica counts (postgres.Store.CountCall).
type Counter interface {
	// CountCall adds one call of key to the minute that starts at window and returns that minute's calls so
	// far, this one included.
	CountCall(ctx context.Context, key string, window time.Time) (int, error)
}

// sharedLimit is a fixed window per client address and clock minute, counted by a Counter every replica
// shares: perMinute calls a minute across the whole deployment.
type sharedLimit struct {
	counter   Counter
	perMinute int
}

func (l *sharedLimit) allow(ctx context.Context, remoteAddr string, now time.Time) (time.Duration, bool, error) {
	window := now.UTC().Truncate(time.Minute)
	n, err := l.counter.CountCall(ctx, "dcr:"+addressKey(remoteAddr).String(), window)
	if err != nil {
		return 0, false, err
	}
	if n > l.perMinute {
		return window.Add(time.Minute).Sub(now), false, nil
	}
	return 0, true, nil
}

// limiter is a token bucket per client address: perMinute calls a minute, as many at once.
type limiter struct {
	mu        sync.Mutex
	perMinute int
	buckets   *lru.Cache[netip.Prefix, *rate.Limiter]
}

func newLimiter(perMinute int) *limiter {
	c, _ := lru.New[netip.Prefix, *rate.Limiter](maxAddresses) // errors only for a size below 1
	return &limiter{perMinute: perMinute, buckets: c}
}

// allow takes a token of remoteAddr's bucket; when there is none it says how long until there is.
func (l *limiter) allow(_ context.Context, remoteAddr string, now time.Time) (retryAfter time.Duration, ok bool, err error) {
	key := addressKey(remoteAddr)
	l.mu.Lock()
	b, found := l.buckets.Get(key)
	if !found {
		b = rate.NewLimiter(rate.Every(time.Minute/time.Duration(l.perMinute)), l.perMinute)
		l.buckets.Add(key, b)
	}
	l.mu.Unlock()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return time.Minute, false, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false, nil
	}
	return 0, true, nil
}

// addressKey is the bucket of a client address: the address itself for IPv4, its /64 for IPv6 (one host
// commonly holds a whole /64, so a bucket per address would be no limit). The address is the connection's
// peer, never a forwarded-for header a client could write. An address that does not parse shares one bucket.
func addressKey(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// retryAfterSeconds is d as a Retry-After value: whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

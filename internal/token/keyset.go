package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// keySet is one issuer's JWKS, cached. It replaces go-oidc's RemoteKeySet, which refetches the JWKS for
// every token with an unknown kid: here an unknown kid triggers at most one fetch per minRefetch, callers
// arriving meanwhile share it, and a throttled unknown kid is refused without touching the network.
type keySet struct {
	url        string
	algs       []jose.SignatureAlgorithm
	client     *http.Client
	now        func() time.Time
	minRefetch time.Duration // between fetches while keys are held
	retryEmpty time.Duration // between fetches while no key was ever fetched
	maxAge     time.Duration // held keys older than this are refreshed in the background

	keys atomic.Pointer[keySnapshot] // nil until the first successful fetch; readers never lock

	mu        sync.Mutex
	inflight  *fetchCall
	lastFetch time.Time
}

var _ oidc.KeySet = (*keySet)(nil)

type keySnapshot struct {
	keys    []jose.JSONWebKey
	fetched time.Time
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// errThrottled means a fetch was wanted but one happened less than minRefetch ago.
var errThrottled = errors.New("JWKS refetch throttled")

const (
	fetchTimeout  = 5 * time.Second
	maxJWKSBytes  = 1 << 20
	keysMaxAge    = 15 * time.Minute
	retryNoKeysIn = 5 * time.Second
)

// keysetErr carries the keyset's own error past go-oidc, which flattens it with %v: the caller must tell an
// unreachable JWKS (503) from a bad signature (401).
type keysetErrKey struct{}

type keysetErrSlot struct{ err error }

func (ks *keySet) fail(ctx context.Context, err error) ([]byte, error) {
	if slot, ok := ctx.Value(keysetErrKey{}).(*keysetErrSlot); ok {
		slot.err = err
	}
	return nil, err
}

// VerifySignature implements oidc.KeySet.
func (ks *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, ks.algs)
	if err != nil {
		return ks.fail(ctx, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	if len(jws.Signatures) != 1 {
		return ks.fail(ctx, fmt.Errorf("%w: one signature expected", ErrInvalid))
	}
	h := jws.Signatures[0].Protected
	snap := ks.keys.Load()
	if snap != nil && ks.now().Sub(snap.fetched) > ks.maxAge {
		// Keys the issuer removed (rotated out, compromised) must stop verifying; the refresh is shared and
		// throttled, and this request goes on with what is held.
		go func() { _ = ks.refresh(context.Background()) }()
	}
	candidates := snap.match(h.KeyID, h.Algorithm)
	if len(candidates) == 0 {
		err := ks.refresh(ctx)
		switch {
		case ks.keys.Load() == nil:
			return ks.fail(ctx, fmt.Errorf("%w: no keys for %s: %v", ErrUnavailable, ks.url, err))
		case errors.Is(err, errThrottled):
			return ks.fail(ctx, fmt.Errorf("%w: unknown key id %q", ErrInvalid, h.KeyID))
		}
		candidates = ks.keys.Load().match(h.KeyID, h.Algorithm)
		if len(candidates) == 0 {
			return ks.fail(ctx, fmt.Errorf("%w: unknown key id %q", ErrInvalid, h.KeyID))
		}
	}
	for _, k := range candidates {
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	return ks.fail(ctx, fmt.Errorf("%w: signature does not verify", ErrInvalid))
}

// match returns the held keys that may have signed a token with this kid and alg. An empty kid matches
// every key, as RFC 7515 §4.1.4 leaves kid optional.
func (s *keySnapshot) match(kid, alg string) []jose.JSONWebKey {
	if s == nil {
		return nil
	}
	var out []jose.JSONWebKey
	for _, k := range s.keys {
		if (kid == "" || k.KeyID == kid) && (k.Algorithm == "" || k.Algorithm == alg) {
			out = append(out, k)
		}
	}
	return out
}

// refresh fetches the JWKS unless a fetch is running (then it waits for that one) or one ran less than the
// throttle interval ago (then it returns errThrottled at once). A failed fetch keeps the held keys.
func (ks *keySet) refresh(ctx context.Context) error {
	ks.mu.Lock()
	if c := ks.inflight; c != nil {
		ks.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
	}
	interval := ks.minRefetch
	if ks.keys.Load() == nil {
		interval = min(interval, ks.retryEmpty)
	}
	now := ks.now()
	if !ks.lastFetch.IsZero() && now.Sub(ks.lastFetch) < interval {
		ks.mu.Unlock()
		return errThrottled
	}
	c := &fetchCall{done: make(chan struct{})}
	ks.inflight, ks.lastFetch = c, now
	ks.mu.Unlock()

	// Shared by every waiter: one caller hanging up must not cancel it for the others.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	keys, err := ks.fetch(fctx)
	cancel()

	ks.mu.Lock()
	if err == nil {
		ks.keys.Store(&keySnapshot{keys: keys, fetched: ks.now()})
	}
	c.err = err
	ks.inflight = nil
	ks.mu.Unlock()
	close(c.done)
	return err
}

func (ks *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS %s: status %d", ks.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS %s: larger than %d bytes", ks.url, maxJWKSBytes)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s: %v", ks.url, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		// One key go-jose cannot read (a new key type, say) must not hide the others.
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		// Only public signature keys: a symmetric ("oct") key would let anyone holding it mint tokens.
		if !k.Valid() || !k.IsPublic() || k.Use == "enc" {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s: no usable signature keys", ks.url)
	}
	return keys, nil
}

// Package consent tells fhirwall which members opted out of the CMS-0057-F Provider Access API, read from
// the FHIR server, cached, and behind a circuit breaker.
//
// A member has opted out when either mark is present (test/seed/README.md writes both, always together):
//
//   - an active Consent (Consent?status=active) with policy[].uri = OptOutPolicy and provision.type = deny,
//     whose provision.period has not ended; its patient is the member;
//   - a Group.member entry (any Group, in practice the attribution Groups) with the extension OptOutExtension
//     valueBoolean true; its entity is the member. The extension is never written false: absent means
//     not opted out.
//
// The union is taken: a mark found in either place keeps the member away from providers. Consent is a
// payer's system of record; a real payer's consent service (or its own FHIR Consent store) plugs in here
// behind decision.Consent, and this package is the reference for what it must answer.
package consent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/internal/decision"
)

var _ decision.Consent = (*Client)(nil)

const (
	// OptOutPolicy is the Consent.policy.uri of a Provider Access opt-out.
	OptOutPolicy = "https://fhirwall.example/policy/provider-access-opt-out"
	// OptOutExtension marks an opted-out member on a Group.member entry.
	OptOutExtension = "https://fhirwall.example/StructureDefinition/provider-access-opt-out"
)

// Options tune a Client; the zero value gives the defaults.
type Options struct {
	TTL      time.Duration    // how long the opted-out set is served from memory; default 30 s
	MaxPages int              // bound on the Bundle pages one search follows; default 100
	Timeout  time.Duration    // bound on one fetch, whoever waits for it; default 15 s
	Now      func() time.Time // clock; default time.Now
}

// Client reads the opted-out set from the FHIR server.
type Client struct {
	searcher *fhirserver.Searcher
	ttl      time.Duration
	timeout  time.Duration
	now      func() time.Time
	flight   singleflight.Group

	mu      sync.Mutex
	set     map[string]bool
	expires time.Time
}

// New returns a client for the FHIR base URL (e.g. http://127.0.0.1:8090/fhir).
func New(base string, hc *http.Client, o Options) *Client {
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{
		ttl: o.TTL, timeout: o.Timeout, now: o.Now,
		searcher: fhirserver.NewSearcher("consent", base, hc, o.MaxPages),
	}
}

// Breaker returns the circuit breaker in front of the FHIR server's searches.
func (c *Client) Breaker() fhirserver.Breaker { return c.searcher.Breaker() }

// OptedOut returns the bare Patient ids of the members who opted out, from memory while younger than the TTL.
// Concurrent callers missing the cache share one fetch. The map returned is shared and read-only: a refresh
// replaces it whole, so a request reads it without a copy whatever the number of opt-outs. A fetch error
// is returned, never hidden behind a stale set: a member may just have opted out, and Provider Access fails
// closed.
func (c *Client) OptedOut(ctx context.Context) (map[string]bool, error) {
	if set, refresh, ok := c.cached(); ok {
		if refresh {
			c.load(ctx) // refresh ahead, in the background, while the set in hand is within its TTL
		}
		return set, nil
	}
	ch := c.load(ctx)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, fmt.Errorf("consent: %w", r.Err)
		}
		return r.Val.(map[string]bool), nil
	}
}

// load fetches the opt-outs once for every concurrent caller, detached from them (a caller hanging up must
// not fail the others sharing the fetch), and caches them.
func (c *Client) load(ctx context.Context) <-chan singleflight.Result {
	return c.flight.DoChan("opted-out", func() (any, error) {
		fctx, cancel := fhirserver.WithBudget(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		set, err := c.fetch(fctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.set, c.expires = set, c.now().Add(c.ttl)
		c.mu.Unlock()
		return set, nil
	})
}

// cached returns the set while it is within its TTL, and whether it is old enough (past 3/4 of the TTL) to be
// refreshed ahead.
func (c *Client) cached() (set map[string]bool, refresh, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.set == nil || !now.Before(c.expires) {
		return nil, false, false
	}
	return c.set, !now.Before(c.expires.Add(-c.ttl / 4)), true
}

func (c *Client) fetch(ctx context.Context) (map[string]bool, error) {
	now := c.now()
	set := map[string]bool{}
	// The policy uri is matched here rather than with a search parameter: Consent has no standard search
	// parameter on policy.uri in R4 (policy-uri is R5), and a server ignoring an unknown one would widen.
	err := c.searcher.Search(ctx, "Consent", url.Values{"status": {"active"}, "_count": {"1000"}}, func(raw json.RawMessage) error {
		var r consentResource
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("Consent: %w", err)
		}
		id, ok, err := r.optOut(now)
		if ok {
			set[id] = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	err = c.searcher.Search(ctx, "Group", url.Values{"_count": {"100"}}, func(raw json.RawMessage) error {
		var g groupResource
		if err := json.Unmarshal(raw, &g); err != nil {
			return fmt.Errorf("Group: %w", err)
		}
		if g.ResourceType != "Group" {
			return nil
		}
		for _, m := range g.Member {
			id, ok, err := m.optedOutMember()
			if err != nil {
				return fmt.Errorf("Group/%s: %w", g.ID, err)
			}
			if ok {
				set[id] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return set, nil
}

// ErrTooManyPages: the search behind the answer had more pages than are followed; nothing partial is used.
var ErrTooManyPages = fhirserver.ErrTooManyPages

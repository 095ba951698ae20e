// Package attribution tells fhirwall which patients are attributed to a provider, read from the Da Vinci
// ATR / PDex provider attribution Groups on the FHIR server, cached, and behind a circuit breaker.
//
// The shape it reads (test/seed/README.md): a Group with managingEntity = the provider Organization (or
// Practitioner), member[].entity = Patient/<id>, member[].inactive and member[].period saying whether the
// membership is current, and optionally the ATR extension ext-attributedProvider on each member naming the
// practitioner the member is attributed to.
//
//   - Organization/<id>: every current member of the Groups managed by that organisation
//     (Group?managing-entity=Organization/<id>).
//   - Practitioner/<id>: the Groups the practitioner manages, if any; otherwise the Groups of the
//     organisations it holds an active PractitionerRole at, keeping only the members whose
//     ext-attributedProvider names the practitioner. A Group that attributes no member to any practitioner
//     is an organisation-level list, and then the practitioner sees the whole list of its organisation.
//
// Providers registered by NPI alone (an identifier, no FHIR id) are not resolved yet: that path would search
// Group?identifier=http://hl7.org/fhir/sid/us-npi|<npi> or resolve the Organization by identifier first.
package attribution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/fhirwall/fhirwall/adapters/fhirserver"
	"github.com/fhirwall/fhirwall/internal/decision"
)

var _ decision.Attribution = (*Client)(nil)

// ATRAttributedProvider is the Da Vinci ATR member extension naming the practitioner a member is attributed to.
const ATRAttributedProvider = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"

// Options tune a Client; the zero value gives the defaults.
type Options struct {
	TTL      time.Duration    // how long a provider's list is served from memory; default 60 s
	MaxPages int              // bound on the Bundle pages one search follows; default 100
	Timeout  time.Duration    // bound on one fetch, whoever waits for it; default 15 s
	Now      func() time.Time // clock; default time.Now
}

// Client reads attribution lists from the FHIR server.
type Client struct {
	searcher *fhirserver.Searcher
	ttl      time.Duration
	timeout  time.Duration
	now      func() time.Time
	flight   singleflight.Group

	mu    sync.Mutex
	cache map[string]entry
}

// entry is one provider's cached answer; err is nil or ErrNoAttribution (outages are never cached).
type entry struct {
	list    decision.AttributionList
	err     error
	expires time.Time
	refresh time.Time // from then on a call refreshes the entry in the background
}

// New returns a client for the FHIR base URL (e.g. http://127.0.0.1:8090/fhir).
func New(base string, hc *http.Client, o Options) *Client {
	if o.TTL <= 0 {
		o.TTL = 60 * time.Second
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
		ttl: o.TTL, timeout: o.Timeout,
		now: o.Now, cache: map[string]entry{},
		searcher: fhirserver.NewSearcher("attribution", base, hc, o.MaxPages),
	}
}

// Breaker returns the circuit breaker in front of the FHIR server's searches.
func (c *Client) Breaker() fhirserver.Breaker { return c.searcher.Breaker() }

// Attributed returns the provider's current attribution list, from memory while it is younger than the TTL.
// Concurrent callers missing the cache for the same provider share one fetch. A fetch error is returned,
// never hidden behind a stale list: attribution can be withdrawn, and Provider Access fails closed.
func (c *Client) Attributed(ctx context.Context, provider string) (decision.AttributionList, error) {
	kind, id, ok := strings.Cut(provider, "/")
	if !ok || id == "" || strings.ContainsAny(id, "/?#,|") || (kind != "Organization" && kind != "Practitioner") {
		return decision.AttributionList{}, fmt.Errorf("attribution: provider %q is not Organization/<id> or Practitioner/<id>", provider)
	}
	if e, ok := c.cached(provider); ok {
		if !c.now().Before(e.refresh) {
			// Refresh ahead, in the background: a large group (100,000 members) takes seconds to read, and no
			// request should wait for it while the list in hand is still within its TTL.
			c.load(ctx, kind, provider)
		}
		return e.list, e.err
	}
	ch := c.load(ctx, kind, provider)
	select {
	case <-ctx.Done():
		return decision.AttributionList{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return decision.AttributionList{}, fmt.Errorf("attribution: %w", r.Err)
		}
		e := r.Val.(entry)
		return e.list, e.err
	}
}

// load fetches the provider's list once for every concurrent caller, detached from them (a caller hanging
// up must not fail the others sharing the fetch), and caches it.
func (c *Client) load(ctx context.Context, kind, provider string) <-chan singleflight.Result {
	return c.flight.DoChan(provider, func() (any, error) {
		fctx, cancel := fhirserver.WithBudget(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		list, err := c.fetch(fctx, kind, provider)
		if err != nil && !errors.Is(err, decision.ErrNoAttribution) {
			return nil, err
		}
		now := c.now()
		e := entry{list: list, err: err, expires: now.Add(c.ttl), refresh: now.Add(c.ttl * 3 / 4)}
		c.store(provider, e)
		return e, nil
	})
}

func (c *Client) cached(provider string) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[provider]
	if !ok || !c.now().Before(e.expires) {
		return entry{}, false
	}
	return e, true
}

func (c *Client) store(provider string, e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= 10000 { // providers are few; this only keeps a long-running process from growing
		now := c.now()
		for k, v := range c.cache {
			if !now.Before(v.expires) {
				delete(c.cache, k)
			}
		}
	}
	c.cache[provider] = e
}

func (c *Client) fetch(ctx context.Context, kind, provider string) (decision.AttributionList, error) {
	groups, err := c.groupsManagedBy(ctx, provider)
	if err != nil {
		return decision.AttributionList{}, err
	}
	if kind == "Practitioner" && len(groups) == 0 {
		return c.practitionerViaRoles(ctx, provider)
	}
	return listOf(groups, "", c.now())
}

// practitionerViaRoles finds the organisations the practitioner works for and keeps, from their Groups, the
// members attributed to the practitioner (or every member of an organisation-level Group).
func (c *Client) practitionerViaRoles(ctx context.Context, practitioner string) (decision.AttributionList, error) {
	var orgs []string
	q := url.Values{"practitioner": {practitioner}, "active": {"true"}, "_count": {"100"}}
	err := c.searcher.Search(ctx, "PractitionerRole", q, func(raw json.RawMessage) error {
		var r struct {
			ResourceType string    `json:"resourceType"`
			Organization reference `json:"organization"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("PractitionerRole: %w", err)
		}
		if r.ResourceType == "PractitionerRole" && strings.HasPrefix(r.Organization.Reference, "Organization/") &&
			!slices.Contains(orgs, r.Organization.Reference) {
			orgs = append(orgs, r.Organization.Reference)
		}
		return nil
	})
	if err != nil {
		return decision.AttributionList{}, err
	}
	var groups []group
	for _, org := range orgs {
		gs, err := c.groupsManagedBy(ctx, org)
		if err != nil {
			return decision.AttributionList{}, err
		}
		groups = append(groups, gs...)
	}
	return listOf(groups, practitioner, c.now())
}

func (c *Client) groupsManagedBy(ctx context.Context, ref string) ([]group, error) {
	var groups []group
	q := url.Values{"managing-entity": {ref}, "_count": {"100"}}
	err := c.searcher.Search(ctx, "Group", q, func(raw json.RawMessage) error {
		var g group
		if err := json.Unmarshal(raw, &g); err != nil {
			return fmt.Errorf("Group: %w", err)
		}
		// The server's search decided the match; checking it again guards against a server that ignores an
		// unknown parameter and answers with every Group.
		if g.ResourceType == "Group" && g.ManagingEntity.Reference == ref && (g.Active == nil || *g.Active) {
			groups = append(groups, g)
		}
		return nil
	})
	return groups, err
}

// listOf collects the current members of groups. With practitioner set, a Group that attributes members to
// practitioners contributes only the members attributed to this one. Several Groups are merged and the
// list carries the smallest Group id (the one offered for bulk export).
func listOf(groups []group, practitioner string, now time.Time) (decision.AttributionList, error) {
	if len(groups) == 0 {
		return decision.AttributionList{}, decision.ErrNoAttribution
	}
	slices.SortFunc(groups, func(a, b group) int { return strings.Compare(a.ID, b.ID) })
	seen := map[string]bool{}
	patients := []string{}
	for _, g := range groups {
		byPractitioner := practitioner != "" && g.namesPractitioners()
		for _, m := range g.Member {
			id, ok := patientID(m.Entity.Reference)
			if !ok || seen[id] || !m.current(now) {
				continue
			}
			if byPractitioner && !m.attributedTo(practitioner) {
				continue
			}
			seen[id] = true
			patients = append(patients, id)
		}
	}
	slices.Sort(patients)
	return decision.NewAttributionList(groups[0].ID, patients), nil
}

// ErrTooManyPages: the search behind the answer had more pages than are followed; nothing partial is used.
var ErrTooManyPages = fhirserver.ErrTooManyPages

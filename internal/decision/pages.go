package decision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirwall/fhirwall/internal/token"
)

// PageTTL is how long a paging link stays bound to the client that made the search. HAPI keeps search
// results for about an hour; a binding that outlives them only costs memory.
const PageTTL = time.Hour

// ErrPageBound means a paging id is already bound to another owner. HAPI can hand the same cached search to
// two callers that sent the same query (reuseCachedSearchResultsForMillis); the first caller keeps it.
var ErrPageBound = errors.New("paging id bound to another owner")

// PageStore binds HAPI paging ids (`_getpages=`) to the owner of the search that produced them, so that a
// paging link replayed by another client can be refused.
type PageStore interface {
	Bind(ctx context.Context, pageID, owner string, ttl time.Duration) error
	Owner(ctx context.Context, pageID string) (owner string, ok bool, err error)
}

// PageOwner is the owner a paging id is bound to: the client, whom it acts for (the patient; the provider
// organisation or practitioner) and the scopes of the search's token. A page is data of its own types, so a
// token with other scopes (Patient.rs only, following an Observation search's next link) is another owner,
// and gets the 404 of a page that does not exist; so is another practitioner using the same app.
func PageOwner(d *Decision) string { return pageOwner(d.Identity) }

func pageOwner(id *token.Identity) string {
	if id == nil {
		return "|"
	}
	scopes := slices.Clone(id.Scopes)
	slices.Sort(scopes)
	sum := sha256.Sum256([]byte(strings.Join(scopes, " ")))
	return strings.Join([]string{id.ClientID, id.Patient, id.Org, id.FHIRUser, hex.EncodeToString(sum[:12])}, "|")
}

// PageOwner returns the owner of a paging id; ok is false for an id never bound (or expired), which the
// request side answers like any resource that does not exist. Without a store, nothing is bound.
func (c *Core) PageOwner(ctx context.Context, pageID string) (owner string, ok bool, err error) {
	if c.Pages == nil {
		return "", false, nil
	}
	return c.Pages.Owner(ctx, pageID)
}

// pageIDs returns the _getpages ids in a list of link URLs.
func pageIDs(links []string) []string {
	var ids []string
	for _, l := range links {
		u, err := url.Parse(l)
		if err != nil {
			continue
		}
		for _, id := range u.Query()["_getpages"] {
			if id != "" {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// InMemoryPages is a PageStore in one process's memory, bounded in size: past Max bindings the oldest are
// evicted first (their links then answer 404, as after expiry). Several proxy replicas each see only their
// own searches, so a replicated deployment needs a shared store (PostgreSQL, as for bulk export jobs).
type InMemoryPages struct {
	Max int              // bindings kept; 0 means 100,000
	Now func() time.Time // nil means time.Now

	mu    sync.Mutex
	owner map[string]pageBinding
	order []pageRef // bindings in the order they were made, for eviction; may hold stale ones
	seq   uint64
}

type pageBinding struct {
	owner   string
	expires time.Time
	seq     uint64
}

type pageRef struct {
	id  string
	seq uint64
}

var _ PageStore = (*InMemoryPages)(nil)

func (p *InMemoryPages) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Bind binds pageID to owner for ttl. Binding again to the same owner extends it; to another owner while
// the first binding lives is ErrPageBound.
func (p *InMemoryPages) Bind(_ context.Context, pageID, owner string, ttl time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.owner == nil {
		p.owner = map[string]pageBinding{}
	}
	now := p.now()
	if b, ok := p.owner[pageID]; ok && now.Before(b.expires) {
		if b.owner != owner {
			return ErrPageBound
		}
		b.expires = now.Add(ttl)
		p.owner[pageID] = b
		return nil
	}
	max := p.Max
	if max <= 0 {
		max = 100_000
	}
	for len(p.owner) >= max && len(p.order) > 0 {
		old := p.order[0]
		p.order = p.order[1:]
		if b, ok := p.owner[old.id]; ok && b.seq == old.seq {
			delete(p.owner, old.id)
		}
	}
	if len(p.order) > 2*max { // drop the stale references left by expiries
		live := make([]pageRef, 0, len(p.owner))
		for _, r := range p.order {
			if b, ok := p.owner[r.id]; ok && b.seq == r.seq {
				live = append(live, r)
			}
		}
		p.order = live
	}
	p.seq++
	p.owner[pageID] = pageBinding{owner: owner, expires: now.Add(ttl), seq: p.seq}
	p.order = append(p.order, pageRef{pageID, p.seq})
	return nil
}

// Owner returns the live binding of pageID.
func (p *InMemoryPages) Owner(_ context.Context, pageID string) (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.owner[pageID]
	if !ok || !p.now().Before(b.expires) {
		delete(p.owner, pageID)
		return "", false, nil
	}
	return b.owner, true, nil
}

package decision

import (
	"sync"
	"time"
)

// Pending holds allowed decisions whose response has not been seen yet. In Envoy mode the request decision
// (ext_authz) and the response (ext_proc) arrive on different streams; the decision id joins them.
// Entries not claimed within ttl are handed to onExpire so their audit record is still written.
type Pending struct {
	mu      sync.Mutex
	entries map[string]pendingEntry
	ttl     time.Duration
	now     func() time.Time
}

type pendingEntry struct {
	d     *Decision
	added time.Time
}

// NewPending returns an empty store.
func NewPending(ttl time.Duration, now func() time.Time) *Pending {
	return &Pending{entries: map[string]pendingEntry{}, ttl: ttl, now: now}
}

// Put stores d under its id.
func (p *Pending) Put(d *Decision) {
	p.mu.Lock()
	p.entries[d.ID] = pendingEntry{d, p.now()}
	p.mu.Unlock()
}

// Take removes and returns the decision with this id.
func (p *Pending) Take(id string) (*Decision, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[id]
	if ok {
		delete(p.entries, id)
	}
	return e.d, ok
}

// Expired removes and returns the decisions older than the ttl.
func (p *Pending) Expired() []*Decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Decision
	cut := p.now().Add(-p.ttl)
	for id, e := range p.entries {
		if e.added.Before(cut) {
			out = append(out, e.d)
			delete(p.entries, id)
		}
	}
	return out
}

// Len is the number of decisions waiting for their response.
func (p *Pending) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

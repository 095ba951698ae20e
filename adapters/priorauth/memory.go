package priorauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryStore is a Store in this process's memory: the embedded default for a one-process demo without
// PostgreSQL, and the unit tests' store. It loses the whole queue on restart and is not shared between
// replicas (ARCHITECTURE invariant 4): a deployment with more than one fhirwall-proxy, or that must keep
// pended requests and their CMS deadlines across a restart, uses Postgres. Safe for concurrent use.
type MemoryStore struct {
	mu   sync.Mutex
	rows map[string]*memoryRow
	seq  int64
}

type memoryRow struct {
	seq int64 // insertion order: the tie-break of equal times, as the Postgres store's identity column
	r   Request
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{rows: map[string]*memoryRow{}} }

// Insert implements Store.
func (m *MemoryStore) Insert(ctx context.Context, r Request) error {
	if err := storeCheckInsert(r); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rows[r.ID]; ok {
		return fmt.Errorf("priorauth: insert %s: %w", r.ID, errDuplicateID)
	}
	m.seq++
	m.rows[r.ID] = &memoryRow{seq: m.seq, r: storeNormalised(r)}
	return nil
}

// Get implements Store.
func (m *MemoryStore) Get(ctx context.Context, id string) (Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	row, ok := m.rows[id]
	if !ok {
		return Request{}, ErrNotFound
	}
	return storeClone(row.r), nil
}

// FindByClaimIdentifier implements Store.
func (m *MemoryStore) FindByClaimIdentifier(ctx context.Context, provider, claimIdentifier string) (Request, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var latest *memoryRow
	for _, row := range m.rows {
		if row.r.Provider != provider || row.r.ClaimIdentifier != claimIdentifier {
			continue
		}
		if latest == nil || row.after(latest) {
			latest = row
		}
	}
	if latest == nil {
		return Request{}, ErrNotFound
	}
	return storeClone(latest.r), nil
}

func (a *memoryRow) after(b *memoryRow) bool {
	if !a.r.Received.Equal(b.r.Received) {
		return a.r.Received.After(b.r.Received)
	}
	return a.seq > b.seq
}

// Decide implements Store.
func (m *MemoryStore) Decide(ctx context.Context, next Request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	row, ok := m.rows[next.ID]
	if !ok {
		return ErrNotFound
	}
	if row.r.Status != StatusPended || row.r.Version != next.Version-1 {
		return ErrAlreadyDecided
	}
	row.r = storeWithDecision(row.r, storeNormalised(next))
	return nil
}

// Pended implements Store.
func (m *MemoryStore) Pended(ctx context.Context) ([]Request, error) {
	return m.list(func(r Request) bool { return r.Status == StatusPended && !r.Sandbox }, func(a, b *memoryRow) int {
		if c := a.r.Deadline.Compare(b.r.Deadline); c != 0 {
			return c
		}
		return int(a.seq - b.seq)
	}), nil
}

// Received implements Store.
func (m *MemoryStore) Received(ctx context.Context, from, to time.Time) ([]Request, error) {
	return m.list(func(r Request) bool { return !r.Received.Before(from) && r.Received.Before(to) && !r.Sandbox }, func(a, b *memoryRow) int {
		if c := a.r.Received.Compare(b.r.Received); c != 0 {
			return c
		}
		return int(a.seq - b.seq)
	}), nil
}

func (m *MemoryStore) list(keep func(Request) bool, order func(a, b *memoryRow) int) []Request {
	m.mu.Lock()
	var rows []*memoryRow
	for _, row := range m.rows {
		if keep(row.r) {
			rows = append(rows, row)
		}
	}
	slices.SortFunc(rows, order)
	out := make([]Request, len(rows))
	for i, row := range rows {
		out[i] = storeClone(row.r)
	}
	m.mu.Unlock()
	return out
}

// storeWithDecision is stored with the decision fields of next (Store.Decide's list) and nothing else of next.
func storeWithDecision(stored, next Request) Request {
	stored.Status = next.Status
	stored.Items = next.Items
	stored.DecidedAt = next.DecidedAt
	stored.DecidedBy = next.DecidedBy
	stored.Version = next.Version
	stored.ResponseBundle = next.ResponseBundle
	stored.Extended = next.Extended
	stored.AfterAppeal = next.AfterAppeal
	return stored
}

// storeNormalised is r as a store keeps it: its own copies of the slices, and times in UTC at PostgreSQL's
// microsecond precision without a monotonic reading, so that both stores give back the same values.
func storeNormalised(r Request) Request {
	r = storeClone(r)
	for _, t := range []*time.Time{&r.Received, &r.Deadline, &r.DecidedAt} {
		*t = storeTime(*t)
	}
	return r
}

func storeTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0).Truncate(time.Microsecond)
}

func storeClone(r Request) Request {
	r.OrgIdentifiers = slices.Clone(r.OrgIdentifiers)
	r.ResponseBundle = slices.Clone(r.ResponseBundle)
	if r.Items != nil {
		items := make([]ItemDecision, len(r.Items))
		for i, it := range r.Items {
			if it.Reason != nil {
				reason := *it.Reason
				it.Reason = &reason
			}
			items[i] = it
		}
		r.Items = items
	}
	return r
}

// errDuplicateID is Insert's refusal of an ID already stored.
var errDuplicateID = errors.New("prior-auth request id already stored")

func storeCheckInsert(r Request) error {
	switch {
	case r.ID == "":
		return errors.New("priorauth: insert: a request without an id")
	case r.Status == "":
		return fmt.Errorf("priorauth: insert %s: a request without a status", r.ID)
	case r.Received.IsZero() || r.Deadline.IsZero():
		return fmt.Errorf("priorauth: insert %s: a request without its received time and deadline", r.ID)
	}
	return nil
}

package subscriptions

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// MemoryStore is the one-process default Store: it loses every subscription and queued notification on
// restart and is not shared between replicas. Use Postgres for anything but a demo and the unit tests.
type MemoryStore struct {
	mu    sync.Mutex
	subs  map[string]*Subscription
	notes map[string][]*Notification // by subscription, in event order
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{subs: map[string]*Subscription{}, notes: map[string][]*Notification{}}
}

func cloneSub(s Subscription) Subscription {
	s.Filter, s.Headers, s.Resource = slices.Clone(s.Filter), slices.Clone(s.Headers), slices.Clone(s.Resource)
	return s
}

// Create implements Store.
func (m *MemoryStore) Create(_ context.Context, s Subscription) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.subs[s.ID]; dup {
		return fmt.Errorf("subscriptions: id %s exists", s.ID)
	}
	c := cloneSub(s)
	m.subs[s.ID] = &c
	return nil
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, id string) (Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return Subscription{}, ErrNotFound
	}
	return cloneSub(*s), nil
}

// Live implements Store.
func (m *MemoryStore) Live(_ context.Context, clientID string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.subs {
		if s.ClientID == clientID && (s.Status == StatusRequested || s.Status == StatusActive) {
			n++
		}
	}
	return n, nil
}

// SetOff implements Store.
func (m *MemoryStore) SetOff(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return ErrNotFound
	}
	s.Status = StatusOff
	return nil
}

// Enqueue implements Store.
func (m *MemoryStore) Enqueue(_ context.Context, requestID string, version int, identifiers, patients []string,
	build func(Subscription, int64) ([]byte, error)) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.subs))
	for id := range m.subs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// Build every body first, then commit: like the PostgreSQL transaction, a failure adds nothing.
	type add struct {
		s *Subscription
		n *Notification
	}
	var adds []add
	for _, id := range ids {
		s := m.subs[id]
		if (s.Status != StatusRequested && s.Status != StatusActive) || !overlaps(s.Filter, identifiers) {
			continue
		}
		if slices.ContainsFunc(m.notes[id], func(n *Notification) bool { return n.RequestID == requestID && n.Version == version }) {
			continue
		}
		num := s.Events + 1
		body, err := build(cloneSub(*s), num)
		if err != nil {
			return 0, err
		}
		adds = append(adds, add{s, &Notification{SubscriptionID: id, EventNumber: num, RequestID: requestID, Version: version,
			Patients: slices.Clone(patients), Body: body, State: NotePending, Created: time.Now()}})
	}
	for _, a := range adds {
		a.s.Events = a.n.EventNumber
		m.notes[a.s.ID] = append(m.notes[a.s.ID], a.n)
	}
	return len(adds), nil
}

func overlaps(a, b []string) bool {
	return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
}

// owes reports whether s owes a handshake or a heartbeat at now.
func owes(s *Subscription, now time.Time) bool {
	switch {
	case s.Status == StatusRequested:
		return true
	case s.Status == StatusActive && s.HeartbeatPeriod > 0:
		last := s.LastSent
		if last.IsZero() {
			last = s.Created
		}
		return !last.Add(s.HeartbeatPeriod).After(now)
	}
	return false
}

// ClaimSubscriptions implements Store.
func (m *MemoryStore) ClaimSubscriptions(_ context.Context, now time.Time, lease time.Duration, limit int) ([]Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Subscription
	for _, id := range sortedKeys(m.subs) {
		s := m.subs[id]
		if len(out) >= limit || s.Lease.After(now) || s.NextAttempt.After(now) || !owes(s, now) {
			continue
		}
		s.Lease = now.Add(lease).Truncate(time.Microsecond)
		s.Attempts++
		out = append(out, cloneSub(*s))
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// FinishSubscription implements Store.
func (m *MemoryStore) FinishSubscription(_ context.Context, id string, lease time.Time, r Result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return ErrNotFound
	}
	if !s.Lease.Equal(lease) {
		return ErrLeaseLost
	}
	s.Lease = time.Time{}
	switch {
	case r.Delivered:
		s.Attempts, s.NextAttempt, s.LastSent = 0, time.Time{}, r.At
		if s.Status == StatusRequested {
			s.Status = StatusActive
		}
	case r.GiveUp:
		if s.Status == StatusRequested || s.Status == StatusActive {
			s.Status = StatusError
		}
	default:
		s.NextAttempt = r.Next
	}
	return nil
}

// ClaimNotifications implements Store.
func (m *MemoryStore) ClaimNotifications(_ context.Context, now time.Time, lease time.Duration, limit int) ([]Claimed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Claimed
	for _, id := range sortedKeys(m.notes) {
		s := m.subs[id]
		if len(out) >= limit || s == nil || s.Status != StatusActive {
			continue
		}
		i := slices.IndexFunc(m.notes[id], func(n *Notification) bool { return n.State == NotePending })
		if i < 0 {
			continue
		}
		n := m.notes[id][i]
		if n.Lease.After(now) || n.NextAttempt.After(now) {
			continue
		}
		n.Lease = now.Add(lease).Truncate(time.Microsecond)
		n.Attempts++
		c := *n
		c.Body, c.Patients = slices.Clone(n.Body), slices.Clone(n.Patients)
		out = append(out, Claimed{Notification: c, Sub: cloneSub(*s)})
	}
	return out, nil
}

// FinishNotification implements Store.
func (m *MemoryStore) FinishNotification(_ context.Context, subID string, eventNumber int64, lease time.Time, r Result) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.notes[subID], func(n *Notification) bool { return n.EventNumber == eventNumber })
	if i < 0 {
		return ErrNotFound
	}
	n, s := m.notes[subID][i], m.subs[subID]
	if !n.Lease.Equal(lease) {
		return ErrLeaseLost
	}
	n.Lease = time.Time{}
	switch {
	case r.Delivered:
		n.State = NoteDelivered
		s.LastSent = r.At
	case r.GiveUp:
		n.State = NoteFailed
		if s.Status == StatusActive {
			s.Status = StatusError
		}
	default:
		n.NextAttempt = r.Next
	}
	return nil
}

// Notifications implements Store.
func (m *MemoryStore) Notifications(_ context.Context, subID string) ([]Notification, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Notification, 0, len(m.notes[subID]))
	for _, n := range m.notes[subID] {
		c := *n
		c.Body, c.Patients = slices.Clone(n.Body), slices.Clone(n.Patients)
		out = append(out, c)
	}
	return out, nil
}

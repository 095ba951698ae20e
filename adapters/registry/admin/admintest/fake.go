// Package admintest holds the fakes of the app registry's admin API tests: a store in memory that applies
// the lifecycle as the PostgreSQL store does, for testing the API's and the CLI's own logic only (the real
// store is tested against PostgreSQL in adapters/registry/postgres).
package admintest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// FakeStore is an apps.Store in memory.
type FakeStore struct {
	mu     sync.Mutex
	apps   map[string]apps.App
	events []apps.Event
	tokens map[string]string // registration access tokens by client id
}

var _ apps.Store = (*FakeStore)(nil)

// NewFakeStore returns an empty FakeStore.
func NewFakeStore() *FakeStore { return &FakeStore{apps: map[string]apps.App{}} }

func (f *FakeStore) record(actor, action, reason string, before *apps.App, after apps.App) {
	f.events = append(f.events, apps.Event{ID: after.ClientID + "-" + action, Time: time.Now(), Actor: actor, Action: action,
		ClientID: after.ClientID, Reason: reason, Before: before, After: &after})
}

// Put stores a as it is, bypassing the lifecycle and the registration policy (a test's own setup), with a
// register event.
func (f *FakeStore) Put(a apps.App) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.apps[a.ClientID] = a
	f.record("test", "register", "", nil, a)
}

func (f *FakeStore) Create(_ context.Context, a apps.App, actor, reason string) (apps.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.apps[a.ClientID]; ok {
		return apps.App{}, apps.ErrExists
	}
	// As the PostgreSQL store: the state as given (empty: pending), so a registration may start active.
	if a.State == "" {
		a.State = apps.StatePending
	}
	a.Version, a.CreatedAt, a.UpdatedAt = 1, time.Now(), time.Now()
	f.apps[a.ClientID] = a
	f.record(actor, "register", reason, nil, a)
	return a, nil
}

func (f *FakeStore) Get(_ context.Context, id string) (apps.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.apps[id]
	if !ok {
		return apps.App{}, apps.ErrNotFound
	}
	return a, nil
}

func (f *FakeStore) List(context.Context) ([]apps.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []apps.App{}
	for _, a := range f.apps {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b apps.App) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out, nil
}

func (f *FakeStore) Update(_ context.Context, a apps.App, actor, reason string) (apps.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.apps[a.ClientID]
	if !ok {
		return apps.App{}, apps.ErrNotFound
	}
	if cur.Version != a.Version {
		return apps.App{}, apps.ErrConflict
	}
	a.State, a.Version, a.UpdatedAt = cur.State, cur.Version+1, time.Now()
	f.apps[a.ClientID] = a
	f.record(actor, "update", reason, &cur, a)
	return a, nil
}

func (f *FakeStore) Transition(_ context.Context, id string, to apps.State, actor, reason string, narrowAPIs, narrowScopes []string) (apps.App, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.apps[id]
	if !ok {
		return apps.App{}, apps.ErrNotFound
	}
	if !apps.CanTransition(cur.State, to) {
		return apps.App{}, apps.ErrTransition
	}
	next := cur
	next.State, next.Version, next.UpdatedAt = to, cur.Version+1, time.Now()
	if narrowAPIs != nil {
		next.ApprovedAPIs = narrowAPIs
	}
	if narrowScopes != nil {
		next.ApprovedScopes = narrowScopes
	}
	f.apps[id] = next
	f.record(actor, apps.TransitionAction(cur.State, to), reason, &cur, next)
	return next, nil
}

func (f *FakeStore) History(_ context.Context, id string) ([]apps.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []apps.Event{}
	for _, e := range f.events {
		if e.ClientID == id {
			out = append(out, e)
		}
	}
	return out, nil
}

// Register is Create; the fake keeps the registration access token (plainly: it is a fake) to verify it.
func (f *FakeStore) Register(ctx context.Context, a apps.App, actor, reason string, issued apps.Issued) (apps.App, error) {
	out, err := f.Create(ctx, a, actor, reason)
	if err != nil {
		return out, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokens == nil {
		f.tokens = map[string]string{}
	}
	f.tokens[a.ClientID] = issued.RegistrationToken
	return out, nil
}

func (f *FakeStore) VerifyRegistrationToken(_ context.Context, clientID, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if want, ok := f.tokens[clientID]; !ok || want == "" || want != token {
		return apps.ErrUnauthorized
	}
	return nil
}

// Sync reports every app in sync: the fake has no identity provider.
func (f *FakeStore) Sync(_ context.Context, clientID string) (apps.SyncState, error) {
	if _, err := f.Get(context.Background(), clientID); err != nil {
		return apps.SyncState{}, err
	}
	return apps.SyncState{}, nil
}

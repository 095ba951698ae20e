package keycloak

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/admin/admintest"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
)

// keycloakFake is the part of Keycloak's admin REST API the sync uses, in memory: one realm's clients, client
// scopes and protocol mappers. While down it answers 503.
type keycloakFake struct {
	t       *testing.T
	mu      sync.Mutex
	clients map[string]*Client // by Keycloak id
	scopes  []scopeRep
	down    bool
	writes  int // PUT, POST and DELETE calls
	nextID  int
	srv     *httptest.Server
}

func newKeycloakFake(t *testing.T, scopeNames ...string) *keycloakFake {
	f := &keycloakFake{t: t, clients: map[string]*Client{}}
	for i, n := range append([]string{"basic", "fhirwall-audience", "profile", "email", "offline_access", "fhirUser", "launch/patient"}, scopeNames...) {
		f.scopes = append(f.scopes, scopeRep{ID: fmt.Sprintf("scope-%d", i), Name: n, Protocol: "openid-connect"})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *keycloakFake) setDown(v bool) { f.mu.Lock(); f.down = v; f.mu.Unlock() }

// add puts a client into the realm as if made by hand; it returns the Keycloak id.
func (f *keycloakFake) add(c Client) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	c.ID = fmt.Sprintf("kc-%d", f.nextID)
	f.clients[c.ID] = &c
	return c.ID
}

func (f *keycloakFake) get(clientID string) (Client, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		if c.ClientID == clientID {
			cp := *c
			cp.Attributes = clonedMap(c.Attributes)
			return cp, true
		}
	}
	return Client{}, false
}

func (f *keycloakFake) edit(clientID string, fn func(*Client)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		if c.ClientID == clientID {
			fn(c)
		}
	}
}

func (f *keycloakFake) writeCount() int { f.mu.Lock(); defer f.mu.Unlock(); return f.writes }

func clonedMap(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (f *keycloakFake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		http.Error(w, "down (fake)", http.StatusServiceUnavailable)
		return
	}
	reply := func(v any) { w.Header().Set("Content-Type", "application/json"); _ = json.NewEncoder(w).Encode(v) }
	if r.URL.Path == "/realms/test/protocol/openid-connect/token" {
		if r.FormValue("client_secret") != "sync-secret" {
			http.Error(w, `{"error":"unauthorized_client"}`, http.StatusUnauthorized)
			return
		}
		reply(map[string]any{"access_token": "fake-token", "expires_in": 300})
		return
	}
	if r.Header.Get("Authorization") != "Bearer fake-token" {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet {
		f.writes++
	}
	if r.URL.Path == "/admin/serverinfo" {
		reply(map[string]any{"features": []map[string]any{{"name": "CLIENT_SECRET_ROTATION", "enabled": false}}})
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/admin/realms/test")
	if !ok {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case path == "/client-scopes":
		reply(f.scopes)
	case path == "/clients" && r.Method == http.MethodGet:
		var out []Client
		for _, c := range f.clients {
			if q := r.URL.Query().Get("clientId"); q == "" || q == c.ClientID {
				out = append(out, *c)
			}
		}
		slices.SortFunc(out, func(a, b Client) int { return strings.Compare(a.ClientID, b.ClientID) })
		reply(out)
	case path == "/clients" && r.Method == http.MethodPost:
		var c Client
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.nextID++
		c.ID = fmt.Sprintf("kc-%d", f.nextID)
		for i := range c.ProtocolMappers {
			c.ProtocolMappers[i].ID = fmt.Sprintf("m-%d", f.nextID)
		}
		f.clients[c.ID] = &c
		w.WriteHeader(http.StatusCreated)
	case len(parts) >= 2 && parts[0] == "clients":
		c := f.clients[parts[1]]
		if c == nil {
			http.NotFound(w, r)
			return
		}
		f.client(w, r, c, parts[2:], reply)
	case len(parts) == 2 && parts[0] == "sessions" && r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (f *keycloakFake) client(w http.ResponseWriter, r *http.Request, c *Client, rest []string, reply func(any)) {
	scopeName := func(id string) string {
		for _, s := range f.scopes {
			if s.ID == id {
				return s.Name
			}
		}
		return ""
	}
	switch {
	case len(rest) == 0 && r.Method == http.MethodGet:
		reply(c)
	case len(rest) == 0 && r.Method == http.MethodPut:
		var in Client
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// As Keycloak: scopes and mappers of a representation are not applied on update; "" removes an attribute.
		in.ID, in.DefaultClientScopes, in.OptionalClientScopes, in.ProtocolMappers = c.ID, c.DefaultClientScopes, c.OptionalClientScopes, c.ProtocolMappers
		for k, v := range in.Attributes {
			if v == "" {
				delete(in.Attributes, k)
			}
		}
		*c = in
		w.WriteHeader(http.StatusNoContent)
	case len(rest) == 0 && r.Method == http.MethodDelete:
		delete(f.clients, c.ID)
		w.WriteHeader(http.StatusNoContent)
	case len(rest) == 2 && (rest[0] == "default-client-scopes" || rest[0] == "optional-client-scopes"):
		list := &c.DefaultClientScopes
		if rest[0] == "optional-client-scopes" {
			list = &c.OptionalClientScopes
		}
		n := scopeName(rest[1])
		*list = slices.DeleteFunc(*list, func(s string) bool { return s == n })
		if r.Method == http.MethodPut {
			*list = append(*list, n)
		}
		w.WriteHeader(http.StatusNoContent)
	case len(rest) >= 2 && rest[0] == "protocol-mappers":
		var m Mapper
		_ = json.NewDecoder(r.Body).Decode(&m)
		c.ProtocolMappers = slices.DeleteFunc(c.ProtocolMappers, func(x Mapper) bool { return len(rest) == 3 && x.ID == rest[2] })
		if r.Method != http.MethodDelete {
			if m.ID == "" {
				m.ID = "m-new"
			}
			c.ProtocolMappers = append(c.ProtocolMappers, m)
		}
		w.WriteHeader(http.StatusNoContent)
	case len(rest) == 1 && (rest[0] == "user-sessions" || rest[0] == "offline-sessions"):
		reply([]sessionRep{})
	case len(rest) == 1 && rest[0] == "client-secret" && r.Method == http.MethodPost:
		c.Secret = "regenerated-" + c.ClientID
		reply(credentialRep{Type: "secret", Value: c.Secret})
	case len(rest) == 2 && rest[0] == "client-secret" && rest[1] == "rotated":
		http.Error(w, `{"error":"Client does not have a rotated secret"}`, http.StatusNotFound)
	default:
		http.NotFound(w, r)
	}
}

// registryFake is the app registry in memory: the apps and their history (admintest.FakeStore), their
// outbox rows, pending secrets, and the audit records written, with the same dirty/generation rules as the
// PostgreSQL store.
type registryFake struct {
	*admintest.FakeStore
	auditRecorder
	mu      sync.Mutex
	sync    map[string]*syncRow
	secrets map[string]string
	now     func() time.Time
}

type syncRow struct {
	gen      int64
	dirty    time.Time
	attempts int
	lastErr  string
	next     time.Time
	synced   time.Time
}

func newRegistryFake(now func() time.Time) *registryFake {
	return &registryFake{FakeStore: admintest.NewFakeStore(), sync: map[string]*syncRow{}, secrets: map[string]string{}, now: now}
}

var _ Registry = (*registryFake)(nil)

// markDirty is the outbox row every write of the store leaves.
func (f *registryFake) markDirty(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.sync[id]
	if r == nil {
		r = &syncRow{}
		f.sync[id] = r
	}
	if r.dirty.IsZero() {
		r.dirty = f.now()
	}
	r.gen++
	r.next = f.now()
}

// put registers an app as the store would, by actor register or import (which the sync adopts from).
func (f *registryFake) put(a apps.App, actor string) {
	if _, err := f.Create(context.Background(), a, actor, ""); err != nil {
		panic(err)
	}
	f.markDirty(a.ClientID)
}

func (f *registryFake) transition(id string, to apps.State) {
	if _, err := f.Transition(context.Background(), id, to, "admin:test", "", nil, nil); err != nil {
		panic(err)
	}
	f.markDirty(id)
}

func (f *registryFake) Update(ctx context.Context, a apps.App, actor, reason string) (apps.App, error) {
	out, err := f.FakeStore.Update(ctx, a, actor, reason)
	if err == nil {
		f.markDirty(a.ClientID)
	}
	return out, err
}

func (f *registryFake) Sync(_ context.Context, id string) (apps.SyncState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.sync[id]
	if r == nil {
		return apps.SyncState{}, apps.ErrNotFound
	}
	return apps.SyncState{Pending: !r.dirty.IsZero(), Since: r.dirty, Attempts: r.attempts, LastError: r.lastErr, SyncedAt: r.synced}, nil
}

func (f *registryFake) DueSyncs(_ context.Context, limit int) ([]postgres.SyncJob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []postgres.SyncJob
	for id, r := range f.sync {
		if !r.dirty.IsZero() && !r.next.After(f.now()) {
			out = append(out, postgres.SyncJob{ClientID: id, Generation: r.gen, Attempts: r.attempts})
		}
	}
	slices.SortFunc(out, func(a, b postgres.SyncJob) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out[:min(limit, len(out))], nil
}

func (f *registryFake) PendingSyncs(context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.sync {
		if !r.dirty.IsZero() {
			n++
		}
	}
	return n, nil
}

func (f *registryFake) PendingSecret(_ context.Context, id string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.secrets[id], nil
}

func (f *registryFake) SyncDone(_ context.Context, j postgres.SyncJob) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.secrets, j.ClientID)
	r := f.sync[j.ClientID]
	r.synced = f.now()
	if r.gen == j.Generation {
		r.dirty, r.attempts, r.lastErr = time.Time{}, 0, ""
	}
	return nil
}

func (f *registryFake) SyncFailed(_ context.Context, id, msg string, retry time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.sync[id]
	r.attempts++
	r.lastErr, r.next = msg, retry
	return nil
}

func (f *registryFake) MarkSynced(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.sync[id]; r != nil && r.dirty.IsZero() {
		r.synced = f.now()
	}
	return nil
}

func (f *registryFake) Audit(ctx context.Context, ev apps.Event) error { return f.audit(ctx, ev) }

// auditRecorder records the audit records it is given: the registry's auditor in the e2e tests, the fake's
// Audit in the unit tests.
type auditRecorder struct {
	mu     sync.Mutex
	events []apps.Event
}

func (a *auditRecorder) audit(_ context.Context, ev apps.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

// recorded is every record of the sync's own (action idp-…).
func (a *auditRecorder) recorded() []apps.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []apps.Event
	for _, ev := range a.events {
		if strings.HasPrefix(ev.Action, "idp-") {
			out = append(out, ev)
		}
	}
	return out
}

// actions is "action client_id" of every record of the sync's own, sorted.
func (a *auditRecorder) actions() []string {
	var out []string
	for _, ev := range a.recorded() {
		out = append(out, ev.Action+" "+ev.ClientID)
	}
	slices.Sort(out)
	return out
}

// clockFake is a clock the test moves.
type clockFake struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clockFake) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clockFake) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClockFake() *clockFake               { return &clockFake{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)} }

//go:build e2e

package postgres

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/file"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/pgtest"
)

// cleanSchema is a schema of the test's own (test/pgtest): each test starts empty and the stack's own
// tables are never touched.
func cleanSchema(t *testing.T) string { return pgtest.Schema(t, "apps") }

// auditorFake records the events it is given, or fails while failing is set.
type auditorFake struct {
	mu      sync.Mutex
	events  []apps.Event
	failing bool
}

func (f *auditorFake) audit(_ context.Context, ev apps.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		return errors.New("audit spool full (fake)")
	}
	f.events = append(f.events, ev)
	return nil
}

func (f *auditorFake) setFailing(v bool) { f.mu.Lock(); f.failing = v; f.mu.Unlock() }

func (f *auditorFake) recorded() []apps.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// openReplica opens a Store on dsn (one replica) and runs its view's Watch until the test ends.
func openReplica(t *testing.T, dsn string, au *auditorFake) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, au.audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Registry().Watch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Close() })
	waitFor(t, 5*time.Second, "the LISTEN connection", func() bool { return s.Registry().listenPID.Load() != 0 })
	return s
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func testApp(id string) apps.App {
	return apps.App{
		ClientID: id, Name: "App " + id, DeveloperOrg: "Acme", Contacts: []apps.Contact{{Email: "dev@acme.example"}},
		RedirectURIs: []string{"https://acme.example/cb"}, LaunchTypes: []string{apps.LaunchStandalone},
		TokenAuthMethod: apps.AuthNone,
		RequestedAPIs:   []string{"patient-access"}, RequestedScopes: []string{"launch/patient", "patient/*.rs"},
		Environment: apps.Production, Tier: "standard",
	}
}

func lookupActive(r *Registry, id string) bool {
	c, err := r.Lookup(context.Background(), id)
	return err == nil && c.Active
}

func TestPostgresStoreKeepsTheContract(t *testing.T) {
	ctx := context.Background()
	au := &auditorFake{}
	s := openReplica(t, cleanSchema(t), au)

	a, err := s.Create(ctx, testApp("app-b"), "admin:alice", "new app")
	if err != nil {
		t.Fatal(err)
	}
	if a.State != apps.StatePending || a.Version != 1 || a.CreatedAt.IsZero() {
		t.Errorf("created %+v: want pending, version 1, a creation time", a)
	}
	if _, err := s.Create(ctx, testApp("app-b"), "admin:alice", ""); !errors.Is(err, apps.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	bad := testApp("bad id")
	if _, err := s.Create(ctx, bad, "admin:alice", ""); !errors.Is(err, apps.ErrInvalid) {
		t.Errorf("Create with a spaced client id: %v, want ErrInvalid", err)
	}
	gone := testApp("app-gone")
	gone.State = apps.StateDeactivated
	if _, err := s.Create(ctx, gone, "admin:alice", ""); !errors.Is(err, apps.ErrTransition) {
		t.Errorf("Create deactivated: %v, want ErrTransition", err)
	}
	if _, err := s.Create(ctx, testApp("app-a"), "dcr", ""); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "app-b")
	if err != nil || got.Name != a.Name || !got.CreatedAt.Equal(a.CreatedAt) || got.Version != 1 {
		t.Errorf("Get = %+v, %v; want %+v", got, err, a)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("Get unknown: %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 || list[0].ClientID != "app-a" || list[1].ClientID != "app-b" {
		t.Errorf("List = %v, %v; want app-a, app-b", list, err)
	}

	// Update replaces fields, not the state; a stale version conflicts.
	upd := got
	upd.Name, upd.State = "Renamed", apps.StateActive
	u, err := s.Update(ctx, upd, "admin:alice", "rename")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Renamed" || u.State != apps.StatePending || u.Version != 2 {
		t.Errorf("Update = %+v: want renamed, still pending, version 2", u)
	}
	if _, err := s.Update(ctx, upd, "admin:alice", ""); !errors.Is(err, apps.ErrConflict) {
		t.Errorf("Update of version 1 after version 2: %v, want ErrConflict", err)
	}
	if _, err := s.Update(ctx, testApp("nobody"), "admin:alice", ""); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("Update unknown: %v, want ErrNotFound", err)
	}

	// The lifecycle.
	if _, err := s.Transition(ctx, "app-b", apps.StateActive, "admin:bob", "", nil, nil); !errors.Is(err, apps.ErrTransition) {
		t.Errorf("pending → active: %v, want ErrTransition", err)
	}
	if _, err := s.Transition(ctx, "app-b", apps.StateApproved, "admin:bob", "", nil, []string{"patient/*.cruds"}); !errors.Is(err, apps.ErrInvalid) {
		t.Errorf("approving wider than requested: %v, want ErrInvalid", err)
	}
	ap, err := s.Transition(ctx, "app-b", apps.StateApproved, "admin:bob", "labs only", nil, []string{"patient/Observation.rs"})
	if err != nil {
		t.Fatal(err)
	}
	if ap.State != apps.StateApproved || !slices.Equal(ap.ApprovedAPIs, []string{"patient-access"}) ||
		!slices.Equal(ap.ApprovedScopes, []string{"patient/Observation.rs"}) || ap.Version != 3 {
		t.Errorf("approved %+v: want approved, patient-access, the narrowed scope, version 3", ap)
	}
	if _, err := s.Transition(ctx, "app-b", apps.StateActive, "admin:bob", "", []string{"patient-access"}, nil); !errors.Is(err, apps.ErrInvalid) {
		t.Errorf("narrowing on activation: %v, want ErrInvalid", err)
	}
	if _, err := s.Transition(ctx, "app-b", apps.StateActive, "admin:bob", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "app-b active in the view", func() bool { return lookupActive(s.Registry(), "app-b") })
	c, _ := s.Registry().Lookup(ctx, "app-b")
	if !slices.Equal(c.Scopes, []string{"patient/Observation.rs"}) || c.Name != "Renamed" {
		t.Errorf("view of app-b = %+v", c)
	}
	if c, err := s.Registry().Lookup(ctx, "app-a"); err != nil || c.Active {
		t.Errorf("view of pending app-a = %+v, %v; want found, inactive", c, err)
	}
	if _, err := s.Registry().Lookup(ctx, "nobody"); !errors.Is(err, decision.ErrUnknownClient) {
		t.Errorf("view of an unknown client: %v, want ErrUnknownClient", err)
	}
	for _, to := range []apps.State{apps.StateSuspended, apps.StateActive, apps.StateDeactivated} {
		if _, err := s.Transition(ctx, "app-b", to, "admin:bob", "", nil, nil); err != nil {
			t.Fatalf("→ %s: %v", to, err)
		}
	}
	if _, err := s.Transition(ctx, "app-b", apps.StateActive, "admin:bob", "", nil, nil); !errors.Is(err, apps.ErrTransition) {
		t.Errorf("deactivated → active: %v, want ErrTransition", err)
	}
	if _, err := s.Transition(ctx, "nobody", apps.StateApproved, "admin:bob", "", nil, nil); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("Transition unknown: %v, want ErrNotFound", err)
	}

	// History: every change, oldest first, the same events the auditor was given.
	hist, err := s.History(ctx, "app-b")
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range hist {
		actions = append(actions, ev.Action)
	}
	want := []string{"register", "update", "approve", "activate", "suspend", "reactivate", "deactivate"}
	if !slices.Equal(actions, want) {
		t.Errorf("history actions = %v, want %v", actions, want)
	}
	if hist[0].Before != nil || hist[0].After == nil || hist[0].Actor != "admin:alice" || hist[0].Reason != "new app" {
		t.Errorf("register event = %+v", hist[0])
	}
	if hist[2].Before.State != apps.StatePending || hist[2].After.State != apps.StateApproved || hist[2].Reason != "labs only" {
		t.Errorf("approve event = %+v", hist[2])
	}
	audited := map[string]bool{}
	for _, ev := range au.recorded() {
		audited[ev.ID] = true
	}
	for _, ev := range hist {
		if ev.ID == "" || !audited[ev.ID] {
			t.Errorf("event %s (%s) in the history was not audited", ev.ID, ev.Action)
		}
	}
	if _, err := s.History(ctx, "nobody"); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("History unknown: %v, want ErrNotFound", err)
	}
}

// TestDeactivationThroughOneReplicaIsRefusedByTheOtherWithinOneSecond runs two Stores (two replicas) on one
// database: an app deactivated (or suspended) through one is inactive in the other's view within 1 s.
func TestDeactivationThroughOneReplicaIsRefusedByTheOtherWithinOneSecond(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06", "OPS-REPLICA-01")
	ctx := context.Background()
	dsn := cleanSchema(t)
	au := &auditorFake{}
	one, other := openReplica(t, dsn, au), openReplica(t, dsn, au)
	for i, to := range []apps.State{apps.StateSuspended, apps.StateDeactivated} {
		id := "replica-app-" + string(rune('a'+i))
		a := testApp(id)
		a.State, a.ApprovedAPIs, a.ApprovedScopes = apps.StateActive, a.RequestedAPIs, a.RequestedScopes
		if _, err := one.Create(ctx, a, "admin:alice", ""); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Second, "the other replica sees the new app active", func() bool { return lookupActive(other.Registry(), id) })
		start := time.Now()
		if _, err := one.Transition(ctx, id, to, "admin:alice", "test", nil, nil); err != nil {
			t.Fatal(err)
		}
		committed := time.Since(start)
		latency := waitFor(t, time.Second, string(to)+" seen by the other replica", func() bool { return !lookupActive(other.Registry(), id) })
		t.Logf("%s through one replica: committed in %s, refused by the other's Lookup %s after the call began", to, committed, latency)
		c, err := other.Registry().Lookup(ctx, id)
		if err != nil || c.Active {
			t.Errorf("other replica's view = %+v, %v; want found and inactive", c, err)
		}
	}
}

func TestFailingAuditorLeavesNothingChanged(t *testing.T) {
	evidence.Proves(t, "AUD-05")
	ctx := context.Background()
	au := &auditorFake{}
	s := openReplica(t, cleanSchema(t), au)
	a := testApp("audited")
	a.State, a.ApprovedAPIs, a.ApprovedScopes = apps.StateActive, a.RequestedAPIs, a.RequestedScopes
	created, err := s.Create(ctx, a, "admin:alice", "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the app active in the view", func() bool { return lookupActive(s.Registry(), "audited") })

	au.setFailing(true)
	if _, err := s.Create(ctx, testApp("unaudited"), "admin:alice", ""); !errors.Is(err, apps.ErrAuditFailed) {
		t.Errorf("Create: %v, want ErrAuditFailed", err)
	}
	renamed := created
	renamed.Name = "Renamed"
	if _, err := s.Update(ctx, renamed, "admin:alice", ""); !errors.Is(err, apps.ErrAuditFailed) {
		t.Errorf("Update: %v, want ErrAuditFailed", err)
	}
	if _, err := s.Transition(ctx, "audited", apps.StateDeactivated, "admin:alice", "", nil, nil); !errors.Is(err, apps.ErrAuditFailed) {
		t.Errorf("Transition: %v, want ErrAuditFailed", err)
	}

	if _, err := s.Get(ctx, "unaudited"); !errors.Is(err, apps.ErrNotFound) {
		t.Errorf("the unaudited registration was kept: %v", err)
	}
	got, err := s.Get(ctx, "audited")
	if err != nil || got.Name != created.Name || got.State != apps.StateActive || got.Version != created.Version {
		t.Errorf("after unaudited changes: %+v, %v; want it as created", got, err)
	}
	if hist, _ := s.History(ctx, "audited"); len(hist) != 1 {
		t.Errorf("history has %d events, want the registration only", len(hist))
	}
	if err := s.Registry().Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !lookupActive(s.Registry(), "audited") {
		t.Error("the view lost the app to a rolled-back deactivation")
	}
	au.setFailing(false)
	if _, err := s.Transition(ctx, "audited", apps.StateDeactivated, "admin:alice", "", nil, nil); err != nil {
		t.Errorf("once the auditor works again: %v", err)
	}
}

func TestConcurrentUpdatesOfOneVersionConflictButOnce(t *testing.T) {
	ctx := context.Background()
	dsn := cleanSchema(t)
	au := &auditorFake{}
	replicas := []*Store{openReplica(t, dsn, au), openReplica(t, dsn, au)}
	a, err := replicas[0].Create(ctx, testApp("contended"), "admin:alice", "")
	if err != nil {
		t.Fatal(err)
	}
	const writers = 8
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			b := a
			b.Name = "Writer " + string(rune('A'+i))
			_, errs[i] = replicas[i%2].Update(ctx, b, "admin:w", "")
		})
	}
	wg.Wait()
	ok, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, apps.ErrConflict):
			conflicts++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || conflicts != writers-1 {
		t.Errorf("%d updates won, %d conflicted; want 1 and %d", ok, conflicts, writers-1)
	}
	if got, _ := replicas[1].Get(ctx, "contended"); got.Version != 2 {
		t.Errorf("version %d, want 2", got.Version)
	}
}

func TestImportIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s := openReplica(t, cleanSchema(t), &auditorFake{})
	clients := []decision.Client{
		{ID: "patient-app", Name: "Patient app", Active: true, APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"}, Tier: "standard"},
		{ID: "provider-org-a", Name: "Org A", Active: true, APIs: []string{"provider-access"}, Scopes: []string{"system/*.rs"}, Tier: "backend",
			Org: "Organization/org-a", NotifyHosts: []string{"127.0.0.1:9999"}},
		{ID: "retired-app", Name: "Retired", Active: false, APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"}, Tier: "standard"},
	}
	n, err := Import(ctx, s, clients, "import")
	if err != nil || n != 3 {
		t.Fatalf("first Import = %d, %v; want 3", n, err)
	}
	before, _ := s.List(ctx)
	n, err = Import(ctx, s, clients, "import")
	if err != nil || n != 0 {
		t.Fatalf("second Import = %d, %v; want 0", n, err)
	}
	after, _ := s.List(ctx)
	if len(after) != 3 {
		t.Fatalf("%d apps after importing twice, want 3", len(after))
	}
	for i := range after {
		if after[i].Version != before[i].Version || after[i].Version != 1 {
			t.Errorf("%s: version %d after importing twice, want 1", after[i].ClientID, after[i].Version)
		}
		if h, _ := s.History(ctx, after[i].ClientID); len(h) != 1 || h[0].Action != "import" {
			t.Errorf("%s: history %v, want one import", after[i].ClientID, h)
		}
	}
	waitFor(t, time.Second, "imported apps in the view", func() bool { return s.Registry().Len() == 3 })
	for _, want := range clients {
		got, err := s.Registry().Lookup(ctx, want.ID)
		if err != nil || got.Active != want.Active || !slices.Equal(got.APIs, want.APIs) || !slices.Equal(got.Scopes, want.Scopes) ||
			got.Org != want.Org || got.Tier != want.Tier || !slices.Equal(got.NotifyHosts, want.NotifyHosts) {
			t.Errorf("view of imported %s = %+v, %v; want %+v", want.ID, got, err, want)
		}
	}
	if a, _ := s.Get(ctx, "retired-app"); a.State != apps.StateSuspended || a.Environment != apps.Production {
		t.Errorf("inactive client imported as %s/%s, want suspended/production", a.State, a.Environment)
	}
}

// TestLostListenConnectionRecovers cuts the view's LISTEN connection from the server side: Watch reconnects
// (and reloads) before the view goes stale, and later changes reach the view again.
func TestLostListenConnectionRecovers(t *testing.T) {
	ctx := context.Background()
	dsn := cleanSchema(t)
	au := &auditorFake{}
	s := openReplica(t, dsn, au)
	writer := openReplica(t, dsn, au)
	a := testApp("cut-app")
	a.State, a.ApprovedAPIs, a.ApprovedScopes = apps.StateActive, a.RequestedAPIs, a.RequestedScopes
	if _, err := writer.Create(ctx, a, "admin:alice", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the app in the view", func() bool { return lookupActive(s.Registry(), "cut-app") })

	pid := s.Registry().listenPID.Load()
	admin, err := pgx.Connect(ctx, pgtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)); err != nil {
		t.Fatal(err)
	}
	// A change made while the connection is down is not notified to s: the reload on reconnection finds it.
	if _, err := writer.Transition(ctx, "cut-app", apps.StateSuspended, "admin:alice", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 5*time.Second, "a new LISTEN connection", func() bool {
		p := s.Registry().listenPID.Load()
		return p != 0 && p != pid
	})
	t.Logf("LISTEN connection re-established %s after it was cut", took)
	waitFor(t, time.Second, "the change made while cut", func() bool { return !lookupActive(s.Registry(), "cut-app") })
	if _, err := s.Registry().Lookup(ctx, "cut-app"); err != nil {
		t.Errorf("view after reconnection: %v", err)
	}
	if _, err := writer.Transition(ctx, "cut-app", apps.StateActive, "admin:alice", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	latency := waitFor(t, time.Second, "a change notified on the new connection", func() bool { return lookupActive(s.Registry(), "cut-app") })
	t.Logf("change seen through the new connection after %s", latency)
}

// TestViewFailsClosedWhenItCannotBeRefreshed: with PostgreSQL out of reach, Lookup refuses once the view is
// older than its bound, instead of serving a decision that may honour a deactivated app.
func TestViewFailsClosedWhenItCannotBeRefreshed(t *testing.T) {
	evidence.Proves(t, "SEC-04")
	ctx := context.Background()
	s, err := Open(ctx, cleanSchema(t), (&auditorFake{}).audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := testApp("stale-app")
	a.State, a.ApprovedAPIs, a.ApprovedScopes = apps.StateActive, a.RequestedAPIs, a.RequestedScopes
	if _, err := s.Create(ctx, a, "admin:alice", ""); err != nil {
		t.Fatal(err)
	}
	r := s.Registry()
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	r.staleAfter = 300 * time.Millisecond
	r.dsn = "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=1" // nothing listens there
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Watch(wctx); close(done) }()
	defer func() { cancel(); <-done }()
	if !lookupActive(r, "stale-app") {
		t.Fatal("fresh view does not serve the app")
	}
	time.Sleep(400 * time.Millisecond)
	if _, err := r.Lookup(ctx, "stale-app"); !errors.Is(err, ErrStale) {
		t.Errorf("Lookup on a view that cannot be refreshed: %v, want ErrStale", err)
	}
	if _, err := r.Lookup(ctx, "nobody"); !errors.Is(err, ErrStale) {
		t.Errorf("Lookup of an unknown client on a stale view: %v, want ErrStale (not a 403 that could be cached)", err)
	}
}

// TestIdleViewStaysFreshWhileItsConnectionAnswers: with no change for longer than the staleness bound, the
// heartbeat on the LISTEN connection keeps the view serving.
func TestIdleViewStaysFreshWhileItsConnectionAnswers(t *testing.T) {
	ctx := context.Background()
	s := openReplica(t, cleanSchema(t), &auditorFake{})
	a := testApp("idle-app")
	a.State, a.ApprovedAPIs, a.ApprovedScopes = apps.StateActive, a.RequestedAPIs, a.RequestedScopes
	if _, err := s.Create(ctx, a, "admin:alice", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the app in the view", func() bool { return lookupActive(s.Registry(), "idle-app") })
	s.Registry().staleAfter = 2500 * time.Millisecond // the heartbeat is 1 s
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := s.Registry().Lookup(ctx, "idle-app"); err != nil {
			t.Fatalf("idle view: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTheShippedClientsFileImportsAsItIs: every client of config/clients.yaml is storable, and the view
// after importing answers as the file registry does.
func TestTheShippedClientsFileImportsAsItIs(t *testing.T) {
	ctx := context.Background()
	data, err := os.ReadFile("../../../config/clients.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := file.Parse(data, []string{"patient-access", "provider-access", "payer-to-payer", "prior-auth"})
	if err != nil {
		t.Fatal(err)
	}
	var clients []decision.Client
	for _, c := range parsed {
		clients = append(clients, c)
	}
	s := openReplica(t, cleanSchema(t), &auditorFake{})
	if n, err := Import(ctx, s, clients, "import"); err != nil || n != len(clients) {
		t.Fatalf("Import = %d, %v; want %d", n, err, len(clients))
	}
	waitFor(t, time.Second, "every client in the view", func() bool { return s.Registry().Len() == len(clients) })
	for _, c := range clients {
		want := parsed[c.ID] // what the file registry serves
		got, err := s.Registry().Lookup(ctx, c.ID)
		if err != nil || got.ID != want.ID || got.Name != want.Name || got.Active != want.Active || got.Tier != want.Tier ||
			got.Org != want.Org || !slices.Equal(got.APIs, want.APIs) || !slices.Equal(got.Scopes, want.Scopes) ||
			!slices.Equal(got.NotifyHosts, want.NotifyHosts) {
			t.Errorf("%s: view %+v, %v; file registry %+v", c.ID, got, err, want)
		}
	}
}

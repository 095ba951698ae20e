package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/file"
)

var patientScopes = []string{"patient/*.rs", "patient/Observation.rs", "patient/Observation.rs?category=laboratory", "user/*.rs"}

func newTestSyncer(t *testing.T, kc *keycloakFake, reg Registry, clock *clockFake, protected ...string) (*Syncer, *prometheus.Registry) {
	t.Helper()
	pr := prometheus.NewRegistry()
	s, err := New(Config{URL: kc.srv.URL, Realm: "test", ClientID: "sync", ClientSecret: "sync-secret", Protected: protected, Metrics: pr}, reg)
	if err != nil {
		t.Fatal(err)
	}
	s.now = clock.now
	return s, pr
}

func webApp(id string) apps.App {
	return apps.App{ClientID: id, Name: "Web app " + id, RedirectURIs: []string{"https://app.example/cb", "https://app.example/cb2"},
		LaunchTypes: []string{"standalone"}, TokenAuthMethod: "client_secret_basic",
		ApprovedAPIs: []string{"patient-access"}, ApprovedScopes: []string{"patient/*.rs"},
		Environment: apps.Sandbox, State: apps.StateActive}
}

func TestDrainCreatesTheClientWithItsPendingSecretThenErasesIt(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t, patientScopes...), newRegistryFake(clock.now)
	s, pr := newTestSyncer(t, kc, reg, clock)
	reg.put(webApp("web-1"), "register")
	reg.secrets["web-1"] = "issued-secret"

	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, ok := kc.get("web-1")
	if !ok {
		t.Fatal("no client created")
	}
	if c.Secret != "issued-secret" || c.PublicClient || c.ClientAuthenticatorType != "client-secret" || !c.Enabled || !c.StandardFlowEnabled {
		t.Errorf("client %+v", c)
	}
	if want := []string{"https://app.example"}; !slices.Equal(c.WebOrigins, want) {
		t.Errorf("webOrigins %v, want %v", c.WebOrigins, want)
	}
	// patient/*.rs covers patient/Observation.rs and its granular form, never user/*.rs; a user-facing app
	// with patient scopes gets the identity and context scopes.
	want := []string{"email", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/Observation.rs", "patient/Observation.rs?category=laboratory", "profile"}
	if !slices.Equal(sorted(c.OptionalClientScopes), want) {
		t.Errorf("optional scopes %v, want %v", sorted(c.OptionalClientScopes), want)
	}
	if reg.secrets["web-1"] != "" {
		t.Error("the secret is still kept after Keycloak has it")
	}
	if st, _ := reg.Sync(context.Background(), "web-1"); st.Pending || st.SyncedAt.IsZero() {
		t.Errorf("sync state %+v, want synced", st)
	}
	if n := testutil.ToFloat64(s.pending); n != 0 {
		t.Errorf("pending gauge %v", n)
	}
	_ = pr
}

func TestKeycloakDownKeepsChangesPendingAndBacksOff(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t), newRegistryFake(clock.now)
	s, _ := newTestSyncer(t, kc, reg, clock)
	kc.setDown(true)
	reg.put(webApp("web-1"), "register")
	ctx := context.Background()

	for attempt, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		_ = s.Drain(ctx)
		st, _ := reg.Sync(ctx, "web-1")
		if !st.Pending || st.Attempts != attempt+1 || st.LastError == "" {
			t.Fatalf("after attempt %d: %+v, want pending with the error", attempt+1, st)
		}
		if next := reg.sync["web-1"].next; !next.Equal(clock.now().Add(wait)) {
			t.Errorf("attempt %d: next try at %s, want +%s", attempt+1, next, wait)
		}
		_ = s.Drain(ctx) // not due yet: no attempt
		if st2, _ := reg.Sync(ctx, "web-1"); st2.Attempts != attempt+1 {
			t.Errorf("retried before its backoff: attempts %d", st2.Attempts)
		}
		clock.advance(wait)
	}
	if n := testutil.ToFloat64(s.pending); n != 1 {
		t.Errorf("pending gauge %v, want 1", n)
	}
	kc.setDown(false)
	clock.advance(breakerOpen) // the breaker opened after five failures at most; it lets a call through again
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := kc.get("web-1"); !ok {
		t.Fatal("the change never reached Keycloak once it was back")
	}
	if st, _ := reg.Sync(ctx, "web-1"); st.Pending || st.LastError != "" || st.Attempts != 0 {
		t.Errorf("after recovery: %+v", st)
	}
}

func TestBackoffDoublesUpToThirtySeconds(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 40: 30 * time.Second} {
		if got := Backoff(n); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestSuspensionEndsSessionsAndDisablesTheClient(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t), newRegistryFake(clock.now)
	s, _ := newTestSyncer(t, kc, reg, clock)
	ctx := context.Background()
	reg.put(webApp("web-1"), "register")
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	reg.transition("web-1", apps.StateSuspended)
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ := kc.get("web-1")
	if c.Enabled || c.NotBefore != clock.now().Unix() {
		t.Errorf("suspended: enabled %v, notBefore %d; want disabled with notBefore now (%d)", c.Enabled, c.NotBefore, clock.now().Unix())
	}
	reg.transition("web-1", apps.StateDeactivated)
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := kc.get("web-1"); ok {
		t.Error("a deactivated app's client still exists")
	}
}

func TestReconcileRemovesUnregisteredClientsAndCorrectsHandEdits(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t, patientScopes...), newRegistryFake(clock.now)
	s, pr := newTestSyncer(t, kc, reg, clock, "fhirwall-portal")
	ctx := context.Background()
	reg.put(webApp("web-1"), "register")
	reg.put(webApp("web-2"), "register")
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"by-hand", "fhirwall-portal", "account", "sync"} {
		kc.add(Client{ClientID: id, Enabled: true})
	}
	kc.edit("web-1", func(c *Client) {
		c.RedirectURIs = append(c.RedirectURIs, "https://attacker.example/cb")
		c.OptionalClientScopes = append(c.OptionalClientScopes, "user/*.rs")
	})
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := kc.get("by-hand"); ok {
		t.Error("a client added by hand was not removed")
	}
	for _, id := range []string{"fhirwall-portal", "account", "sync"} {
		if _, ok := kc.get(id); !ok {
			t.Errorf("protected client %s was removed", id)
		}
	}
	c, _ := kc.get("web-1")
	if len(Drift(Desired(mustGet(t, reg, "web-1"), names(scopeMap(kc)), ""), c)) != 0 || slices.Contains(c.RedirectURIs, "https://attacker.example/cb") {
		t.Errorf("hand edit not corrected: %+v", c)
	}
	if got, want := reg.actions(), []string{"idp-correct web-1", "idp-remove-unregistered by-hand"}; !slices.Equal(got, want) {
		t.Errorf("audited %v, want %v", got, want)
	}
	for _, ev := range reg.recorded() {
		if ev.Actor != ActorReconcile || ev.After == nil {
			t.Errorf("audit record %+v", ev)
		}
		if ev.Action == ActionCorrect && (!strings.Contains(ev.Reason, "redirectUris") || !strings.Contains(ev.Reason, "optionalClientScopes")) {
			t.Errorf("reason %q does not name the drifted fields", ev.Reason)
		}
	}
	if got := testutil.ToFloat64(s.drift.WithLabelValues(DriftCorrected)); got != 1 {
		t.Errorf("corrected drift counted %v", got)
	}
	if got := testutil.ToFloat64(s.drift.WithLabelValues(DriftUnregistered)); got != 1 {
		t.Errorf("unregistered drift counted %v", got)
	}
	if n, err := testutil.GatherAndCount(pr, DriftTotal); err != nil || n != 2 {
		t.Errorf("drift series %d, %v", n, err)
	}
	// Nothing drifts any more: a second pass changes nothing in Keycloak.
	before := kc.writeCount()
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if kc.writeCount() != before {
		t.Errorf("a reconcile without drift wrote to Keycloak %d times", kc.writeCount()-before)
	}
}

func TestImportedAppAdoptsItsExistingClientInsteadOfOverwritingIt(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t, patientScopes...), newRegistryFake(clock.now)
	s, _ := newTestSyncer(t, kc, reg, clock)
	ctx := context.Background()
	kc.add(Client{ClientID: "legacy", Name: "Legacy app", Enabled: true, PublicClient: true, StandardFlowEnabled: true,
		RedirectURIs: []string{"http://127.0.0.1:8089/callback"}, WebOrigins: []string{"http://127.0.0.1:8089"},
		Attributes:          map[string]string{"pkce.code.challenge.method": "S256"},
		DefaultClientScopes: []string{"basic", "fhirwall-audience"},
		OptionalClientScopes: []string{"email", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/Observation.rs",
			"patient/Observation.rs?category=laboratory", "profile"}})
	reg.put(apps.App{ClientID: "legacy", Name: "Legacy (clients.yaml)", ApprovedAPIs: []string{"patient-access"},
		ApprovedScopes: []string{"patient/*.rs"}, Environment: apps.Production, State: apps.StateActive}, "import")
	writes := kc.writeCount()
	for range 2 { // the adoption, then the sync of the adopted app
		if err := s.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	a := mustGet(t, reg, "legacy")
	if a.Name != "Legacy app" || a.TokenAuthMethod != "none" || !slices.Equal(a.RedirectURIs, []string{"http://127.0.0.1:8089/callback"}) {
		t.Errorf("adopted app %+v", a)
	}
	h, _ := reg.History(ctx, "legacy")
	if last := h[len(h)-1]; last.Actor != ActorAdopt || !strings.Contains(last.Reason, "adopted") {
		t.Errorf("adoption event %+v", last)
	}
	if kc.writeCount() != writes {
		t.Errorf("adoption wrote to Keycloak %d times; the client was the truth", kc.writeCount()-writes)
	}
	// From now on the registry wins: an edit in Keycloak is corrected, not adopted again.
	kc.edit("legacy", func(c *Client) { c.Name = "renamed by hand" })
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := kc.get("legacy"); c.Name != "Legacy app" {
		t.Errorf("name %q, want the registry's", c.Name)
	}
}

// TestRealmFileClientsImportedAndAdoptedShowNoDrift: the demo realm's clients (config/keycloak/fhirwall-realm.json)
// with config/clients.yaml imported and adopted are what the sync wants, owned field for owned field; the only
// difference is the scopes payer-b and payer-c's approved patterns cover that the realm file did not list.
func TestRealmFileClientsImportedAndAdoptedShowNoDrift(t *testing.T) {
	raw, err := os.ReadFile("../../../config/keycloak/fhirwall-realm.json")
	if err != nil {
		t.Fatal(err)
	}
	var realm struct {
		ClientScopes []struct{ Name string } `json:"clientScopes"`
		Clients      []Client                `json:"clients"`
	}
	if err := json.Unmarshal(raw, &realm); err != nil {
		t.Fatal(err)
	}
	var scopes []string
	for _, s := range realm.ClientScopes {
		scopes = append(scopes, s.Name)
	}
	data, err := os.ReadFile("../../../config/clients.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := file.Parse(data, []string{"patient-access", "provider-access", "payer-to-payer", "prior-auth"})
	if err != nil {
		t.Fatal(err)
	}
	// The realm file grants every client exactly the scopes its approved patterns cover: nothing to add.
	added := map[string][]string{}
	checked := 0
	for _, kcClient := range realm.Clients {
		fc, ok := parsed[kcClient.ClientID]
		if !ok {
			continue // the realm's own clients (registry, portal): protected, not the registry's
		}
		checked++
		state := apps.StateActive
		if !fc.Active {
			state = apps.StateSuspended
		}
		imported := apps.App{ClientID: fc.ID, Name: fc.Name, RequestedAPIs: fc.APIs, RequestedScopes: fc.Scopes,
			ApprovedAPIs: fc.APIs, ApprovedScopes: fc.Scopes, Environment: apps.Production, State: state, Tier: fc.Tier,
			ProviderOrg: fc.Org, NotifyHosts: fc.NotifyHosts}
		if !Adoptable(imported, true) {
			t.Fatalf("%s: imported app not adoptable", fc.ID)
		}
		want := Desired(Adopt(imported, kcClient), scopes, "")
		drift := Drift(want, kcClient)
		if extra := added[fc.ID]; extra != nil {
			drift = slices.DeleteFunc(drift, func(f string) bool { return f == "optionalClientScopes" })
			var got []string
			for _, s := range want.OptionalClientScopes {
				if !slices.Contains(kcClient.OptionalClientScopes, s) {
					got = append(got, s)
				}
			}
			if !slices.Equal(got, extra) || len(want.OptionalClientScopes) != len(kcClient.OptionalClientScopes)+len(extra) {
				t.Errorf("%s: scope additions %v, want exactly %v", fc.ID, got, extra)
			}
		}
		if len(drift) != 0 {
			t.Errorf("%s: drift on %v", fc.ID, drift)
		}
	}
	if checked != 6 {
		t.Errorf("checked %d realm clients, want the six of clients.yaml that the realm has", checked)
	}
}

func TestRotationWithOverlapIsRefusedBeforeAnythingChangesWhenKeycloakKeepsNoRotatedSecret(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t), newRegistryFake(clock.now)
	s, _ := newTestSyncer(t, kc, reg, clock)
	ctx := context.Background()
	reg.put(webApp("web-1"), "register")
	reg.secrets["web-1"] = "first"
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateSecret(ctx, "web-1", time.Hour); !errors.Is(err, ErrNoOverlap) {
		t.Fatalf("RotateSecret with overlap: %v, want ErrNoOverlap", err)
	}
	if c, _ := kc.get("web-1"); c.Secret != "first" {
		t.Errorf("secret changed to %q by a refused rotation", c.Secret)
	}
	got, err := s.RotateSecret(ctx, "web-1", 0)
	if c, _ := kc.get("web-1"); err != nil || got == "" || c.Secret != got {
		t.Errorf("RotateSecret(0) = %q, %v; Keycloak has %q", got, err, c.Secret)
	}
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	if _, err := New(Config{URL: "http://kc", Realm: "r", ClientID: "c"}, newRegistryFake(time.Now)); err == nil {
		t.Error("New without a secret succeeded")
	}
}

func mustGet(t *testing.T, reg *registryFake, id string) apps.App {
	t.Helper()
	a, err := reg.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func scopeMap(kc *keycloakFake) map[string]string {
	out := map[string]string{}
	for _, s := range kc.scopes {
		out[s.Name] = s.ID
	}
	return out
}

func TestAnEmptyRegistryRemovesNothingFromTheRealm(t *testing.T) {
	clock := newClockFake()
	kc, reg := newKeycloakFake(t), newRegistryFake(clock.now)
	s, _ := newTestSyncer(t, kc, reg, clock)
	kc.add(Client{ClientID: "patient-app", Enabled: true})
	if err := s.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := kc.get("patient-app"); !ok {
		t.Error("a realm client was removed because the registry was empty")
	}
}

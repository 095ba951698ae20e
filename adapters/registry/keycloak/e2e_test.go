//go:build e2e

package keycloak

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/pgtest"
	"github.com/fhirwall/fhirwall/test/require"
)

// The stack's Keycloak (master admin admin/admin) and PostgreSQL; each test has a realm and a schema of its own.
func keycloakURL() string {
	if u := os.Getenv("FHIRWALL_TEST_KEYCLOAK_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:8180"
}

// masterAdmin calls the admin API as Keycloak's master admin: the test's hands in Keycloak.
type masterAdmin struct {
	t     *testing.T
	token string
}

func newMasterAdmin(t *testing.T) *masterAdmin {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"}, "username": {"admin"}, "password": {"admin"}}
	res, err := http.PostForm(keycloakURL()+"/realms/master/protocol/openid-connect/token", form)
	if err != nil {
		require.Missing(t, "Keycloak does not answer (bash test/stack/keycloak.sh start): "+err.Error())
	}
	defer res.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("master admin sign-in: %d %v", res.StatusCode, err)
	}
	return &masterAdmin{t: t, token: tr.AccessToken}
}

// do calls path under /admin/realms and returns the status; out receives the JSON answer.
func (m *masterAdmin) do(method, path string, in, out any) int {
	m.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, keycloakURL()+"/admin/realms"+path, body)
	req.Header.Set("Authorization", "Bearer "+m.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			m.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, raw)
		}
	}
	return res.StatusCode
}

func (m *masterAdmin) must(method, path string, in, out any) {
	m.t.Helper()
	if st := m.do(method, path, in, out); st >= 300 {
		m.t.Fatalf("%s %s: %d", method, path, st)
	}
}

func (m *masterAdmin) client(realm, clientID string) (Client, bool) {
	var list []Client
	m.must("GET", "/"+realm+"/clients?clientId="+url.QueryEscape(clientID), nil, &list)
	if len(list) == 0 {
		return Client{}, false
	}
	return list[0], true
}

// testRealm makes a realm of the test's own (deleted afterwards) with a few SMART scopes, a user alice, and
// the sync's service account "fw-sync" holding the realm-management roles the stack's fhirwall-registry has.
// It returns the realm and the service account's secret.
func testRealm(t *testing.T, m *masterAdmin) (string, string) {
	realm := "fwtest-h1-" + strings.ToLower(rand.Text()[:10])
	m.must("POST", "", map[string]any{"realm": realm, "enabled": true}, nil)
	t.Cleanup(func() { m.do("DELETE", "/"+realm, nil, nil) })
	for _, s := range []string{"patient/*.rs", "patient/Observation.rs", "user/*.rs"} {
		m.must("POST", "/"+realm+"/client-scopes", map[string]any{"name": s, "protocol": "openid-connect",
			"attributes": map[string]string{"include.in.token.scope": "true"}}, nil)
	}
	secret := rand.Text()
	m.must("POST", "/"+realm+"/clients", map[string]any{"clientId": "fw-sync", "publicClient": false, "secret": secret,
		"serviceAccountsEnabled": true, "standardFlowEnabled": false}, nil)
	sync, _ := m.client(realm, "fw-sync")
	rm, _ := m.client(realm, "realm-management")
	var user struct{ ID string }
	m.must("GET", "/"+realm+"/clients/"+sync.ID+"/service-account-user", nil, &user)
	var roles []map[string]any
	for _, r := range []string{"manage-clients", "view-clients", "query-clients", "manage-users", "view-users", "query-users"} {
		var role map[string]any
		m.must("GET", "/"+realm+"/clients/"+rm.ID+"/roles/"+r, nil, &role)
		roles = append(roles, role)
	}
	m.must("POST", "/"+realm+"/users/"+user.ID+"/role-mappings/clients/"+rm.ID, roles, nil)
	m.must("POST", "/"+realm+"/users", map[string]any{"username": "alice", "enabled": true, "email": "alice@example.org",
		"firstName": "Alice", "lastName": "Test", "emailVerified": true,
		"credentials": []map[string]any{{"type": "password", "value": "alice-pw", "temporary": false}}}, nil)
	return realm, secret
}

// testStore is a registry in a PostgreSQL schema of the test's own, with its audit records kept.
func testStore(t *testing.T) (*postgres.Store, *auditRecorder) {
	t.Helper()
	dsn := pgtest.Schema(t, "h1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rec := &auditRecorder{}
	s, err := postgres.Open(ctx, dsn, rec.audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, rec
}

// runSyncer runs a Syncer for realm at kcURL until the returned stop is called.
func runSyncer(t *testing.T, store *postgres.Store, kcURL, realm, secret string, reconcile time.Duration) (*Syncer, func()) {
	t.Helper()
	s, err := New(Config{URL: kcURL, Realm: realm, ClientID: "fw-sync", ClientSecret: secret, ReconcileInterval: reconcile,
		HTTP: &http.Client{Timeout: 5 * time.Second}}, store)
	if err != nil {
		t.Fatal(err)
	}
	s.retryLead = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx, PostgresLeader(store, realm)) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, sync.OnceFunc(stop)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func confidentialApp(id string) apps.App {
	return apps.App{ClientID: id, Name: "E2E app " + id, RedirectURIs: []string{"https://app.example/cb"},
		LaunchTypes: []string{"standalone"}, TokenAuthMethod: "client_secret_basic",
		RequestedAPIs: []string{"patient-access"}, RequestedScopes: []string{"patient/*.rs"},
		ApprovedAPIs: []string{"patient-access"}, ApprovedScopes: []string{"patient/*.rs"},
		Environment: apps.Sandbox, State: apps.StatePending}
}

// register registers and activates a confidential app with secret, as the portal would.
func register(t *testing.T, store *postgres.Store, id, secret string) {
	t.Helper()
	ctx := context.Background()
	if _, err := store.Register(ctx, confidentialApp(id), "portal:dev", "e2e", apps.Issued{ClientSecret: secret, RegistrationToken: "rat-" + id}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []apps.State{apps.StateApproved, apps.StateActive} {
		if _, err := store.Transition(ctx, id, to, "admin:e2e", "e2e", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

func tokenRequest(t *testing.T, realm string, form url.Values) (int, tokens) {
	t.Helper()
	res, err := http.PostForm(keycloakURL()+"/realms/"+realm+"/protocol/openid-connect/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr tokens
	_ = json.NewDecoder(res.Body).Decode(&tr)
	return res.StatusCode, tr
}

// signIn gets alice's tokens for clientID (password grant, switched on by hand: an unowned field the sync
// leaves alone).
func signIn(t *testing.T, m *masterAdmin, realm, clientID, secret string) tokens {
	t.Helper()
	c, _ := m.client(realm, clientID)
	var raw map[string]any
	m.must("GET", "/"+realm+"/clients/"+c.ID, nil, &raw)
	raw["directAccessGrantsEnabled"] = true
	m.must("PUT", "/"+realm+"/clients/"+c.ID, raw, nil)
	st, tr := tokenRequest(t, realm, url.Values{"grant_type": {"password"}, "client_id": {clientID}, "client_secret": {secret},
		"username": {"alice"}, "password": {"alice-pw"}, "scope": {"openid offline_access"}})
	if st != http.StatusOK || tr.RefreshToken == "" {
		t.Fatalf("alice's sign-in to %s: %d %s", clientID, st, tr.Error)
	}
	return tr
}

func refreshes(t *testing.T, realm, clientID, secret, refresh string) bool {
	st, _ := tokenRequest(t, realm, url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "client_secret": {secret},
		"refresh_token": {refresh}})
	return st == http.StatusOK
}

func TestE2ERegistryChangesReachKeycloakAndDriftIsCorrected(t *testing.T) {
	m := newMasterAdmin(t)
	realm, syncSecret := testRealm(t, m)
	store, rec := testStore(t)
	ctx := context.Background()
	_, _ = runSyncer(t, store, keycloakURL(), realm, syncSecret, time.Second)

	register(t, store, "e2e-web", "first-secret-0123456789")
	backend := apps.App{ClientID: "e2e-backend", Name: "E2E backend", LaunchTypes: []string{"backend"}, TokenAuthMethod: "private_key_jwt",
		JWKS:         json.RawMessage(`{"keys":[{"kty":"RSA","kid":"k1","alg":"RS384","n":"n3iVd6lwHxZLjPzg-8Tqw7gqmVGRkXMyWz5_O-r2jDxMzwMYIutzfLFLraxS59o5ebw","e":"AQAB"}]}`),
		ApprovedAPIs: []string{"provider-access"}, ApprovedScopes: []string{"system/*.rs"}, ProviderOrg: "Organization/org-e2e",
		Environment: apps.Production, State: apps.StateActive}
	if _, err := store.Create(ctx, backend, "admin:e2e", "e2e"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the backend client with its org mapper", func() bool {
		c, ok := m.client(realm, "e2e-backend")
		mp, _ := findMapper(c.ProtocolMappers)
		return ok && c.ServiceAccountsEnabled && c.ClientAuthenticatorType == "client-jwt" && mp != nil && mp.Config["claim.value"] == "Organization/org-e2e"
	})
	eventually(t, "the client enabled in Keycloak", func() bool { c, ok := m.client(realm, "e2e-web"); return ok && c.Enabled })
	eventually(t, "the app synced", func() bool { st, _ := store.Sync(ctx, "e2e-web"); return !st.Pending && !st.SyncedAt.IsZero() })
	signIn(t, m, realm, "e2e-web", "first-secret-0123456789") // the registration's secret is the client's
	time.Sleep(2500 * time.Millisecond)                       // two reconcile passes over a client nobody touched
	if got := rec.actions(); len(got) != 0 {
		t.Fatalf("the sync's own client drifts from what it wants: %v", got)
	}
	if s, _ := store.PendingSecret(ctx, "e2e-web"); s != "" {
		t.Error("the secret is still kept after Keycloak has it")
	}
	if err := store.VerifyRegistrationToken(ctx, "e2e-web", "rat-e2e-web"); err != nil {
		t.Errorf("registration token refused: %v", err)
	}
	if err := store.VerifyRegistrationToken(ctx, "e2e-web", "rat-other"); !errors.Is(err, apps.ErrUnauthorized) {
		t.Errorf("wrong registration token: %v", err)
	}

	// Update: new redirect URIs reach Keycloak.
	a, _ := store.Get(ctx, "e2e-web")
	a.RedirectURIs = []string{"https://app.example/cb", "https://other.example/cb"}
	if _, err := store.Update(ctx, a, "portal:dev", "e2e"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new redirect URIs in Keycloak", func() bool {
		c, _ := m.client(realm, "e2e-web")
		return slices.Contains(c.RedirectURIs, "https://other.example/cb") && slices.Contains(c.WebOrigins, "https://other.example")
	})

	// Drift: a client added by hand is removed; a hand edit of a registry client is put back.
	m.must("POST", "/"+realm+"/clients", map[string]any{"clientId": "by-hand", "publicClient": true}, nil)
	c, _ := m.client(realm, "e2e-web")
	var raw map[string]any
	m.must("GET", "/"+realm+"/clients/"+c.ID, nil, &raw)
	raw["redirectUris"] = []string{"https://attacker.example/*"}
	m.must("PUT", "/"+realm+"/clients/"+c.ID, raw, nil)
	eventually(t, "the hand-made client removed", func() bool { _, ok := m.client(realm, "by-hand"); return !ok })
	eventually(t, "the hand edit corrected", func() bool {
		c, _ := m.client(realm, "e2e-web")
		return !slices.Contains(c.RedirectURIs, "https://attacker.example/*")
	})
	if _, ok := m.client(realm, "fw-sync"); !ok {
		t.Error("the sync removed its own client")
	}
	if got := rec.actions(); !slices.Contains(got, "idp-remove-unregistered by-hand") || !slices.Contains(got, "idp-correct e2e-web") {
		t.Errorf("audited %v", got)
	}

	// Suspend: disabled; deactivate: deleted.
	if _, err := store.Transition(ctx, "e2e-web", apps.StateSuspended, "admin:e2e", "e2e", nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client disabled", func() bool { c, _ := m.client(realm, "e2e-web"); return !c.Enabled })
	if _, err := store.Transition(ctx, "e2e-web", apps.StateDeactivated, "admin:e2e", "e2e", nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the client deleted", func() bool { _, ok := m.client(realm, "e2e-web"); return !ok })
}

func TestE2EKeycloakUnreachableRegistrationsWaitAndArriveLater(t *testing.T) {
	m := newMasterAdmin(t)
	realm, syncSecret := testRealm(t, m)
	store, _ := testStore(t)
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	_ = l.Close() // nothing listens there now

	_, stop := runSyncer(t, store, closed, realm, syncSecret, time.Hour)
	register(t, store, "e2e-later", "later-secret-0123456789")
	eventually(t, "the failure recorded", func() bool {
		st, _ := store.Sync(ctx, "e2e-later")
		return st.Pending && st.Attempts > 0 && st.LastError != ""
	})
	if _, ok := m.client(realm, "e2e-later"); ok {
		t.Fatal("the client exists though Keycloak was unreachable")
	}
	stop()

	_, _ = runSyncer(t, store, keycloakURL(), realm, syncSecret, time.Hour)
	eventually(t, "the waiting change delivered", func() bool { st, _ := store.Sync(ctx, "e2e-later"); return !st.Pending })
	if c, ok := m.client(realm, "e2e-later"); !ok || !c.Enabled {
		t.Errorf("client %+v, %v", c, ok)
	}
}

func TestE2EEndSessionsAndRevokeGrantRefuseRefreshTokens(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06")
	m := newMasterAdmin(t)
	realm, syncSecret := testRealm(t, m)
	store, _ := testStore(t)
	ctx := context.Background()
	s, _ := runSyncer(t, store, keycloakURL(), realm, syncSecret, time.Hour)
	register(t, store, "e2e-a", "secret-a-0123456789")
	register(t, store, "e2e-b", "secret-b-0123456789")
	eventually(t, "both clients", func() bool {
		a, okA := m.client(realm, "e2e-a")
		b, okB := m.client(realm, "e2e-b")
		return okA && okB && a.Enabled && b.Enabled
	})
	var users []struct{ ID string }
	m.must("GET", "/"+realm+"/users?username=alice&exact=true", nil, &users)
	alice := users[0].ID

	a := signIn(t, m, realm, "e2e-a", "secret-a-0123456789")
	b := signIn(t, m, realm, "e2e-b", "secret-b-0123456789")
	grants, err := s.Grants(ctx, alice)
	if err != nil || !slices.Contains(grants, "e2e-a") || !slices.Contains(grants, "e2e-b") {
		t.Fatalf("Grants = %v, %v", grants, err)
	}
	time.Sleep(1100 * time.Millisecond) // notBefore has a one-second grain

	if err := s.RevokeGrant(ctx, alice, "e2e-a"); err != nil {
		t.Fatal(err)
	}
	if refreshes(t, realm, "e2e-a", "secret-a-0123456789", a.RefreshToken) {
		t.Error("after RevokeGrant, alice's refresh token for e2e-a still works")
	}
	if grants, _ := s.Grants(ctx, alice); slices.Contains(grants, "e2e-a") {
		t.Errorf("after RevokeGrant, Grants = %v", grants)
	}
	// b's offline token (its own offline session) survives a's revocation; EndSessions ends it.
	if !refreshes(t, realm, "e2e-b", "secret-b-0123456789", b.RefreshToken) {
		t.Fatal("alice's e2e-b token stopped working before EndSessions")
	}
	b = signIn(t, m, realm, "e2e-b", "secret-b-0123456789")
	time.Sleep(1100 * time.Millisecond)
	if err := s.EndSessions(ctx, "e2e-b"); err != nil {
		t.Fatal(err)
	}
	if refreshes(t, realm, "e2e-b", "secret-b-0123456789", b.RefreshToken) {
		t.Error("after EndSessions, a refresh token of e2e-b still works")
	}
}

func TestE2ERotateSecret(t *testing.T) {
	m := newMasterAdmin(t)
	realm, syncSecret := testRealm(t, m)
	store, _ := testStore(t)
	ctx := context.Background()
	s, _ := runSyncer(t, store, keycloakURL(), realm, syncSecret, time.Hour)
	register(t, store, "e2e-rot", "old-secret-0123456789")
	eventually(t, "the client", func() bool { _, ok := m.client(realm, "e2e-rot"); return ok })
	eventually(t, "synced", func() bool { st, _ := store.Sync(ctx, "e2e-rot"); return !st.Pending })
	works := func(secret string) bool {
		st, _ := tokenRequest(t, realm, url.Values{"grant_type": {"password"}, "client_id": {"e2e-rot"}, "client_secret": {secret},
			"username": {"alice"}, "password": {"alice-pw"}})
		return st == http.StatusOK
	}
	signIn(t, m, realm, "e2e-rot", "old-secret-0123456789") // switches the password grant on

	enabled, err := s.kc.secretRotationEnabled(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !enabled {
		if _, err := s.RotateSecret(ctx, "e2e-rot", time.Minute); !errors.Is(err, ErrNoOverlap) {
			t.Fatalf("overlap without Keycloak's rotation: %v, want ErrNoOverlap", err)
		}
		if !works("old-secret-0123456789") {
			t.Fatal("a refused rotation changed the secret")
		}
		fresh, err := s.RotateSecret(ctx, "e2e-rot", 0)
		if err != nil || !works(fresh) || works("old-secret-0123456789") {
			t.Fatalf("rotation without overlap: %v; new works %v, old works %v", err, works(fresh), works("old-secret-0123456789"))
		}
		require.Missing(t, "Keycloak runs without the client-secret-rotation feature: rotation with overlap untested "+
			"(start it with --features=scripts,client-secret-rotation)")
	}
	// With the feature: a secret-rotation policy for the realm, overlap 20 s.
	m.must("PUT", "/"+realm+"/client-policies/profiles", map[string]any{"profiles": []map[string]any{{"name": "fhirwall-secret-rotation",
		"executors": []map[string]any{{"executor": "secret-rotation", "configuration": map[string]any{
			"expiration-period": "31536000", "rotated-expiration-period": "20", "remaining-rotation-period": "0"}}}}}}, nil)
	m.must("PUT", "/"+realm+"/client-policies/policies", map[string]any{"policies": []map[string]any{{"name": "fhirwall-secret-rotation",
		"enabled": true, "conditions": []map[string]any{{"condition": "client-access-type", "configuration": map[string]any{"type": []string{"confidential"}}}},
		"profiles": []string{"fhirwall-secret-rotation"}}}}, nil)
	fresh, err := s.RotateSecret(ctx, "e2e-rot", 20*time.Second)
	if err != nil {
		t.Fatalf("rotation with the overlap the policy keeps: %v", err)
	}
	if !works(fresh) || !works("old-secret-0123456789") {
		t.Fatalf("within the overlap: new works %v, old works %v", works(fresh), works("old-secret-0123456789"))
	}
	for deadline := time.Now().Add(45 * time.Second); works("old-secret-0123456789"); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("the old secret still works long after the overlap")
		}
	}
	if !works(fresh) {
		t.Error("the new secret stopped working")
	}
}

package portal

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/admin/admintest"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/config"
)

const testPublicURL = "https://portal.test"

var testKey = bytes.Repeat([]byte{7}, 32)

type harness struct {
	t       *testing.T
	h       http.Handler
	store   *admintest.FakeStore
	idp     *fakeIdP
	revoker *fakeRevoker
	op      *fakeOIDCProvider
	seal    *sealer
	now     time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	x := &harness{t: t, store: admintest.NewFakeStore(), idp: &fakeIdP{grants: map[string][]string{}}, revoker: &fakeRevoker{},
		op: newFakeOIDCProvider(t), now: time.Now()}
	var err error
	x.seal, err = newSealer(testKey)
	if err != nil {
		t.Fatal(err)
	}
	x.h, err = New(Options{Store: x.store, IdP: x.idp, Revoker: x.revoker,
		Offered: map[string][]string{"patient-access": {"launch/patient", "openid", "fhirUser", "patient/Patient.rs", "patient/ExplanationOfBenefit.rs"},
			"provider-access": {"openid", "fhirUser", "user/*.rs", "system/*.rs"}},
		APIs: []config.API{{Name: "patient-access"}, {Name: "provider-access"}},
		Docs: func(context.Context, string) ([]byte, []byte, error) {
			return []byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","implementation":{"url":"https://api.test/patient-access"},
"rest":[{"resource":[{"type":"Patient","interaction":[{"code":"read"},{"code":"search-type"}],"searchParam":[{"name":"_id","type":"token"}]},
{"type":"ExplanationOfBenefit","interaction":[{"code":"read"}],"operation":[{"name":"everything"}]}]}]}`),
				[]byte(`{"authorization_endpoint":"https://idp.test/auth","token_endpoint":"https://idp.test/token","scopes_supported":["launch/patient","patient/Patient.rs"],"capabilities":["launch-standalone"]}`), nil
		},
		Notices: []config.Notice{
			{ID: "eob-v1", Kind: "deprecation", API: "patient-access", Title: "EOB v1 <retires>", Body: "Use v2.", Published: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Deprecation: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
			{ID: "mw-1", Kind: "maintenance", API: "patient-access", Title: "Database upgrade", Published: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Start: time.Date(2026, 12, 20, 1, 0, 0, 0, time.UTC)},
		},
		OIDC:      OIDC{IssuerURL: x.op.srv.URL, ClientID: x.op.clientID, ClientSecret: x.op.clientSecret},
		PublicURL: testPublicURL, SessionKey: testKey, SecretOverlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// user is a signed-in session, made the way the callback makes it.
func (x *harness) user(name string, roles ...string) *session {
	return &session{Subject: "sub-" + name, Username: name, Roles: roles, CSRF: "csrf-" + name, Expires: time.Now().Add(time.Hour)}
}

var (
	dana  = func(x *harness) *session { return x.user("dana", config.DefaultDeveloperRole) }
	riley = func(x *harness) *session { return x.user("riley", config.DefaultReviewerRole) }
)

func (x *harness) cookie(s *session) *http.Cookie {
	v, err := x.seal.seal(sessionCookie, s)
	if err != nil {
		x.t.Fatal(err)
	}
	return &http.Cookie{Name: sessionCookie, Value: v}
}

func (x *harness) get(s *session, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, testPublicURL+path, nil)
	if s != nil {
		r.AddCookie(x.cookie(s))
	}
	w := httptest.NewRecorder()
	x.h.ServeHTTP(w, r)
	return w
}

// post submits form as the portal's own page would: same origin, the session's CSRF token.
func (x *harness) post(s *session, path string, form url.Values) *httptest.ResponseRecorder {
	if form == nil {
		form = url.Values{}
	}
	if s != nil && !form.Has("csrf") {
		form.Set("csrf", s.CSRF)
	}
	return x.postRaw(s, path, form, map[string]string{"Origin": testPublicURL})
}

func (x *harness) postRaw(s *session, path string, form url.Values, headers map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, testPublicURL+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	if s != nil {
		r.AddCookie(x.cookie(s))
	}
	w := httptest.NewRecorder()
	x.h.ServeHTTP(w, r)
	return w
}

func registration(auth string) url.Values {
	return url.Values{"name": {"Dana's Health App"}, "org": {"Dana Labs"}, "email": {"dana@labs.example"},
		"redirect_uris": {"https://app.example/cb\n"}, "launch": {"standalone"}, "auth_method": {auth},
		"api": {"patient-access"}, "scope:patient-access": {"launch/patient", "openid", "patient/Patient.rs"}}
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d; body:\n%s", w.Code, want, w.Body.String())
	}
}

func onlyApp(t *testing.T, s *admintest.FakeStore) apps.App {
	t.Helper()
	all, _ := s.List(context.Background())
	if len(all) != 1 {
		t.Fatalf("%d apps in the store, want 1", len(all))
	}
	return all[0]
}

func TestSandboxRegistrationIsActiveAtOnceAndItsSecretIsShownOnce(t *testing.T) {
	x := newHarness(t)
	w := x.post(dana(x), "/apps/new", registration(apps.AuthClientSecretBasic))
	wantStatus(t, w, http.StatusCreated)
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q on the credentials page, want no-store", cc)
	}
	a := onlyApp(t, x.store)
	if a.State != apps.StateActive || a.Environment != apps.Sandbox || a.Owner != "portal:sub-dana" {
		t.Errorf("registered %s %s owned by %q, want an active sandbox app owned by portal:sub-dana", a.State, a.Environment, a.Owner)
	}
	if !slices.Equal(a.ApprovedScopes, a.RequestedScopes) || !slices.Equal(a.ApprovedAPIs, []string{"patient-access"}) {
		t.Errorf("approved %v %v, want what was requested %v", a.ApprovedAPIs, a.ApprovedScopes, a.RequestedScopes)
	}
	hist, _ := x.store.History(context.Background(), a.ClientID)
	if len(hist) != 1 || hist[0].Actor != "portal:dana" || hist[0].Action != "register" {
		t.Errorf("history %+v, want one register event by portal:dana", hist)
	}
	body := w.Body.String()
	i := strings.Index(body, `data-test="client-secret">`)
	if i < 0 {
		t.Fatalf("no secret on the credentials page:\n%s", body)
	}
	secret := body[i+len(`data-test="client-secret">`):]
	secret = secret[:strings.Index(secret, "<")]
	if len(secret) < 40 {
		t.Fatalf("secret %q is too short", secret)
	}
	for _, p := range []string{"/apps/" + a.ClientID, "/apps", "/review/apps/" + a.ClientID} {
		s := dana(x)
		if strings.HasPrefix(p, "/review") {
			s = riley(x)
		}
		if got := x.get(s, p); strings.Contains(got.Body.String(), secret) {
			t.Errorf("%s shows the secret again", p)
		}
	}
}

func TestPublicClientRegistrationHasNoSecret(t *testing.T) {
	x := newHarness(t)
	w := x.post(dana(x), "/apps/new", registration(apps.AuthNone))
	wantStatus(t, w, http.StatusCreated)
	if strings.Contains(w.Body.String(), `data-test="client-secret"`) || !strings.Contains(w.Body.String(), `data-test="no-secret"`) {
		t.Errorf("a public client's credentials page shows a secret")
	}
}

func TestRegistrationShowsEveryProblemAndRegistersNothing(t *testing.T) {
	x := newHarness(t)
	form := registration(apps.AuthNone)
	form.Set("email", "not-an-email")
	form.Set("redirect_uris", "http://evil.example/cb")
	form["scope:patient-access"] = []string{"patient/*.cruds"} // not offered
	w := x.post(dana(x), "/apps/new", form)
	wantStatus(t, w, http.StatusUnprocessableEntity)
	if n := strings.Count(w.Body.String(), `data-test="problem"`); n < 3 {
		t.Errorf("%d problems shown, want each of email, redirect URI and scope:\n%s", n, w.Body.String())
	}
	if !strings.Contains(w.Body.String(), `value="not-an-email"`) {
		t.Errorf("the refused form does not keep what was typed")
	}
	if all, _ := x.store.List(context.Background()); len(all) != 0 {
		t.Errorf("a refused registration stored %d apps", len(all))
	}
}

// SMART App Launch 2.2 §Scopes: system/ scopes act for no user and are a backend service's; patient/ and
// user/ scopes are granted by a user signing in. A user-facing app (a public one even) holding system/*.rs
// would carry organisation-wide access in every member's token.
func TestScopesMustSuitTheAppsLaunch(t *testing.T) {
	x := newHarness(t)
	jwks := `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
	userApp := registration(apps.AuthNone)
	userApp["api"] = []string{"provider-access"}
	userApp["scope:provider-access"] = []string{"openid", "system/*.rs"}
	mixed := registration(apps.AuthNone)
	mixed["api"] = []string{"patient-access", "provider-access"}
	mixed["scope:provider-access"] = []string{"system/*.rs"}
	backend := registration(apps.AuthPrivateKeyJWT)
	backend.Del("redirect_uris")
	backend.Set("jwks", jwks)
	backend["launch"] = []string{"backend"}
	backend["api"] = []string{"provider-access"}
	backend["scope:provider-access"] = []string{"user/*.rs"}
	for name, form := range map[string]url.Values{"system scope on a public standalone app": userApp,
		"system scope beside patient scopes": mixed, "user scope on a backend service": backend} {
		t.Run(name, func(t *testing.T) {
			w := x.post(dana(x), "/apps/new", form)
			wantStatus(t, w, http.StatusUnprocessableEntity)
			if !strings.Contains(w.Body.String(), "backend") {
				t.Errorf("the refusal does not say why:\n%s", w.Body.String())
			}
		})
	}
	if all, _ := x.store.List(context.Background()); len(all) != 0 {
		t.Errorf("refused registrations stored %d apps", len(all))
	}
	// A sandbox app registered before this rule cannot carry it into production.
	x.store.Put(apps.App{ClientID: "old-sys", Name: "Old", State: apps.StateActive, Environment: apps.Sandbox, Tier: "standard",
		TokenAuthMethod: apps.AuthNone, Owner: "portal:sub-dana", LaunchTypes: []string{apps.LaunchStandalone},
		RedirectURIs: []string{"https://app.example/cb"}, Contacts: []apps.Contact{{Email: "dana@labs.example"}},
		RequestedAPIs: []string{"provider-access"}, RequestedScopes: []string{"system/*.rs"},
		ApprovedAPIs: []string{"provider-access"}, ApprovedScopes: []string{"system/*.rs"}})
	wantStatus(t, x.post(dana(x), "/apps/old-sys/production", nil), http.StatusUnprocessableEntity)
	if _, err := x.store.Get(context.Background(), "old-sys-prod"); err == nil {
		t.Errorf("a user-facing app with system/ scopes was sent to review for production")
	}
	// The same scopes on the right launch register.
	okBackend := backend
	okBackend["scope:provider-access"] = []string{"system/*.rs"}
	wantStatus(t, x.post(dana(x), "/apps/new", okBackend), http.StatusCreated)
}

// A Unicode host reads as another to the reviewer who approves the app for production (Cyrillic
// "ехаmple.com" is not example.com); Keycloak fetches a jwks_uri, which must not name the servers' own network.
func TestRegistrationRefusesHomographRedirectsAndInternalKeyURLs(t *testing.T) {
	x := newHarness(t)
	idn := registration(apps.AuthNone)
	idn.Set("redirect_uris", "https://\u0435\u0445\u0430mple.com/cb")
	rlo := registration(apps.AuthNone)
	rlo.Set("name", "Wallet \u202eppa lanruoJ")
	isolate := registration(apps.AuthNone)
	isolate.Set("org", "Labs \u2067x\u2069")
	for name, form := range map[string]url.Values{"Unicode IDN redirect host": idn, "right-to-left override in the name": rlo,
		"bidi isolate in the organisation": isolate} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, x.post(dana(x), "/apps/new", form), http.StatusUnprocessableEntity)
		})
	}
	for _, u := range []string{"https://127.0.0.1/keys", "https://localhost/keys", "https://169.254.169.254/latest", "https://10.1.2.3/k", "https://[::1]/k"} {
		t.Run("jwks_uri "+u, func(t *testing.T) {
			form := registration(apps.AuthPrivateKeyJWT)
			form.Set("jwks_uri", u)
			wantStatus(t, x.post(dana(x), "/apps/new", form), http.StatusUnprocessableEntity)
		})
	}
	if all, _ := x.store.List(context.Background()); len(all) != 0 {
		t.Errorf("refused registrations stored %d apps", len(all))
	}
	ok := registration(apps.AuthPrivateKeyJWT)
	ok.Set("jwks_uri", "https://keys.example/jwks.json")
	ok.Set("redirect_uris", "https://xn--mple-43dab.com/cb")
	wantStatus(t, x.post(dana(x), "/apps/new", ok), http.StatusCreated)
}

func TestStateChangesWithoutAValidCSRFTokenOrFromAnotherOriginAreRefused(t *testing.T) {
	x := newHarness(t)
	s := dana(x)
	form := registration(apps.AuthNone)
	cases := []struct {
		name    string
		csrf    string
		headers map[string]string
	}{
		{"no token", "", map[string]string{"Origin": testPublicURL}},
		{"wrong token", "csrf-someone-else", map[string]string{"Origin": testPublicURL}},
		{"token one character short", s.CSRF[:len(s.CSRF)-1], map[string]string{"Origin": testPublicURL}},
		{"another origin", s.CSRF, map[string]string{"Origin": "https://evil.example"}},
		{"another referer", s.CSRF, map[string]string{"Referer": "https://portal.test.evil.example/apps/new"}},
		{"neither origin nor referer", s.CSRF, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			f.Set("csrf", c.csrf)
			wantStatus(t, x.postRaw(s, "/apps/new", f, c.headers), http.StatusForbidden)
			if all, _ := x.store.List(context.Background()); len(all) != 0 {
				t.Fatalf("refused POST registered an app")
			}
		})
	}
	// The same form from the portal's own page (Referer only) is accepted.
	form.Set("csrf", s.CSRF)
	wantStatus(t, x.postRaw(s, "/apps/new", form, map[string]string{"Referer": testPublicURL + "/apps/new"}), http.StatusCreated)
}

func TestStateChangesAreNeverGETs(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "pend-1", Name: "P", State: apps.StatePending, Owner: "portal:sub-dana"})
	for _, p := range []string{"/review/apps/pend-1/approve", "/apps/pend-1/rotate", "/me/apps/pend-1/revoke", "/auth/logout"} {
		if w := x.get(riley(x), p); w.Code != http.StatusMethodNotAllowed && w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 405 or 404", p, w.Code)
		}
	}
	if a, _ := x.store.Get(context.Background(), "pend-1"); a.State != apps.StatePending {
		t.Errorf("a GET changed the app to %s", a.State)
	}
}

func TestDeveloperCannotReachTheReviewerConsole(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "pend-1", Name: "P", State: apps.StatePending, RequestedAPIs: []string{"patient-access"}, RequestedScopes: []string{"openid"}})
	wantStatus(t, x.get(dana(x), "/review"), http.StatusForbidden)
	wantStatus(t, x.get(dana(x), "/review/apps/pend-1"), http.StatusForbidden)
	wantStatus(t, x.post(dana(x), "/review/apps/pend-1/approve", url.Values{"api": {"patient-access"}, "scope": {"openid"}}), http.StatusForbidden)
	if a, _ := x.store.Get(context.Background(), "pend-1"); a.State != apps.StatePending {
		t.Errorf("a developer's POST approved the app")
	}
	// And a reviewer without the developer role registers nothing.
	wantStatus(t, x.post(riley(x), "/apps/new", registration(apps.AuthNone)), http.StatusForbidden)
}

func TestAnotherDevelopersAppLooksLikeNoApp(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "theirs", Name: "Theirs", State: apps.StateActive, Environment: apps.Sandbox,
		TokenAuthMethod: apps.AuthClientSecretBasic, Owner: "portal:sub-someone"})
	foreign, none := x.get(dana(x), "/apps/theirs"), x.get(dana(x), "/apps/nothing-here")
	wantStatus(t, foreign, http.StatusNotFound)
	wantStatus(t, none, http.StatusNotFound)
	if foreign.Body.String() != none.Body.String() {
		t.Errorf("another developer's app answers differently from no app: an existence oracle")
	}
	wantStatus(t, x.post(dana(x), "/apps/theirs/rotate", nil), http.StatusNotFound)
	wantStatus(t, x.post(dana(x), "/apps/theirs/production", nil), http.StatusNotFound)
	if len(x.idp.rotated) != 0 {
		t.Errorf("rotated another developer's secret")
	}
	if strings.Contains(x.get(dana(x), "/apps").Body.String(), "theirs") {
		t.Errorf("my apps lists another developer's app")
	}
}

func TestRotatedSecretIsShownOnceAndNotCached(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "mine", Name: "Mine", State: apps.StateActive, Environment: apps.Sandbox,
		TokenAuthMethod: apps.AuthClientSecretBasic, Owner: "portal:sub-dana"})
	w := x.post(dana(x), "/apps/mine/rotate", nil)
	wantStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), "rotated-secret-mine") || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("rotation page: secret shown %v, Cache-Control %q", strings.Contains(w.Body.String(), "rotated-secret-mine"), w.Header().Get("Cache-Control"))
	}
	if strings.Contains(x.get(dana(x), "/apps/mine").Body.String(), "rotated-secret-mine") {
		t.Errorf("the app's page shows the rotated secret")
	}
	x.idp.fail = true
	wantStatus(t, x.post(dana(x), "/apps/mine/rotate", nil), http.StatusBadGateway)
}

func TestRequestingProductionRegistersAPendingTwin(t *testing.T) {
	x := newHarness(t)
	wantStatus(t, x.post(dana(x), "/apps/new", registration(apps.AuthClientSecretBasic)), http.StatusCreated)
	sb := onlyApp(t, x.store)
	w := x.post(dana(x), "/apps/"+sb.ClientID+"/production", nil)
	wantStatus(t, w, http.StatusCreated)
	p, err := x.store.Get(context.Background(), sb.ClientID+"-prod")
	if err != nil {
		t.Fatal(err)
	}
	if p.State != apps.StatePending || p.Environment != apps.Production || p.Owner != sb.Owner || len(p.ApprovedScopes) != 0 ||
		!slices.Equal(p.RequestedScopes, sb.RequestedScopes) {
		t.Errorf("production twin %+v", p)
	}
	if !strings.Contains(w.Body.String(), `data-test="client-secret"`) {
		t.Errorf("a confidential production app's secret is not shown at its registration")
	}
	wantStatus(t, x.post(dana(x), "/apps/"+sb.ClientID+"/production", nil), http.StatusConflict)
}

func TestReviewerSeesPendingFirstAndApprovesNarrowedWithReason(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "a-active", Name: "Active", State: apps.StateActive})
	x.store.Put(apps.App{ClientID: "z-pending", Name: "Pending", State: apps.StatePending, Environment: apps.Production,
		RequestedAPIs: []string{"patient-access"}, RequestedScopes: []string{"openid", "patient/Patient.rs", "patient/ExplanationOfBenefit.rs"}})
	list := x.get(riley(x), "/review").Body.String()
	if strings.Index(list, "review-z-pending") > strings.Index(list, "review-a-active") {
		t.Errorf("pending app not listed first")
	}
	page := x.get(riley(x), "/review/apps/z-pending")
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.Body.String(), `data-test="do-approve"`) || strings.Contains(page.Body.String(), `data-test="do-reactivate"`) {
		t.Errorf("a pending app's actions are not just approve (and deactivate)")
	}
	w := x.post(riley(x), "/review/apps/z-pending/approve", url.Values{"api": {"patient-access"},
		"scope": {"openid", "patient/Patient.rs", "system/*.cruds"}, "reason": {"EOB not needed"}})
	wantStatus(t, w, http.StatusSeeOther)
	a, _ := x.store.Get(context.Background(), "z-pending")
	if a.State != apps.StateApproved || !slices.Equal(a.ApprovedScopes, []string{"openid", "patient/Patient.rs"}) {
		t.Errorf("after approval: %s %v, want approved with the two ticked requested scopes", a.State, a.ApprovedScopes)
	}
	hist, _ := x.store.History(context.Background(), "z-pending")
	last := hist[len(hist)-1]
	if last.Actor != "reviewer:riley" || last.Reason != "EOB not needed" {
		t.Errorf("last event %+v", last)
	}
	trail := x.get(riley(x), "/review/apps/z-pending").Body.String()
	if !strings.Contains(trail, "reviewer:riley") || !strings.Contains(trail, "approved_scopes") {
		t.Errorf("the audit trail does not show who approved and what changed:\n%s", trail)
	}
}

// Review is a second person's judgement: a user holding both roles cannot grant production access (approve,
// activate, reactivate) to an app they own; taking access away (suspend, deactivate) stays possible.
func TestReviewerCannotGrantAccessToTheirOwnApp(t *testing.T) {
	x := newHarness(t)
	both := x.user("sam", config.DefaultDeveloperRole, config.DefaultReviewerRole)
	wantStatus(t, x.post(both, "/apps/new", registration(apps.AuthNone)), http.StatusCreated)
	sb := onlyApp(t, x.store)
	wantStatus(t, x.post(both, "/apps/"+sb.ClientID+"/production", nil), http.StatusCreated)
	prod := sb.ClientID + "-prod"
	page := x.get(both, "/review/apps/"+prod)
	wantStatus(t, page, http.StatusOK)
	if strings.Contains(page.Body.String(), `data-test="do-approve"`) {
		t.Errorf("the console offers its owner the approval of their own app")
	}
	w := x.post(both, "/review/apps/"+prod+"/approve", url.Values{"api": {"patient-access"}, "scope": {"openid", "patient/Patient.rs"}})
	wantStatus(t, w, http.StatusForbidden)
	if a, _ := x.store.Get(context.Background(), prod); a.State != apps.StatePending {
		t.Fatalf("its owner approved their own app: %s", a.State)
	}
	// Another reviewer approves and activates it; its owner still cannot reactivate it once suspended.
	wantStatus(t, x.post(riley(x), "/review/apps/"+prod+"/approve", url.Values{"api": {"patient-access"}, "scope": {"openid"}}), http.StatusSeeOther)
	wantStatus(t, x.post(both, "/review/apps/"+prod+"/activate", nil), http.StatusForbidden)
	wantStatus(t, x.post(riley(x), "/review/apps/"+prod+"/activate", nil), http.StatusSeeOther)
	wantStatus(t, x.post(both, "/review/apps/"+prod+"/suspend", url.Values{"reason": {"my own key leaked"}}), http.StatusSeeOther)
	wantStatus(t, x.post(both, "/review/apps/"+prod+"/reactivate", nil), http.StatusForbidden)
	if a, _ := x.store.Get(context.Background(), prod); a.State != apps.StateSuspended {
		t.Errorf("state %s, want suspended", a.State)
	}
}

func TestSuspendAndDeactivateNeedAReason(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "act", Name: "A", State: apps.StateActive})
	for _, act := range []string{"suspend", "deactivate"} {
		wantStatus(t, x.post(riley(x), "/review/apps/act/"+act, url.Values{"reason": {"  "}}), http.StatusBadRequest)
	}
	wantStatus(t, x.post(riley(x), "/review/apps/act/suspend", url.Values{"reason": {"abuse report"}}), http.StatusSeeOther)
	wantStatus(t, x.post(riley(x), "/review/apps/act/approve", url.Values{"api": {"x"}}), http.StatusConflict)
	wantStatus(t, x.post(riley(x), "/review/apps/act/reactivate", nil), http.StatusSeeOther)
	wantStatus(t, x.post(riley(x), "/review/apps/act/explode", nil), http.StatusNotFound)
	if a, _ := x.store.Get(context.Background(), "act"); a.State != apps.StateActive {
		t.Errorf("state %s after suspend and reactivate", a.State)
	}
}

func TestMemberRevokesAnAppAtTheGatewayThenAtTheIdentityProvider(t *testing.T) {
	x := newHarness(t)
	x.store.Put(apps.App{ClientID: "patient-app", Name: "My Health", DeveloperOrg: "Acme", State: apps.StateActive})
	m := x.user("member01")
	x.idp.grants[m.Subject] = []string{"patient-app", x.op.clientID}
	page := x.get(m, "/me/apps").Body.String()
	if !strings.Contains(page, "My Health") || !strings.Contains(page, `data-test="revoke-patient-app"`) {
		t.Fatalf("member page does not list the granted app:\n%s", page)
	}
	if strings.Contains(page, x.op.clientID) {
		t.Errorf("the member page lists the portal itself as a connected app")
	}
	wantStatus(t, x.post(m, "/me/apps/other-app/revoke", nil), http.StatusNotFound)
	wantStatus(t, x.post(m, "/me/apps/"+x.op.clientID+"/revoke", nil), http.StatusNotFound)
	w := x.post(m, "/me/apps/patient-app/revoke", nil)
	wantStatus(t, w, http.StatusOK)
	if !slices.Equal(x.revoker.calls, []string{"sub-member01/patient-app/member:sub-member01"}) || !slices.Equal(x.idp.revoked, []string{"sub-member01/patient-app"}) {
		t.Errorf("gateway revocations %v, identity provider %v", x.revoker.calls, x.idp.revoked)
	}
	if !strings.Contains(w.Body.String(), `data-test="revoked"`) || strings.Contains(w.Body.String(), `data-test="grant-patient-app"`) {
		t.Errorf("no confirmation, or the app is still listed")
	}
	// Another member cannot revoke member01's grant.
	if w := x.post(x.user("member02"), "/me/apps/patient-app/revoke", nil); w.Code != http.StatusNotFound {
		t.Errorf("another member's revoke: %d", w.Code)
	}
}

func TestAnonymousUsersAreSentToSignInAndRefusedOnPOST(t *testing.T) {
	x := newHarness(t)
	w := x.get(nil, "/apps?x=1")
	wantStatus(t, w, http.StatusFound)
	if loc := w.Header().Get("Location"); loc != "/auth/login?return=%2Fapps%3Fx%3D1" {
		t.Errorf("Location %q", loc)
	}
	wantStatus(t, x.postRaw(nil, "/apps/new", registration(apps.AuthNone), map[string]string{"Origin": testPublicURL}), http.StatusUnauthorized)
}

func TestTamperedExpiredOrForeignSessionCookiesAreIgnored(t *testing.T) {
	x := newHarness(t)
	good := x.cookie(dana(x)).Value
	expired := dana(x)
	expired.Expires = time.Now().Add(-time.Second)
	other, _ := newSealer(bytes.Repeat([]byte{8}, 32))
	foreign, _ := other.seal(sessionCookie, dana(x))
	login, _ := x.seal.seal(loginCookie, dana(x)) // sealed for the other cookie
	tampered := good[:len(good)-2] + "AA"         // two characters changed, whatever they were ("AB" if they were "AA")
	if tampered == good {
		tampered = good[:len(good)-2] + "AB"
	}
	for name, v := range map[string]string{"tampered": tampered, "expired": x.cookie(expired).Value,
		"another key": foreign, "the login cookie's value": login, "garbage": "%%%"} {
		r := httptest.NewRequest(http.MethodGet, testPublicURL+"/apps", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		w := httptest.NewRecorder()
		x.h.ServeHTTP(w, r)
		if w.Code != http.StatusFound {
			t.Errorf("%s cookie: %d, want a redirect to sign in", name, w.Code)
		}
	}
}

func TestPagesCarryTheSecurityHeaders(t *testing.T) {
	x := newHarness(t)
	w := x.get(nil, "/")
	wantStatus(t, w, http.StatusOK)
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(w.Body.String(), "<script") {
		t.Errorf("a page carries a script")
	}
}

func TestNoticeTextIsEscaped(t *testing.T) {
	x := newHarness(t)
	body := x.get(nil, "/notices").Body.String()
	if strings.Contains(body, "<retires>") || !strings.Contains(body, "&lt;retires&gt;") {
		t.Errorf("a notice title is not escaped")
	}
}

func TestSignInWithTheProviderMakesASessionWithTheAccessTokensRoles(t *testing.T) {
	x := newHarness(t)
	jar := map[string]*http.Cookie{}
	step := func(method, target string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, nil)
		for _, c := range jar {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		x.h.ServeHTTP(w, r)
		for _, c := range w.Result().Cookies() {
			jar[c.Name] = c
			if c.MaxAge < 0 {
				delete(jar, c.Name)
			}
		}
		return w
	}
	w := step(http.MethodGet, testPublicURL+"/auth/login?return=/apps")
	wantStatus(t, w, http.StatusFound)
	lc := jar[loginCookie]
	if lc == nil || !lc.Secure || !lc.HttpOnly || lc.SameSite != http.SameSiteLaxMode || lc.Path != "/" {
		t.Fatalf("login cookie %+v", lc)
	}
	code, state := x.op.authorize(t, w.Header().Get("Location"), "sub-dana", "dev-dana", config.DefaultDeveloperRole, "offline_access")
	w = step(http.MethodGet, testPublicURL+"/auth/callback?"+url.Values{"code": {code}, "state": {state}}.Encode())
	wantStatus(t, w, http.StatusFound)
	if w.Header().Get("Location") != "/apps" {
		t.Errorf("after sign-in to %q, want /apps", w.Header().Get("Location"))
	}
	sc := jar[sessionCookie]
	if sc == nil || !sc.Secure || !sc.HttpOnly || sc.MaxAge != 3600 {
		t.Fatalf("session cookie %+v", sc)
	}
	var s session
	if err := x.seal.open(sessionCookie, sc.Value, &s); err != nil {
		t.Fatal(err)
	}
	if s.Username != "dev-dana" || !slices.Equal(s.Roles, []string{config.DefaultDeveloperRole}) || s.CSRF == "" || s.IDToken == "" {
		t.Errorf("session %+v", s)
	}
	wantStatus(t, step(http.MethodGet, testPublicURL+"/apps"), http.StatusOK)
	// The code is spent and the login cookie gone: replaying the callback fails.
	wantStatus(t, step(http.MethodGet, testPublicURL+"/auth/callback?"+url.Values{"code": {code}, "state": {state}}.Encode()), http.StatusBadRequest)
}

func TestSignInIsRefusedForAWrongStateOrAnAccessTokenOfAnotherClient(t *testing.T) {
	x := newHarness(t)
	begin := func() (*http.Cookie, string) {
		w := x.get(nil, "/auth/login")
		var lc *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == loginCookie {
				lc = c
			}
		}
		return lc, w.Header().Get("Location")
	}
	callback := func(lc *http.Cookie, q url.Values) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, testPublicURL+"/auth/callback?"+q.Encode(), nil)
		r.AddCookie(lc)
		w := httptest.NewRecorder()
		x.h.ServeHTTP(w, r)
		return w
	}
	lc, loc := begin()
	code, _ := x.op.authorize(t, loc, "sub-dana", "dev-dana", config.DefaultReviewerRole)
	w := callback(lc, url.Values{"code": {code}, "state": {"forged"}})
	wantStatus(t, w, http.StatusBadRequest)

	lc, loc = begin()
	x.op.setAZP("some-other-app")
	code, state := x.op.authorize(t, loc, "sub-dana", "dev-dana", config.DefaultReviewerRole)
	w = callback(lc, url.Values{"code": {code}, "state": {state}})
	wantStatus(t, w, http.StatusForbidden)
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie && c.MaxAge > 0 {
			t.Errorf("a session was made from another client's access token")
		}
	}
}

func TestReturnPathsStayOnThePortal(t *testing.T) {
	for in, want := range map[string]string{"/apps": "/apps", "//evil.example/x": "/", "https://evil.example": "/", "/\\evil.example": "/", "": "/", "apps": "/"} {
		if got := safeReturn(in); got != want {
			t.Errorf("safeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDocsPageIsBuiltFromTheCapabilityStatementAndDiscovery(t *testing.T) {
	x := newHarness(t)
	w := x.get(nil, "/docs/patient-access")
	wantStatus(t, w, http.StatusOK)
	for _, want := range []string{"https://api.test/patient-access", `data-test="resource-ExplanationOfBenefit"`, "_id (token)", "search-type",
		"$everything", "https://idp.test/token", "launch-standalone", "EOB v1"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("docs page lacks %q", want)
		}
	}
	wantStatus(t, x.get(nil, "/docs/no-such-api"), http.StatusNotFound)
}

func TestAtomFeedIsAValidFeedOfEveryNotice(t *testing.T) {
	x := newHarness(t)
	w := x.get(nil, "/notices.atom")
	wantStatus(t, w, http.StatusOK)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/atom+xml") {
		t.Errorf("Content-Type %q", ct)
	}
	var feed struct {
		XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
		ID      string   `xml:"id"`
		Updated string   `xml:"updated"`
		Entries []struct {
			ID      string `xml:"id"`
			Title   string `xml:"title"`
			Updated string `xml:"updated"`
			Summary string `xml:"summary"`
			Link    struct {
				Href string `xml:"href,attr"`
			} `xml:"link"`
		} `xml:"entry"`
	}
	b, _ := io.ReadAll(w.Body)
	if err := xml.Unmarshal(b, &feed); err != nil {
		t.Fatal(err)
	}
	if feed.ID == "" || feed.Updated != "2026-12-01T00:00:00Z" || len(feed.Entries) != 2 {
		t.Fatalf("feed %+v", feed)
	}
	e := feed.Entries[1]
	if e.ID != testPublicURL+"/notices#eob-v1" || e.Title != "[patient-access] EOB v1 <retires>" || e.Updated != "2026-11-01T00:00:00Z" ||
		e.Summary != "Use v2." || e.Link.Href != testPublicURL+"/status/patient-access#notice-eob-v1" {
		t.Errorf("entry %+v", e)
	}
}

func TestSigningOutClearsTheSessionAndNeedsItsCSRFToken(t *testing.T) {
	x := newHarness(t)
	wantStatus(t, x.post(dana(x), "/auth/logout", url.Values{"csrf": {"wrong"}}), http.StatusForbidden)
	w := x.post(dana(x), "/auth/logout", nil)
	wantStatus(t, w, http.StatusSeeOther)
	if loc := w.Header().Get("Location"); !strings.HasPrefix(loc, x.op.srv.URL+"/logout?") || !strings.Contains(loc, "post_logout_redirect_uri=https%3A%2F%2Fportal.test%2F") {
		t.Errorf("signed out to %q, want the issuer's end-session endpoint returning to the portal", loc)
	}
	cleared := false
	for _, c := range w.Result().Cookies() {
		cleared = cleared || (c.Name == sessionCookie && c.MaxAge < 0)
	}
	if !cleared {
		t.Error("the session cookie was not cleared")
	}
	wantStatus(t, x.postRaw(nil, "/auth/logout", nil, map[string]string{"Origin": testPublicURL}), http.StatusSeeOther)
	wantStatus(t, x.postRaw(nil, "/auth/logout", nil, map[string]string{"Origin": "https://evil.example"}), http.StatusForbidden)
}

func TestStylesheetIsServedAndNothingElseUnderStatic(t *testing.T) {
	x := newHarness(t)
	w := x.get(nil, "/static/portal.css")
	wantStatus(t, w, http.StatusOK)
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Errorf("Content-Type %q", w.Header().Get("Content-Type"))
	}
	wantStatus(t, x.get(nil, "/static/"), http.StatusNotFound)
}

package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/adapters/registry/admin"
	"github.com/fhirwall/fhirwall/adapters/registry/admin/admintest"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var offered = map[string][]string{
	"patient-access":  {"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs", "patient/*.read"},
	"provider-access": {"system/*.rs", "system/*.read"},
}

// publicJWK is an EC P-256 key; privateJWK is the same with its private part, which must never be echoed.
const publicJWK = `{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`

func backendApp(id string, env apps.Environment) map[string]any {
	return map[string]any{
		"client_id": id, "name": "Provider org backend", "developer_org": "Org A",
		"contacts":                   []map[string]string{{"email": "dev@example.org"}},
		"launch_types":               []string{"backend"},
		"token_endpoint_auth_method": "private_key_jwt",
		"jwks":                       json.RawMessage(`{"keys":[` + publicJWK + `]}`),
		"requested_apis":             []string{"provider-access"},
		"requested_scopes":           []string{"system/*.rs"},
		"environment":                env, "tier": "backend", "org": "Organization/org-a",
		"reviewer": "alice",
	}
}

func patientApp(id string, env apps.Environment) map[string]any {
	return map[string]any{
		"client_id": id, "name": "Member app", "developer_org": "Acme",
		"contacts":                   []map[string]string{{"email": "dev@example.org"}},
		"redirect_uris":              []string{"https://app.example.org/callback"},
		"launch_types":               []string{"standalone"},
		"token_endpoint_auth_method": "none",
		"requested_apis":             []string{"patient-access"},
		"requested_scopes":           []string{"openid", "launch/patient", "patient/*.rs"},
		"environment":                env, "tier": "standard",
		"reviewer": "alice",
	}
}

type client struct {
	t     *testing.T
	url   string
	store *admintest.FakeStore
}

func newServer(t *testing.T) client {
	t.Helper()
	store := admintest.NewFakeStore()
	h, err := admin.New(store, offered, []byte(testToken+"\n"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return client{t: t, url: srv.URL, store: store}
}

// do sends body (a string as is, anything else as JSON) with the admin token and returns status and body.
func (c client) do(method, path string, body any) (int, []byte) {
	return c.doAuth(method, path, body, "Bearer "+testToken)
}

func (c client) doAuth(method, path string, body any, auth string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return resp.StatusCode, out
}

func (c client) app(method, path string, body any, want int) apps.App {
	c.t.Helper()
	status, raw := c.do(method, path, body)
	if status != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, status, raw, want)
	}
	var a apps.App
	if err := json.Unmarshal(raw, &a); err != nil {
		c.t.Fatal(err)
	}
	return a
}

func (c client) refused(method, path string, body any, want int, wantMsg string) {
	c.t.Helper()
	status, raw := c.do(method, path, body)
	var e admin.Error
	if status != want || json.Unmarshal(raw, &e) != nil || !strings.Contains(e.Error, wantMsg) {
		c.t.Fatalf("%s %s: %d %s, want %d with %q", method, path, status, raw, want, wantMsg)
	}
}

func TestNewRefusesAShortTokenAndMissingDependencies(t *testing.T) {
	if _, err := admin.New(admintest.NewFakeStore(), offered, []byte("short"), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "fewer than 32") {
		t.Fatalf("short token: %v", err)
	}
	if _, err := admin.New(nil, offered, []byte(testToken), nil); err == nil || !strings.Contains(err.Error(), "store") || !strings.Contains(err.Error(), "logger") {
		t.Fatalf("missing store and logger: %v", err)
	}
}

func TestEveryRouteRefusesWithoutTheAdminToken(t *testing.T) {
	c := newServer(t)
	c.app(http.MethodPost, "/admin/apps/", patientApp("member-app", apps.Sandbox), http.StatusCreated)
	routes := []struct{ method, path string }{
		{"GET", "/admin/apps/"}, {"POST", "/admin/apps/"}, {"GET", "/admin/apps/member-app"}, {"PUT", "/admin/apps/member-app"},
		{"GET", "/admin/apps/member-app/history"}, {"POST", "/admin/apps/member-app/approve"}, {"POST", "/admin/apps/member-app/activate"},
		{"POST", "/admin/apps/member-app/suspend"}, {"POST", "/admin/apps/member-app/reactivate"}, {"POST", "/admin/apps/member-app/deactivate"},
	}
	for _, r := range routes {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + testToken, "Bearer " + testToken[:40]} {
			req, _ := http.NewRequest(r.method, c.url+r.path, strings.NewReader(`{"reviewer":"mallory","reason":"x"}`))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %q: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", r.method, r.path, auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	if a := c.app("GET", "/admin/apps/member-app", nil, http.StatusOK); a.State != apps.StateActive {
		t.Fatalf("an unauthorised deactivate changed the app: %s", a.State)
	}
}

func TestSandboxAppIsActiveAtOnceWithThreeEventsByTheReviewer(t *testing.T) {
	c := newServer(t)
	a := c.app("POST", "/admin/apps/", patientApp("member-app", apps.Sandbox), http.StatusCreated)
	if a.State != apps.StateActive || !slices.Equal(a.ApprovedScopes, []string{"openid", "launch/patient", "patient/*.rs"}) {
		t.Fatalf("sandbox app: state %s, approved scopes %v; want active with every requested scope", a.State, a.ApprovedScopes)
	}
	status, raw := c.do("GET", "/admin/apps/member-app/history", nil)
	var evs []apps.Event
	if status != http.StatusOK || json.Unmarshal(raw, &evs) != nil {
		t.Fatalf("history: %d %s", status, raw)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Action+" by "+e.Actor)
	}
	if want := []string{"register by admin:alice", "approve by admin:alice", "activate by admin:alice"}; !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
}

func TestProductionAppWaitsPendingUntilApprovedAndActivated(t *testing.T) {
	c := newServer(t)
	a := c.app("POST", "/admin/apps/", patientApp("member-app", apps.Production), http.StatusCreated)
	if a.State != apps.StatePending {
		t.Fatalf("production app registered %s, want pending", a.State)
	}
	c.refused("POST", "/admin/apps/member-app/activate", map[string]string{"reviewer": "bob"}, http.StatusConflict, "approve it")
	a = c.app("POST", "/admin/apps/member-app/approve", map[string]any{"reviewer": "bob", "reason": "reviewed the privacy policy",
		"scopes": []string{"openid", "patient/Observation.rs"}}, http.StatusOK)
	if a.State != apps.StateApproved || !slices.Equal(a.ApprovedScopes, []string{"openid", "patient/Observation.rs"}) || !slices.Equal(a.ApprovedAPIs, []string{"patient-access"}) {
		t.Fatalf("approved: %s, apis %v, scopes %v", a.State, a.ApprovedAPIs, a.ApprovedScopes)
	}
	a = c.app("POST", "/admin/apps/member-app/activate", map[string]string{"reviewer": "bob"}, http.StatusOK)
	if a.State != apps.StateActive {
		t.Fatalf("activated: %s", a.State)
	}
	evs, _ := c.store.History(context.Background(), "member-app")
	if last := evs[len(evs)-2]; last.Actor != "admin:bob" || last.Reason != "reviewed the privacy policy" {
		t.Fatalf("approval event: actor %q reason %q", last.Actor, last.Reason)
	}
}

func TestApprovalNeverWidensBeyondWhatWasRequested(t *testing.T) {
	c := newServer(t)
	c.app("POST", "/admin/apps/", patientApp("member-app", apps.Production), http.StatusCreated)
	c.refused("POST", "/admin/apps/member-app/approve", map[string]any{"reviewer": "bob", "scopes": []string{"patient/*.cruds"}}, http.StatusUnprocessableEntity, "only narrow")
	c.refused("POST", "/admin/apps/member-app/approve", map[string]any{"reviewer": "bob", "apis": []string{"provider-access"}}, http.StatusUnprocessableEntity, "only narrow")
	if a := c.app("GET", "/admin/apps/member-app", nil, http.StatusOK); a.State != apps.StatePending {
		t.Fatalf("a refused approval changed the app: %s", a.State)
	}
}

func TestSuspendReactivateDeactivateFollowTheLifecycle(t *testing.T) {
	c := newServer(t)
	c.app("POST", "/admin/apps/", backendApp("org-a-backend", apps.Sandbox), http.StatusCreated)
	c.refused("POST", "/admin/apps/org-a-backend/suspend", map[string]string{"reviewer": "bob"}, http.StatusUnprocessableEntity, "reason is required")
	c.refused("POST", "/admin/apps/org-a-backend/reactivate", map[string]string{"reviewer": "bob"}, http.StatusConflict, "is active")
	if a := c.app("POST", "/admin/apps/org-a-backend/suspend", map[string]string{"reviewer": "bob", "reason": "key leaked"}, http.StatusOK); a.State != apps.StateSuspended {
		t.Fatalf("suspend: %s", a.State)
	}
	c.refused("POST", "/admin/apps/org-a-backend/activate", map[string]string{"reviewer": "bob"}, http.StatusConflict, "reactivated")
	if a := c.app("POST", "/admin/apps/org-a-backend/reactivate", map[string]string{"reviewer": "bob"}, http.StatusOK); a.State != apps.StateActive {
		t.Fatalf("reactivate: %s", a.State)
	}
	c.refused("POST", "/admin/apps/org-a-backend/deactivate", map[string]string{"reviewer": "bob"}, http.StatusUnprocessableEntity, "reason is required")
	if a := c.app("POST", "/admin/apps/org-a-backend/deactivate", map[string]string{"reviewer": "bob", "reason": "contract ended"}, http.StatusOK); a.State != apps.StateDeactivated {
		t.Fatalf("deactivate: %s", a.State)
	}
	c.refused("POST", "/admin/apps/org-a-backend/reactivate", map[string]string{"reviewer": "bob"}, http.StatusConflict, "final")
	c.refused("POST", "/admin/apps/org-a-backend/retire", map[string]string{"reviewer": "bob"}, http.StatusNotFound, "no such action")
}

func TestRegistrationRefusals(t *testing.T) {
	c := newServer(t)
	c.app("POST", "/admin/apps/", patientApp("member-app", apps.Sandbox), http.StatusCreated)
	with := func(base map[string]any, k string, v any) map[string]any {
		out := map[string]any{}
		for kk, vv := range base {
			out[kk] = vv
		}
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	p := patientApp("other-app", apps.Production)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"not JSON", "{", http.StatusBadRequest, "not a registration"},
		{"an unknown field", with(p, "client_secret", "s3cret"), http.StatusBadRequest, "unknown field"},
		{"two JSON values", `{"reviewer":"a"} {}`, http.StatusBadRequest, "more than one"},
		{"too large", `{"name":"` + strings.Repeat("x", admin.MaxBody) + `"}`, http.StatusBadRequest, "larger than"},
		{"no reviewer", with(p, "reviewer", nil), http.StatusBadRequest, "reviewer is required"},
		{"a state of its own", with(p, "state", "active"), http.StatusUnprocessableEntity, "starts pending"},
		{"approved scopes of its own", with(p, "approved_scopes", []string{"patient/*.rs"}), http.StatusUnprocessableEntity, "reviewer's to set"},
		{"a scope no API offers", with(p, "requested_scopes", []string{"user/*.cruds"}), http.StatusUnprocessableEntity, "user/*.cruds"},
		{"an http redirect", with(p, "redirect_uris", []string{"http://app.example.org/cb"}), http.StatusUnprocessableEntity, "redirect_uris"},
		{"a taken client id", with(p, "client_id", "member-app"), http.StatusConflict, "already registered"},
	} {
		t.Run(tc.name, func(t *testing.T) { c.refused("POST", "/admin/apps/", tc.body, tc.status, tc.msg) })
	}
	c.refused("GET", "/admin/apps/nobody", nil, http.StatusNotFound, "not found")
	c.refused("GET", "/admin/apps/nobody/history", nil, http.StatusNotFound, "not found")
	c.refused("POST", "/admin/apps/nobody/approve", map[string]string{"reviewer": "bob"}, http.StatusNotFound, "not found")
	c.refused("DELETE", "/admin/apps/member-app", nil, http.StatusNotFound, "no such admin resource")
}

func TestRegistrationReportsEveryPolicyProblemAtOnce(t *testing.T) {
	c := newServer(t)
	p := patientApp("other-app", apps.Production)
	p["requested_scopes"] = []string{"user/*.cruds"}
	p["redirect_uris"] = []string{"http://app.example.org/cb"}
	status, raw := c.do("POST", "/admin/apps/", p)
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "user/*.cruds") || !strings.Contains(string(raw), "redirect_uris") {
		t.Fatalf("%d %s: want 422 naming both problems", status, raw)
	}
}

func TestUpdateNeedsTheVersionReadAndNeverWidensTheApproval(t *testing.T) {
	c := newServer(t)
	a := c.app("POST", "/admin/apps/", patientApp("member-app", apps.Production), http.StatusCreated)
	a = c.app("POST", "/admin/apps/member-app/approve", map[string]any{"reviewer": "bob", "scopes": []string{"openid"}}, http.StatusOK)
	body := func(a apps.App) map[string]any {
		raw, _ := json.Marshal(a)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		m["reviewer"] = "carol"
		return m
	}
	stale := body(a)
	stale["version"] = a.Version - 1
	c.refused("PUT", "/admin/apps/member-app", stale, http.StatusConflict, "changed since")
	noVersion := body(a)
	delete(noVersion, "version")
	c.refused("PUT", "/admin/apps/member-app", noVersion, http.StatusUnprocessableEntity, "version is required")
	toProd := body(a)
	toProd["environment"] = "sandbox"
	c.refused("PUT", "/admin/apps/member-app", toProd, http.StatusUnprocessableEntity, "environment")
	renamed := body(a)
	renamed["client_id"] = "another"
	c.refused("PUT", "/admin/apps/member-app", renamed, http.StatusUnprocessableEntity, "never changes")

	// Sending a wider approval and another state changes neither; a new name is kept.
	sneaky := body(a)
	sneaky["name"] = "Member app 2"
	sneaky["state"] = "active"
	sneaky["approved_scopes"] = []string{"openid", "launch/patient", "patient/*.rs"}
	u := c.app("PUT", "/admin/apps/member-app", sneaky, http.StatusOK)
	if u.Name != "Member app 2" || u.State != apps.StateApproved || !slices.Equal(u.ApprovedScopes, []string{"openid"}) || u.Version != a.Version+1 {
		t.Fatalf("updated: name %q state %s approved %v version %d", u.Name, u.State, u.ApprovedScopes, u.Version)
	}
	// Requesting less takes it out of the approval too.
	less := body(u)
	less["requested_scopes"] = []string{"launch/patient", "patient/*.rs"}
	if u = c.app("PUT", "/admin/apps/member-app", less, http.StatusOK); len(u.ApprovedScopes) != 0 {
		t.Fatalf("approved scopes %v after openid was no longer requested", u.ApprovedScopes)
	}
}

func TestJWKSPrivatePartsAreNeverEchoed(t *testing.T) {
	c := newServer(t)
	c.app("POST", "/admin/apps/", backendApp("org-a-backend", apps.Production), http.StatusCreated)
	// Stored with a private part (as a store bypassing the policy might hold it): never shown.
	a, _ := c.store.Get(context.Background(), "org-a-backend")
	a.JWKS = json.RawMessage(`{"keys":[` + strings.TrimSuffix(publicJWK, "}") + `,"d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}`)
	c.store.Put(a)
	for _, path := range []string{"/admin/apps/", "/admin/apps/org-a-backend", "/admin/apps/org-a-backend/history"} {
		status, raw := c.do("GET", path, nil)
		if status != http.StatusOK || strings.Contains(string(raw), "jpsQnnGQ") || !strings.Contains(string(raw), `"kid":"k1"`) {
			t.Errorf("GET %s: %d %s; want the public key without d", path, status, raw)
		}
	}
}

func TestListIsEveryAppByClientID(t *testing.T) {
	c := newServer(t)
	c.app("POST", "/admin/apps/", patientApp("zeta-app", apps.Sandbox), http.StatusCreated)
	c.app("POST", "/admin/apps/", patientApp("alpha-app", apps.Production), http.StatusCreated)
	status, raw := c.do("GET", "/admin/apps/", nil)
	var list []apps.App
	if status != http.StatusOK || json.Unmarshal(raw, &list) != nil || len(list) != 2 || list[0].ClientID != "alpha-app" || list[1].ClientID != "zeta-app" {
		t.Fatalf("list: %d %s", status, raw)
	}
}

func TestAppAndListShowWhereItsIdentityProviderClientStands(t *testing.T) {
	c := newServer(t)
	c.app("POST", "/admin/apps/", patientApp("synced-app", apps.Sandbox), http.StatusCreated)
	for _, path := range []string{"/admin/apps/synced-app", "/admin/apps/"} {
		status, raw := c.do("GET", path, nil)
		if status != http.StatusOK || !bytes.Contains(raw, []byte(`"idp_sync":{"pending":false}`)) {
			t.Errorf("GET %s: %d %s, want idp_sync", path, status, raw)
		}
	}
}

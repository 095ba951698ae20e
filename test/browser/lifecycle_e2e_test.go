//go:build e2e

package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackadmin"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// The stack's portal (config/fhirwall.yaml portal.listen) and the PostgreSQL that holds its registry.
const (
	stackPortal   = "https://127.0.0.1:9443"
	stackPostgres = "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
	// appScopes are what the lifecycle test's app registers and asks for: a member's standalone launch with
	// refresh (fhirclient's refresh() wants offline_access).
	appScopes = "openid fhirUser launch/patient offline_access patient/*.rs"
)

// refusalWatch polls one URL with one token, every 50 ms, until the first answer that is not 200: when the
// gateway started refusing, and with what. Under the standard tier's per-user limit (40/s) in each mode.
type refusalWatch struct {
	name   string
	mu     sync.Mutex
	at     time.Time
	status int
	err    error
	stop   chan struct{}
	done   chan struct{}
}

func watchRefusal(t *testing.T, name, target, token string) *refusalWatch {
	t.Helper()
	client, err := stackenv.Client(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	w := &refusalWatch{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	get := func() (int, error) {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if status, err := get(); status != http.StatusOK {
		t.Fatalf("%s: %s answers %d %v before anything was revoked", name, target, status, err)
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			status, err := get()
			if err == nil && status == http.StatusOK {
				continue
			}
			w.mu.Lock()
			w.at, w.status, w.err = time.Now(), status, err
			w.mu.Unlock()
			return
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *refusalWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// refusedWithin waits up to limit+5 s for the first refusal and checks it came at most limit after since,
// with status want.
func (w *refusalWatch) refusedWithin(t *testing.T, since time.Time, limit time.Duration, want int) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(limit + 5*time.Second):
		w.end()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.at.IsZero():
		t.Errorf("%s: still answered 200 %s after the change", w.name, time.Since(since).Round(time.Millisecond))
	case w.err != nil:
		t.Errorf("%s: %v", w.name, w.err)
	case w.status != want:
		t.Errorf("%s: refused with %d, want %d", w.name, w.status, want)
	case w.at.Sub(since) > limit:
		t.Errorf("%s: refused %s after the change, want at most %s", w.name, w.at.Sub(since).Round(time.Millisecond), limit)
	default:
		t.Logf("%s: refused (%d) %s after the change", w.name, w.status, w.at.Sub(since).Round(time.Millisecond))
	}
}

// waitSynced waits until the registry says the app's Keycloak client matches it (GET /admin/apps/{id}).
func waitSynced(t *testing.T, clientID string) {
	t.Helper()
	token := stackadmin.Token(t)
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9190/admin/apps/"+url.PathEscape(clientID), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var v struct {
				Sync struct {
					Pending   bool   `json:"pending"`
					LastError string `json:"last_error"`
				} `json:"idp_sync"`
			}
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && !v.Sync.Pending {
				return
			}
			last = fmt.Sprintf("%d pending=%v %s", resp.StatusCode, v.Sync.Pending, v.Sync.LastError)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s never reached Keycloak: %s", clientID, last)
}

// changedAt reads when PostgreSQL recorded a change: the app's last event with this action, or a member's
// revoked grant.
func changedAt(t *testing.T, query string, args ...any) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, stackPostgres)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var at time.Time
	if err := conn.QueryRow(ctx, query, args...).Scan(&at); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return at
}

// auditedActions are the admin entries of the audit topic about target, in order: "actor action".
func auditedActions(t *testing.T, target string, since time.Time) []string {
	t.Helper()
	bin := filepath.Join(stackenv.StateDir(), "bin", "fhirwall")
	out, err := exec.Command(bin, "audit", "query", "-kafka", "127.0.0.1:9092", "-kind", "admin", "-client", target,
		"-since", since.UTC().Format(time.RFC3339)).Output()
	if err != nil {
		t.Fatalf("fhirwall audit query -kind admin -client %s: %v", target, err)
	}
	var got []string
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var r struct{ Actor, Action string }
		if json.Unmarshal(line, &r) == nil && r.Action != "" {
			got = append(got, r.Actor+" "+r.Action)
		}
	}
	return got
}

// TestAppLifecycleThroughThePortalInChromium is issue 16's walk through the stack's own portal: a developer
// registers a sandbox app, a sandbox member launches it and it reads synthetic data only; the developer
// requests production, a reviewer approves and activates it, a member launches it on the production API;
// the reviewer deactivates it and both modes refuse its token within a second; a member revokes another app
// from their page with the same effect. Every page is screenshotted; every change is in the audit topic,
// which verifies.
func TestAppLifecycleThroughThePortalInChromium(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06")
	tools, err := FindTools()
	if err != nil {
		require.Missing(t, err.Error())
	}
	roots, err := stackenv.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	portalSPKI, err := LeafSPKI("127.0.0.1:9443", roots)
	if err != nil {
		require.Missing(t, "the stack's portal does not answer on 127.0.0.1:9443 (make stack-up): "+err.Error())
	}
	spki := []string{portalSPKI}
	shots := portalArtifacts(t)
	shot := func(name string) PageStep { return Screenshot(filepath.Join(shots, "lifecycle-"+name+".png")) }
	signIn := func(user, password string) []PageStep {
		return []PageStep{Goto(stackPortal + "/"), ClickNav(dt("sign-in")), Login(user, password), Wait(dt("signed-in-as"))}
	}
	started := time.Now()
	app, stopApp, err := ServeApp(tools, map[string]string{"other": "Patient/member-04"})
	if err != nil {
		t.Fatal(err)
	}
	defer stopApp()

	// 1. The developer registers a public member app in the sandbox: active at once.
	steps := append(signIn("dev-dana", portalPassword), shot("01-dev-signed-in"),
		ClickNav(dt("nav-apps")), ClickNav(dt("new-app")),
		Type(dt("name"), "Lifecycle member app"), Type(dt("org"), "Dana Labs"), Type(dt("email"), "dana@labs.example"),
		Type(dt("redirect-uris"), app+"/callback"),
		Check(dt("launch-standalone")), Check(dt("auth-none")), Check(dt("api-patient-access")))
	for _, s := range strings.Fields(appScopes) {
		steps = append(steps, Check(dt("scope-patient-access-"+s)))
	}
	steps = append(steps, shot("02-dev-register-form"), ClickNav(dt("register")), Wait(dt("credentials")), shot("03-dev-credentials"),
		Text(dt("client-id"), "sandboxID"), Text(dt("state"), "sandboxState"), Count(dt("client-secret"), "secrets"))
	v := run(t, tools, shots, "lifecycle-dev", spki, steps...)
	sandboxID := v["sandboxID"]
	if sandboxID == "" || v["sandboxState"] != "active" || v["secrets"] != "0" {
		t.Fatalf("sandbox registration: id %q state %q, %s secrets shown for a public client", sandboxID, v["sandboxState"], v["secrets"])
	}
	waitSynced(t, sandboxID)

	// 2. The sandbox member launches it against the sandbox API: synthetic data only, a real member refused.
	launch := func(client, iss, user, password string) *Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		q := url.Values{"iss": {iss}, "client_id": {client}, "scope": {appScopes}}
		res, err := Run(ctx, tools, Launch{LaunchURL: app + "/launch.html?" + q.Encode(), Username: user, Password: password})
		if err != nil {
			t.Fatal(err)
		}
		if res.Error != "" {
			t.Fatalf("%s's launch of %s at %s: %s\n%s", user, client, iss, res.Error, strings.Join(res.Log, "\n"))
		}
		for _, s := range res.Steps {
			if !s.OK && s.Name != "other.read" {
				t.Errorf("%s's launch of %s: step %s failed: %s\nbrowser log:\n%s", user, client, s.Name, s.Error, strings.Join(res.Log, "\n"))
			}
		}
		return res
	}
	res := launch(sandboxID, stackenv.StandaloneURL+"/patient-access-sandbox/fhir", "sandbox-sam", portalPassword)
	if res.PatientResource != "Patient/sandbox-01" || len(res.EOBPatients) == 0 {
		t.Errorf("sandbox launch read %q and %d claims; want Patient/sandbox-01 and its claims", res.PatientResource, len(res.EOBPatients))
	}
	for _, p := range res.EOBPatients {
		if p != "Patient/sandbox-01" {
			t.Errorf("a sandbox claim of %q", p)
		}
	}
	if fmt.Sprint(res.OtherStatus) == "200" {
		t.Error("the sandbox API returned a real member's Patient")
	}

	// 3. The developer requests production; the reviewer approves and activates it.
	v = run(t, tools, shots, "lifecycle-dev-prod", spki, append(signIn("dev-dana", portalPassword),
		Goto(stackPortal+"/apps/"+sandboxID), Wait(dt("app-info")), shot("04-dev-app-page"),
		ClickNav(dt("request-production")), Wait(dt("credentials")), shot("05-dev-production-requested"),
		Text(dt("client-id"), "prodID"), Text(dt("state"), "prodState"))...)
	prodID := v["prodID"]
	if prodID == "" || v["prodState"] != "pending" {
		t.Fatalf("production request: %q in state %q", prodID, v["prodState"])
	}
	run(t, tools, shots, "lifecycle-reviewer", spki, append(signIn("rev-riley", portalPassword),
		ClickNav(dt("nav-review")), Wait(dt("review-"+prodID)), shot("06-reviewer-queue"),
		ClickNav(dt("open-"+prodID)), Wait(dt("form-approve")), shot("07-reviewer-app"),
		Type(dt("reason-approve"), "privacy policy and security contact checked"), ClickNav(dt("do-approve")), Wait(dt("form-activate")),
		Type(dt("reason-activate"), "go live"), ClickNav(dt("do-activate")), Wait(dt("event-activate")), shot("08-reviewer-activated"))...)
	waitSynced(t, prodID)

	// 4. A member launches the production app on the production API and reads their own data.
	res = launch(prodID, stackenv.StandaloneURL+"/patient-access/fhir", "member01", stackauth.Password)
	if res.PatientResource != "Patient/member-01" || len(res.EOBPatients) == 0 || fmt.Sprint(res.OtherStatus) == "200" {
		t.Errorf("production launch: %q, %d claims, another member's record answered %v", res.PatientResource, len(res.EOBPatients), res.OtherStatus)
	}

	// 5. The reviewer deactivates it: its token is refused within a second, in both modes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := smartclient.AuthorizationCodePKCE(ctx, stackauth.Issuer, prodID, app+"/callback", strings.Fields(appScopes), "member02", stackauth.Password)
	if err != nil {
		t.Fatal(err)
	}
	tok.RefreshToken = refreshes(t, "the production app", prodID, tok.RefreshToken)
	watches := []*refusalWatch{
		watchRefusal(t, "standalone", stackenv.StandaloneURL+"/patient-access/fhir/Patient/member-02", tok.AccessToken),
		watchRefusal(t, "envoy", stackenv.EnvoyURL()+"/patient-access/fhir/Patient/member-02", tok.AccessToken),
	}
	run(t, tools, shots, "lifecycle-deactivate", spki, append(signIn("rev-riley", portalPassword),
		Goto(stackPortal+"/review/apps/"+prodID), Wait(dt("form-deactivate")),
		Type(dt("reason-deactivate"), "lifecycle test: the app is retired"), ClickNav(dt("do-deactivate")),
		Wait(dt("event-deactivate")), shot("09-reviewer-deactivated"))...)
	deactivated := changedAt(t, `SELECT max(time) FROM fhirwall_app_events WHERE client_id = $1 AND action = 'deactivate'`, prodID)
	for _, w := range watches {
		w.refusedWithin(t, deactivated, time.Second, http.StatusForbidden)
	}
	// Keycloak ended the app's sessions too: its refresh token gets no new access token.
	refuseRefresh(t, "the deactivated app", prodID, tok.RefreshToken)

	// 6. A member revokes another app (the demo member app) from their own page: same effect.
	member, err := stackauth.Member(ctx, "member03", "openid", "launch/patient", "patient/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	member.RefreshToken = refreshes(t, "the member's app", "patient-app", member.RefreshToken)
	watches = []*refusalWatch{
		watchRefusal(t, "standalone (member revocation)", stackenv.StandaloneURL+"/patient-access/fhir/Patient/member-03", member.AccessToken),
		watchRefusal(t, "envoy (member revocation)", stackenv.EnvoyURL()+"/patient-access/fhir/Patient/member-03", member.AccessToken),
	}
	run(t, tools, shots, "lifecycle-member", spki, append(signIn("member03", stackauth.Password),
		ClickNav(dt("nav-me")), Wait(dt("grant-patient-app")), shot("10-member-connected-apps"),
		ClickNav(dt("revoke-patient-app")), Wait(dt("revoked")), shot("11-member-revoked"))...)
	revoked := changedAt(t, `SELECT revoked_at FROM fhirwall_revoked_grants WHERE subject = $1 AND client_id = 'patient-app'`, memberSubject(t, member.AccessToken))
	for _, w := range watches {
		w.refusedWithin(t, revoked, time.Second, http.StatusUnauthorized)
	}
	refuseRefresh(t, "the member's revoked app", "patient-app", member.RefreshToken)

	// Every change is in the audit topic, which verifies whole.
	since := started.Add(-time.Second)
	waitAudited(t, sandboxID, since, []string{"register"})
	waitAudited(t, prodID, since, []string{"register", "approve", "activate", "deactivate"})
	waitAudited(t, "patient-app", since, []string{"revoke-grant"})
	bin := filepath.Join(stackenv.StateDir(), "bin", "fhirwall")
	out, err := exec.Command(bin, "audit", "verify", "-kafka", "127.0.0.1:9092",
		"-key", filepath.Join(stackenv.StateDir(), "audit", "signing.key.pub")).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK") {
		t.Errorf("fhirwall audit verify over the topic: %v\n%s", err, out)
	}
	t.Logf("lifecycle walked in %s", time.Since(started).Round(time.Second))
}

// refreshes checks, before a change, that Keycloak refreshes the token (so a refusal afterwards is the
// change's doing) and returns the refresh token to use next.
func refreshes(t *testing.T, what, clientID, refresh string) string {
	t.Helper()
	resp, err := http.PostForm(stackauth.Issuer+"/protocol/openid-connect/token", url.Values{
		"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {refresh}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.RefreshToken == "" {
		t.Fatalf("%s: Keycloak does not refresh the token before the change: %d %v", what, resp.StatusCode, err)
	}
	return tok.RefreshToken
}

// refuseRefresh checks that Keycloak's token endpoint refuses a refresh token (the app's or the member's
// sessions ended): waits up to 5 s, since the IdP side follows the registry asynchronously.
func refuseRefresh(t *testing.T, what, clientID, refresh string) {
	t.Helper()
	if refresh == "" {
		t.Fatalf("%s: no refresh token to try", what)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.PostForm(stackauth.Issuer+"/protocol/openid-connect/token", url.Values{
			"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {refresh}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Logf("%s: Keycloak refuses its refresh token (%d)", what, resp.StatusCode)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: Keycloak still refreshes its token", what)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// memberSubject is the token's sub claim.
func memberSubject(t *testing.T, token string) string {
	t.Helper()
	claims, err := smartclient.UnverifiedClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		t.Fatal("the member's token has no sub")
	}
	return sub
}

// waitAudited waits (the shipper runs behind the spool) until the topic holds an admin entry of each action
// about target.
func waitAudited(t *testing.T, target string, since time.Time, actions []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got []string
	for {
		got = auditedActions(t, target, since)
		missing := []string{}
		for _, a := range actions {
			found := false
			for _, g := range got {
				if strings.HasSuffix(g, " "+a) {
					found = true
				}
			}
			if !found {
				missing = append(missing, a)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("audit topic: %s has no %v entry; it has %v", target, missing, got)
			return
		}
		time.Sleep(time.Second)
	}
}

//go:build e2e

package browser

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/adapters/registry/postgres"
	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/internal/audit/audittest"
	"github.com/fhirwall/fhirwall/internal/portal"
	"github.com/fhirwall/fhirwall/test/pgtest"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
	"github.com/fhirwall/fhirwall/test/tlsfixture"
)

// PortalAddr is where the test serves its own portal; the realm's fhirwall-portal client accepts
// https://127.0.0.1:9444/auth/callback beside the stack's portal on 9443.
const PortalAddr = "127.0.0.1:9444"

const (
	portalKeycloak = "http://127.0.0.1:8180"
	portalRealm    = "fhirwall"
	portalPassword = "password" // dev-dana, rev-riley, sandbox-sam (the realm file); members have stackauth.Password
)

// portalArtifacts is the folder screenshots go to: $FHIRWALL_ARTIFACTS/portal, or the test's temp dir.
func portalArtifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if a := os.Getenv("FHIRWALL_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "portal")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s", dir)
	return dir
}

// keycloakGrants is the IdP's Grants read from Keycloak's admin API (a user's sessions, by client), signed in
// as the stack's registry service account; the rest of apps.IdP is not this test's. Read-only on purpose:
// adapters/registry/keycloak's Syncer would also sync this test's registry (a schema of its own) into the
// shared realm and reconcile away clients it does not hold.
type keycloakGrants struct{ secret string }

func (k keycloakGrants) token(ctx context.Context) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"fhirwall-registry"}, "client_secret": {k.secret}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, portalKeycloak+"/realms/"+portalRealm+"/protocol/openid-connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("service account token: %s %v", resp.Status, err)
	}
	return tok.AccessToken, nil
}

func (k keycloakGrants) Grants(ctx context.Context, subject string) ([]string, error) {
	tok, err := k.token(ctx)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, portalKeycloak+"/admin/realms/"+portalRealm+"/users/"+url.PathEscape(subject)+"/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("sessions: %s %s", resp.Status, b)
	}
	var sessions []struct {
		Clients map[string]string `json:"clients"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sessions); err != nil {
		return nil, err
	}
	seen, out := map[string]bool{}, []string{}
	for _, s := range sessions {
		for _, c := range s.Clients {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

func (keycloakGrants) RotateSecret(context.Context, string, time.Duration) (string, error) {
	return "", errors.ErrUnsupported
}
func (keycloakGrants) EndSessions(context.Context, string) error { return errors.ErrUnsupported }
func (keycloakGrants) RevokeGrant(context.Context, string, string) error {
	return errors.ErrUnsupported
}

// servePortal runs the portal in-process on PortalAddr over TLS from test/tlsfixture, on the real
// PostgreSQL registry and Keycloak, and returns its origin and the SPKI Chromium is told to trust.
func servePortal(t *testing.T) (base string, spki []string, store apps.Store) {
	t.Helper()
	ctx := context.Background()
	secret, err := os.ReadFile(filepath.Join(stackenv.StateDir(), "keycloak", "secrets", "portal.secret"))
	if err != nil {
		require.Missing(t, "no portal client secret (the stack's Keycloak makes it: make stack-up): "+err.Error())
	}
	registrySecret, _ := os.ReadFile(filepath.Join(stackenv.StateDir(), "keycloak", "secrets", "registry.secret"))
	if resp, err := http.Get(portalKeycloak + "/realms/" + portalRealm + "/.well-known/openid-configuration"); err != nil || resp.StatusCode != 200 {
		require.Missing(t, fmt.Sprintf("Keycloak does not answer on %s (make stack-up): %v", portalKeycloak, err))
	} else {
		resp.Body.Close()
	}
	cfg, err := config.Load(filepath.Join(stackenv.Root(), "config", "fhirwall.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	spool, _, _ := audittest.Spool(t)
	pg, err := postgres.Open(ctx, pgtest.Schema(t, "portal"), apps.NewAuditor(spool), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	store = pg

	tlsDir := t.TempDir()
	if err := tlsfixture.Generate(tlsDir, 1, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, tlsfixture.CertFile), filepath.Join(tlsDir, tlsfixture.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(tlsDir, tlsfixture.CAFile))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	base = "https://" + PortalAddr
	sessionKey := make([]byte, 32)
	_, _ = rand.Read(sessionKey)
	docsClient := &http.Client{Timeout: 10 * time.Second}
	h, err := portal.New(portal.Options{
		Store: store, IdP: keycloakGrants{secret: strings.TrimSpace(string(registrySecret))},
		Offered: cfg.OfferedScopes(), APIs: cfg.APIs, Notices: []config.Notice{{ID: "eob-v1-sunset", Kind: "deprecation",
			API: "patient-access", Title: "ExplanationOfBenefit without _profile", Body: "Ask for the CARIN profile.",
			Published: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Deprecation: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			Sunset: time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)}},
		Docs: func(ctx context.Context, api string) ([]byte, []byte, error) {
			var prefix string
			for _, a := range cfg.APIs {
				if a.Name == api {
					prefix = a.Prefix
				}
			}
			get := func(path string) ([]byte, error) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, stackenv.StandaloneURL+prefix+path, nil)
				req.Header.Set("Accept", "application/fhir+json")
				resp, err := docsClient.Do(req)
				if err != nil {
					return nil, err
				}
				defer resp.Body.Close()
				return io.ReadAll(resp.Body)
			}
			c, err := get("/metadata")
			if err != nil {
				return nil, nil, err
			}
			s, err := get("/.well-known/smart-configuration")
			return c, s, err
		},
		OIDC:      portal.OIDC{IssuerURL: cfg.Issuers[0].URL, ClientID: "fhirwall-portal", ClientSecret: strings.TrimSpace(string(secret))},
		PublicURL: base, SessionKey: sessionKey, SecretOverlap: time.Hour, Log: slog.Default(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", PortalAddr)
	if err != nil {
		t.Fatalf("the test portal's address %s is taken: %v", PortalAddr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	leaf, err := LeafSPKI(PortalAddr, roots)
	if err != nil {
		t.Fatal(err)
	}
	return base, []string{leaf}, store
}

func run(t *testing.T, tools Tools, shots, who string, spki []string, steps ...PageStep) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := Session{Steps: steps, SPKI: spki, FailureScreenshot: filepath.Join(shots, who+"-failure.png")}
	res, err := RunSession(ctx, tools, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(s); err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	return res.Values
}

func dt(name string) string { return `[data-test="` + name + `"]` }

// TestPortalDeveloperReviewerAndMemberInChromium: dev-dana signs in through Keycloak, registers a sandbox
// app (active at once), sees its secret once, and requests production; rev-riley sees the production app
// pending, approves it with one scope unticked and sees the approval in its audit trail; a member signs in
// and sees their connected apps. Every page is screenshotted.
func TestPortalDeveloperReviewerAndMemberInChromium(t *testing.T) {
	tools, err := FindTools()
	if err != nil {
		require.Missing(t, err.Error())
	}
	base, spki, store := servePortal(t)
	shots := portalArtifacts(t)
	shot := func(name string) PageStep { return Screenshot(filepath.Join(shots, name+".png")) }
	signIn := func(user string) []PageStep {
		pw := portalPassword
		if strings.HasPrefix(user, "member") {
			pw = stackauth.Password
		}
		return []PageStep{Goto(base + "/"), ClickNav(dt("sign-in")), Login(user, pw), Wait(dt("signed-in-as"))}
	}

	// Anyone: home, docs, status, notices.
	run(t, tools, shots, "anonymous", spki, Goto(base+"/"), shot("01-home"),
		ClickNav(dt("docs-patient-access")), Wait(dt("resource-Patient")), shot("02-docs-patient-access"),
		Goto(base+"/status"), Wait(dt("replica")), shot("03-status"),
		Goto(base+"/status/patient-access"), shot("04-status-patient-access"),
		Goto(base+"/notices"), Wait(dt("notice-eob-v1-sunset")), shot("05-notices"))

	// The developer.
	scope := func(s string) string { return dt("scope-patient-access-" + s) }
	dev := append(signIn("dev-dana"), shot("10-dev-signed-in"),
		ClickNav(dt("nav-apps")), shot("11-dev-my-apps"),
		ClickNav(dt("new-app")), shot("12-dev-register-form"),
		Type(dt("name"), "Dana's Claims Viewer"), Type(dt("org"), "Dana Labs"), Type(dt("email"), "dana@labs.example"),
		Type(dt("redirect-uris"), "https://dana-labs.example/callback"),
		Check(dt("launch-standalone")), Check(dt("auth-client_secret_basic")), Check(dt("api-patient-access")),
		Check(scope("openid")), Check(scope("launch/patient")), Check(scope("patient/Patient.rs")), Check(scope("patient/ExplanationOfBenefit.rs")),
		ClickNav(dt("register")), Wait(dt("credentials")), shot("13-dev-credentials-once"),
		Text(dt("client-id"), "sandboxID"), Text(dt("client-secret"), "secret"), Text(dt("state"), "sandboxState"),
		ClickNav(dt("app-page")), Wait(dt("app-info")), shot("14-dev-app-page"), Text("body", "appPage"),
		ClickNav(dt("request-production")), Wait(dt("credentials")), shot("15-dev-production-requested"),
		Text(dt("client-id"), "prodID"), Text(dt("state"), "prodState"), Count(dt("client-secret"), "prodSecrets"),
		Goto(base+"/review"), StatusOf("devReviewStatus"), shot("16-dev-refused-review"))
	v := run(t, tools, shots, "dev-dana", spki, dev...)
	if v["sandboxState"] != "active" || len(v["secret"]) < 40 {
		t.Errorf("sandbox app %s: state %q, secret of %d characters", v["sandboxID"], v["sandboxState"], len(v["secret"]))
	}
	if strings.Contains(v["appPage"], v["secret"]) {
		t.Error("the app's page shows the secret again")
	}
	if v["prodID"] != v["sandboxID"]+"-prod" || v["prodState"] != "pending" || v["prodSecrets"] != "1" {
		t.Errorf("production request: %q %q, %s secrets shown", v["prodID"], v["prodState"], v["prodSecrets"])
	}
	if v["devReviewStatus"] != "403" {
		t.Errorf("a developer reached the review console: %s", v["devReviewStatus"])
	}
	sandbox, err := store.Get(context.Background(), v["sandboxID"])
	if err != nil || sandbox.Owner == "" || !strings.HasPrefix(sandbox.Owner, "portal:") || sandbox.Environment != apps.Sandbox {
		t.Fatalf("stored sandbox app %+v, %v", sandbox, err)
	}
	prodID := v["prodID"]

	// The reviewer.
	rev := append(signIn("rev-riley"), shot("20-reviewer-signed-in"),
		ClickNav(dt("nav-review")), Wait(`[data-test="review-`+prodID+`"][data-state="pending"]`), shot("21-reviewer-list"),
		ClickNav(dt("open-"+prodID)), Wait(dt("form-approve")), shot("22-reviewer-app"),
		Uncheck(dt("approve-scope-patient/ExplanationOfBenefit.rs")), Type(dt("reason-approve"), "claims not needed for launch"),
		ClickNav(dt("do-approve")), Wait(dt("event-approve")), shot("23-reviewer-approved-audit-trail"),
		Text(dt("state"), "state"), Text(dt("approved"), "approved"), Text(dt("audit-trail"), "trail"))
	v = run(t, tools, shots, "rev-riley", spki, rev...)
	if v["state"] != "approved" || strings.Contains(v["approved"], "ExplanationOfBenefit") || !strings.Contains(v["approved"], "patient/Patient.rs") {
		t.Errorf("after approval: state %q, approved %q", v["state"], v["approved"])
	}
	for _, want := range []string{"reviewer:rev-riley", "approve", "claims not needed for launch", "portal:dev-dana", "register", "approved_scopes"} {
		if !strings.Contains(v["trail"], want) {
			t.Errorf("audit trail lacks %q:\n%s", want, v["trail"])
		}
	}
	prod, err := store.Get(context.Background(), prodID)
	if err != nil || prod.State != apps.StateApproved || len(prod.ApprovedScopes) != 3 {
		t.Errorf("stored production app: %s %v, %v", prod.State, prod.ApprovedScopes, err)
	}

	// A member.
	v = run(t, tools, shots, "member01", spki, append(signIn("member01"),
		ClickNav(dt("nav-me")), Wait(dt("grants")), shot("30-member-connected-apps"), Text(dt("grants"), "grants"),
		Goto(base+"/apps"), StatusOf("memberAppsStatus"), shot("31-member-refused-developer-pages"),
		ClickNav(dt("sign-out")), URLOf("afterSignOut"), shot("32-member-signed-out"), Goto(base+"/"), Count(dt("signed-in-as"), "signedIn"))...)
	if strings.Contains(v["grants"], "fhirwall-portal") {
		t.Errorf("the member's connected apps list the portal itself:\n%s", v["grants"])
	}
	if v["signedIn"] != "0" || v["afterSignOut"] != base+"/" {
		t.Errorf("after signing out: at %q, %s signed-in markers; want back on the portal, signed out of it and of Keycloak without a question", v["afterSignOut"], v["signedIn"])
	}
	if v["memberAppsStatus"] != "403" {
		t.Errorf("a member reached the developer pages: %s", v["memberAppsStatus"])
	}
}

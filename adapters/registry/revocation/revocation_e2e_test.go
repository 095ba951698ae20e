//go:build e2e

package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/audit/audittest"
	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/token"
	"github.com/fhirwall/fhirwall/test/pgtest"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// propagationBound is issue 16 item 5's "within 1 second, on every replica".
const propagationBound = time.Second

// replica is one gateway replica's part: its own audit spool, store and view (kept fresh by Watch), and the
// wrapped verifier the decision core would use.
type replica struct {
	spool *audit.Spool
	store *Store
	gate  *Checked
}

func newReplica(t *testing.T, ctx context.Context, dsn string, inner Verifier) *replica {
	t.Helper()
	sp, _, _ := audittest.Spool(t)
	st, err := Open(ctx, dsn, sp, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = st.View().Watch(wctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	gate, err := Wrap(inner, st.View())
	if err != nil {
		t.Fatal(err)
	}
	return &replica{spool: sp, store: st, gate: gate}
}

// adminEntries are the admin entries in r's spool.
func (r *replica) adminEntries(t *testing.T) []audit.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lines, err := r.spool.NewReader().Next(ctx, 100, 1<<20)
	if err != nil {
		t.Fatalf("reading the audit spool: %v", err)
	}
	var out []audit.Record
	for _, l := range lines {
		if l.Err != nil {
			t.Fatalf("audit entry %d does not verify: %v", l.Entry.Seq, l.Err)
		}
		var rec audit.Record
		if err := json.Unmarshal(l.Raw, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Kind == audit.KindAdmin {
			out = append(out, rec)
		}
	}
	return out
}

// refusedWithin polls every replica's verifier until each refuses raw as invalid, and returns how long the
// slowest took; the test fails past the bound.
func refusedWithin(t *testing.T, ctx context.Context, what, raw string, since time.Time, replicas ...*replica) time.Duration {
	t.Helper()
	var slowest time.Duration
	for i, r := range replicas {
		for {
			_, err := r.gate.Verify(ctx, raw)
			if errors.Is(err, token.ErrInvalid) {
				break
			}
			if err != nil && !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("%s: replica %d: %v; want accepted, then refused as invalid", what, i+1, err)
			}
			if time.Since(since) > propagationBound {
				t.Fatalf("%s: replica %d still accepts the token %v after the revocation (bound %v)", what, i+1, time.Since(since), propagationBound)
			}
			time.Sleep(time.Millisecond)
		}
		slowest = max(slowest, time.Since(since))
	}
	return slowest
}

type e2eStack struct {
	ctx       context.Context
	verifier  *token.Verifier
	discovery *capability.OIDCDiscovery
	a, b      *replica
}

func newE2EStack(t *testing.T) *e2eStack {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	dsn := pgtest.Schema(t, "revocation")
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(stackauth.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		require.Missing(t, "Keycloak does not answer (the stack's, on :8180): "+err.Error())
	}
	resp.Body.Close()
	v, err := token.NewVerifier([]token.IssuerConfig{{URL: stackauth.Issuer, Audience: "fhirwall"}}, token.Options{ClockSkew: token.DefaultClockSkew})
	if err != nil {
		t.Fatal(err)
	}
	s := &e2eStack{ctx: ctx, verifier: v,
		discovery: &capability.OIDCDiscovery{Client: &http.Client{Timeout: 5 * time.Second}, TTL: time.Minute, RetryAfter: time.Second, Now: time.Now}}
	s.a, s.b = newReplica(t, ctx, dsn, v), newReplica(t, ctx, dsn, v)
	return s
}

func TestE2ERevokedBackendTokenIsRefusedOnEveryReplicaWithinASecond(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06")
	s := newE2EStack(t)
	tok, err := stackauth.Backend(s.ctx, "provider-org-a", "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*replica{s.a, s.b} {
		if id, err := r.gate.Verify(s.ctx, tok.AccessToken); err != nil || id.ClientID != "provider-org-a" || id.JTI == "" {
			t.Fatalf("replica %d before revocation: %+v, %v; want provider-org-a's token accepted, with a jti", i+1, id, err)
		}
	}
	h, err := NewHandler(HandlerConfig{Issuer: stackauth.Issuer, Discovery: s.discovery, Verifier: s.verifier, Store: s.a.store})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	key, err := smartclient.LoadPrivateKey(filepath.Join(stackenv.Root(), "test", "fixtures", "keys", "provider-org-a.TEST-ONLY.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := s.discovery.Discover(s.ctx, stackauth.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	revoke := func(assertionAudience, raw string) (int, string) {
		assertion, err := smartclient.ClientAssertion("provider-org-a", assertionAudience, key, "provider-org-a-test-1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}, "client_assertion_type": {jwtBearer}, "client_assertion": {assertion}}
		resp, err := http.Post(srv.URL+Path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("answer %d is not no-store", resp.StatusCode)
		}
		return resp.StatusCode, string(body)
	}

	// A forged assertion (provider-org-b's key under org-a's name) is refused by Keycloak: nothing recorded.
	otherKey, err := smartclient.LoadPrivateKey(filepath.Join(stackenv.Root(), "test", "fixtures", "keys", "provider-org-b.TEST-ONLY.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := smartclient.ClientAssertion("provider-org-a", ep.TokenEndpoint, otherKey, "provider-org-a-test-1", time.Now())
	form := url.Values{"token": {tok.AccessToken}, "client_assertion_type": {jwtBearer}, "client_assertion": {forged}}
	resp, err := http.Post(srv.URL+Path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged client assertion: %d; want 401 invalid_client", resp.StatusCode)
	}
	if _, err := s.b.gate.Verify(s.ctx, tok.AccessToken); err != nil {
		t.Fatalf("after a refused revocation the token is refused: %v", err)
	}

	status, body := revoke(ep.TokenEndpoint, tok.AccessToken)
	revoked := time.Now()
	if status != http.StatusOK {
		t.Fatalf("revocation: %d %s; want 200", status, body)
	}
	took := refusedWithin(t, s.ctx, "RFC 7009", tok.AccessToken, revoked, s.a, s.b)
	t.Logf("RFC 7009 revocation refused on both replicas %v after the endpoint answered", took)

	// Revoking it again, and revoking garbage, answer 200 (RFC 7009 §2.2).
	if status, body := revoke(ep.TokenEndpoint, tok.AccessToken); status != http.StatusOK {
		t.Errorf("second revocation: %d %s; want 200", status, body)
	}
	if status, body := revoke(ep.TokenEndpoint, "not-a-token"); status != http.StatusOK {
		t.Errorf("revoking an invalid token: %d %s; want 200", status, body)
	}
	// A token obtained afterwards is a new token: accepted.
	fresh, err := stackauth.Backend(s.ctx, "provider-org-a", "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.gate.Verify(s.ctx, fresh.AccessToken); err != nil {
		t.Fatalf("a new token after the revocation: %v; want accepted", err)
	}

	entries := s.a.adminEntries(t)
	if len(entries) != 2 {
		t.Fatalf("admin audit entries %+v; want one per recorded revocation (2)", entries)
	}
	for _, e := range entries {
		if e.Actor != "client:provider-org-a" || e.Action != ActionRevokeToken || e.Target != "provider-org-a" {
			t.Errorf("audit entry %+v; want client:provider-org-a revoke-token provider-org-a", e)
		}
	}
}

func TestE2EMemberRevocationRefusesTheAppsTokensAndRefreshedOnesOnEveryReplica(t *testing.T) {
	evidence.Proves(t, "CMS-PA-06")
	s := newE2EStack(t)
	scopes := []string{"openid", "launch/patient", "patient/*.rs", "fhirUser"}
	tok, err := stackauth.Member(s.ctx, "member01", scopes...)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.a.gate.Verify(s.ctx, tok.AccessToken)
	if err != nil || id.ClientID != "patient-app" {
		t.Fatalf("before revocation: %+v, %v", id, err)
	}
	t.Logf("member token: iat %v auth_time %v", id.IssuedAt, id.AuthTime)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token: the case needs one")
	}
	time.Sleep(1100 * time.Millisecond) // the revocation falls in a later second than the sign-in

	revoked := time.Now()
	if err := s.a.store.RevokeGrant(s.ctx, id.Subject, "patient-app", "member:"+id.Subject); err != nil {
		t.Fatal(err)
	}
	took := refusedWithin(t, s.ctx, "member revocation", tok.AccessToken, revoked, s.a, s.b)
	t.Logf("member revocation refused on both replicas %v after RevokeGrant returned", took)

	// The identity provider still honours the refresh token (ending its sessions is the portal's part):
	// the refreshed access token carries the original sign-in and is refused too.
	time.Sleep(1100 * time.Millisecond)
	refreshed := refresh(t, s.ctx, tok.RefreshToken)
	rid, err := s.verifier.Verify(s.ctx, refreshed)
	if err != nil {
		t.Fatalf("refreshed token does not verify at all: %v", err)
	}
	t.Logf("refreshed token: iat %v auth_time %v", rid.IssuedAt, rid.AuthTime)
	for i, r := range []*replica{s.a, s.b} {
		if _, err := r.gate.Verify(s.ctx, refreshed); !errors.Is(err, token.ErrInvalid) {
			t.Errorf("replica %d: access token refreshed after the revocation: %v; want refused", i+1, err)
		}
	}
	// Signing in again is a new grant: accepted.
	again, err := stackauth.Member(s.ctx, "member01", scopes...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.gate.Verify(s.ctx, again.AccessToken); err != nil {
		t.Errorf("a new sign-in after the revocation: %v; want accepted", err)
	}

	entries := s.a.adminEntries(t)
	if len(entries) != 1 || entries[0].Actor != "member:"+id.Subject || entries[0].Action != ActionRevokeGrant || entries[0].Target != "patient-app" {
		t.Fatalf("admin audit entries %+v; want one revoke-grant by the member on patient-app", entries)
	}
}

// refresh uses refreshToken at the realm's token endpoint as patient-app (a public client) would.
func refresh(t *testing.T, ctx context.Context, refreshToken string) string {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}, "client_id": {"patient-app"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, stackauth.Issuer+"/protocol/openid-connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.AccessToken == "" {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	return out.AccessToken
}

// sinkFake is an audit spool that refuses every write.
type sinkFake struct{}

func (sinkFake) Write(context.Context, audit.Record) error {
	return errors.New("audit spool full (fake)")
}

func TestE2ERevocationThatCannotBeAuditedRevokesNothing(t *testing.T) {
	evidence.Proves(t, "AUD-05")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := pgtest.Schema(t, "revocation")
	st, err := Open(ctx, dsn, sinkFake{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.RevokeToken(ctx, Token{JTI: "j-1", ClientID: "app", Subject: "s", ExpiresAt: time.Now().Add(time.Hour)}, "client:app", "test")
	if !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("RevokeToken: %v; want ErrAuditFailed", err)
	}
	if err := st.RevokeGrant(ctx, "s", "app", "member:s"); !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("RevokeGrant: %v; want ErrAuditFailed", err)
	}
	if err := st.View().Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if tokens, grants := st.View().Len(); tokens != 0 || grants != 0 {
		t.Fatalf("after failed audits the view holds %d tokens and %d grants; want none", tokens, grants)
	}
}

func TestE2ERevocationsOfExpiredTokensAreNeitherLoadedNorKept(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := pgtest.Schema(t, "revocation")
	sp, _, _ := audittest.Spool(t)
	st, err := Open(ctx, dsn, sp, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	long := time.Now().Add(-keepExpired - time.Minute)
	for jti, exp := range map[string]time.Time{"live": time.Now().Add(time.Hour), "skew": time.Now().Add(-time.Minute), "gone": long} {
		if err := st.RevokeToken(ctx, Token{JTI: jti, ClientID: "app", Subject: "s", ExpiresAt: exp}, "client:app", "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.View().Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if tokens, _ := st.View().Len(); tokens != 2 {
		t.Fatalf("view holds %d tokens; want 2 (live, and expired within the clock skew)", tokens)
	}
	if err := st.View().prune(ctx); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := st.pool.QueryRow(ctx, `SELECT count(*) FROM fhirwall_revoked_tokens`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 2 {
		t.Fatalf("%d rows after pruning; want 2", left)
	}
}

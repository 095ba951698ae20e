package smartclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeKeycloak is a FAKE authorization server that imitates the parts of Keycloak the client touches:
// discovery, the login page (form kc-form-login, session cookie), the 302 back to the redirect URI, and
// the token endpoint (authorization_code with PKCE S256; client_credentials with a private_key_jwt
// assertion). It checks what a real server checks, so the client's requests are proven well-formed.
type fakeKeycloak struct {
	t   *testing.T
	srv *httptest.Server

	clientID, redirectURI string
	backendID, backendKID string
	backendKey            crypto.PublicKey

	tamperState  bool   // answer with another state
	denyWith     string // answer the authorization with this error
	issuerInDisc string // issuer to put in discovery, default the real one

	mu        sync.Mutex
	codes     map[string]authReq
	jtis      map[string]bool
	assertion map[string]any // last client assertion's claims
	header    jose.Header    // and header
}

type authReq struct{ challenge, redirectURI, scope, clientID string }

func newFakeKeycloak(t *testing.T) *fakeKeycloak {
	f := &fakeKeycloak{t: t, clientID: "patient-app", redirectURI: "http://127.0.0.1:8089/callback",
		codes: map[string]authReq{}, jtis: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realms/test/.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /realms/test/protocol/openid-connect/auth", f.auth)
	mux.HandleFunc("POST /realms/test/login-actions/authenticate", f.authenticate)
	mux.HandleFunc("POST /realms/test/protocol/openid-connect/token", f.token)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKeycloak) issuer() string             { return f.srv.URL + "/realms/test" }
func (f *fakeKeycloak) tokenURL() string           { return f.issuer() + "/protocol/openid-connect/token" }
func (f *fakeKeycloak) clientCtx() context.Context { return context.Background() }

func (f *fakeKeycloak) discovery(w http.ResponseWriter, r *http.Request) {
	iss := f.issuerInDisc
	if iss == "" {
		iss = f.issuer()
	}
	writeJSON(w, 200, map[string]any{
		"issuer":                           iss,
		"authorization_endpoint":           f.issuer() + "/protocol/openid-connect/auth",
		"token_endpoint":                   f.tokenURL(),
		"jwks_uri":                         f.issuer() + "/protocol/openid-connect/certs",
		"code_challenge_methods_supported": []string{"plain", "S256"},
	})
}

func (f *fakeKeycloak) auth(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != f.clientID || q.Get("redirect_uri") != f.redirectURI ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorization request: "+r.URL.RawQuery, 400)
		return
	}
	sess := randomHex(8)
	f.mu.Lock()
	f.codes["session:"+sess] = authReq{challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri"),
		scope: q.Get("scope"), clientID: q.Get("client_id")}
	f.codes["state:"+sess] = authReq{scope: q.Get("state")}
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "AUTH_SESSION_ID", Value: sess, Path: "/realms/test/", HttpOnly: true})
	action := "/realms/test/login-actions/authenticate?session_code=abc&execution=e1&client_id=" + f.clientID + "&tab_id=t1"
	fmt.Fprintf(w, `<!DOCTYPE html><html><head><title>Sign in to test</title></head><body>
<form id="kc-form-login" onsubmit="login.disabled = true; return true;" action="%s" method="post">
<input tabindex="2" id="username" name="username" value="" type="text" autofocus autocomplete="username">
<input tabindex="3" id="password" name="password" type="password" autocomplete="current-password">
<input type="hidden" id="id-hidden-input" name="credentialId"/>
<input tabindex="7" class="pf-c-button" name="login" id="kc-login" type="submit" value="Sign In"/>
</form></body></html>`, html.EscapeString(action))
}

func (f *fakeKeycloak) authenticate(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie("AUTH_SESSION_ID")
	if err != nil {
		fmt.Fprint(w, `<html><head><title>Sign in</title></head><body><p id="kc-page-title">Cookie not found.</p></body></html>`)
		return
	}
	q := r.URL.Query()
	if q.Get("session_code") != "abc" || q.Get("execution") != "e1" || q.Get("tab_id") != "t1" {
		http.Error(w, "bad action URL "+r.URL.RawQuery, 400)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if _, ok := r.PostForm["credentialId"]; !ok {
		http.Error(w, "hidden field credentialId not posted", 400)
		return
	}
	if _, ok := r.PostForm["login"]; ok {
		http.Error(w, "submit button posted", 400)
		return
	}
	if r.PostForm.Get("username") != "member01" || r.PostForm.Get("password") != "fhirwall-demo" {
		fmt.Fprint(w, `<html><head><title>Sign in to test</title></head><body><form id="kc-form-login" action="/x">
<span id="input-error" aria-live="polite">Invalid username or password.</span></form></body></html>`)
		return
	}
	f.mu.Lock()
	req, ok := f.codes["session:"+c.Value]
	state := f.codes["state:"+c.Value].scope
	f.mu.Unlock()
	if !ok {
		http.Error(w, "unknown session", 400)
		return
	}
	v := url.Values{}
	if f.denyWith != "" {
		v.Set("error", f.denyWith)
		v.Set("error_description", "the user said no")
	} else {
		code := randomHex(8)
		f.mu.Lock()
		f.codes["code:"+code] = req
		f.mu.Unlock()
		v.Set("code", code)
	}
	if f.tamperState {
		state = "someone-elses-state"
	}
	v.Set("state", state)
	v.Set("session_state", "s1")
	http.Redirect(w, r, req.redirectURI+"?"+v.Encode(), http.StatusFound)
}

func (f *fakeKeycloak) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	p := r.PostForm
	oauthErr := func(code, desc string) {
		writeJSON(w, 400, map[string]string{"error": code, "error_description": desc})
	}
	switch p.Get("grant_type") {
	case "authorization_code":
		f.mu.Lock()
		req, ok := f.codes["code:"+p.Get("code")]
		delete(f.codes, "code:"+p.Get("code"))
		f.mu.Unlock()
		if !ok {
			oauthErr("invalid_grant", "unknown code")
			return
		}
		sum := sha256.Sum256([]byte(p.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != req.challenge {
			oauthErr("invalid_grant", "PKCE verification failed")
			return
		}
		if p.Get("client_id") != req.clientID || p.Get("redirect_uri") != req.redirectURI || p.Get("client_secret") != "" {
			oauthErr("invalid_client", "client_id / redirect_uri mismatch")
			return
		}
		writeJSON(w, 200, map[string]any{
			"access_token": "fake-access-token", "token_type": "Bearer", "expires_in": 300,
			"id_token": "fake-id-token", "scope": req.scope, "patient": "member-01",
			"refresh_token": "fake-refresh",
		})
	case "client_credentials":
		if p.Get("client_assertion_type") != ClientAssertionType {
			oauthErr("invalid_client", "client_assertion_type")
			return
		}
		if p.Get("client_id") != "" && p.Get("client_id") != f.backendID {
			oauthErr("invalid_client", "client_id does not match")
			return
		}
		claims, hdr, err := f.verifyAssertion(p.Get("client_assertion"))
		if err != nil {
			oauthErr("invalid_client", err.Error())
			return
		}
		f.mu.Lock()
		f.assertion, f.header = claims, hdr
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"access_token": "fake-backend-token", "token_type": "Bearer", "expires_in": 300, "scope": p.Get("scope"),
		})
	default:
		oauthErr("unsupported_grant_type", p.Get("grant_type"))
	}
}

// verifyAssertion checks a client assertion as SMART Backend Services and Keycloak 26 do.
func (f *fakeKeycloak) verifyAssertion(s string) (map[string]any, jose.Header, error) {
	tok, err := jwt.ParseSigned(s, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return nil, jose.Header{}, err
	}
	hdr := tok.Headers[0]
	if hdr.KeyID != f.backendKID {
		return nil, hdr, fmt.Errorf("kid %q", hdr.KeyID)
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(f.backendKey, &std, &all); err != nil {
		return nil, hdr, err
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: f.backendID, Subject: f.backendID,
		AnyAudience: jwt.Audience{f.tokenURL()}, Time: time.Now()}, 0); err != nil {
		return nil, hdr, err
	}
	if _, isString := all["aud"].(string); !isString {
		return nil, hdr, fmt.Errorf("aud must be one value, got %v", all["aud"])
	}
	if std.Expiry == nil || std.IssuedAt == nil || std.Expiry.Time().Sub(std.IssuedAt.Time()) > 5*time.Minute {
		return nil, hdr, fmt.Errorf("exp more than 5 minutes after iat")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if std.ID == "" || f.jtis[std.ID] {
		return nil, hdr, fmt.Errorf("jti missing or reused")
	}
	f.jtis[std.ID] = true
	return all, hdr, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestAuthorizationCodePKCEAgainstFake(t *testing.T) {
	f := newFakeKeycloak(t)
	scopes := []string{"openid", "launch/patient", "patient/*.rs"}
	tok, err := AuthorizationCodePKCE(f.clientCtx(), f.issuer(), "patient-app", f.redirectURI, scopes, "member01", "fhirwall-demo")
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "fake-access-token" || tok.IDToken != "fake-id-token" || tok.Patient != "member-01" ||
		tok.ExpiresIn != 300 || tok.Scope != strings.Join(scopes, " ") || tok.RefreshToken != "fake-refresh" {
		t.Errorf("token = %+v", tok)
	}
	if got := tok.Scopes(); len(got) != 3 {
		t.Errorf("Scopes() = %v", got)
	}
}

func TestAuthorizationCodePKCEFailuresAgainstFake(t *testing.T) {
	for _, tc := range []struct {
		name, user, password, want string
		setup                      func(*fakeKeycloak)
	}{
		{"wrong password", "member01", "nope", "Invalid username or password", nil},
		{"state mismatch", "member01", "fhirwall-demo", "state", func(f *fakeKeycloak) { f.tamperState = true }},
		{"error response", "member01", "fhirwall-demo", "access_denied", func(f *fakeKeycloak) { f.denyWith = "access_denied" }},
		{"issuer mismatch", "member01", "fhirwall-demo", "issuer", func(f *fakeKeycloak) { f.issuerInDisc = "http://elsewhere/realms/test" }},
		{"unknown client", "member01", "fhirwall-demo", "400", func(f *fakeKeycloak) { f.clientID = "other-app" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeKeycloak(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			_, err := AuthorizationCodePKCE(f.clientCtx(), f.issuer(), "patient-app", f.redirectURI,
				[]string{"openid"}, tc.user, tc.password)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestBackendServiceTokenAgainstFake(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{{"RSA", rsaKey, "RS384"}, {"P-384", ecKey, "ES384"}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeKeycloak(t)
			f.backendID, f.backendKID, f.backendKey = "provider-org-a", "kid-1", tc.key.Public()
			for i := 0; i < 2; i++ { // twice: the jti must differ
				tok, err := BackendServiceToken(context.Background(), f.issuer(), "provider-org-a", tc.key, "kid-1",
					[]string{"system/*.rs", "system/Group.rs"})
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken != "fake-backend-token" || tok.Scope != "system/*.rs system/Group.rs" || tok.ExpiresIn != 300 {
					t.Errorf("token = %+v", tok)
				}
			}
			if f.header.Algorithm != tc.alg {
				t.Errorf("alg = %s, want %s", f.header.Algorithm, tc.alg)
			}
			if typ, _ := f.header.ExtraHeaders["typ"].(string); typ != "JWT" {
				t.Errorf("typ = %v", f.header.ExtraHeaders["typ"])
			}
		})
	}
}

func TestBackendServiceTokenRejectsWeakCurve(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := ClientAssertion("c", "http://x/token", k, "k", time.Now()); err == nil {
		t.Fatal("P-256 key accepted; SMART Backend Services names ES384")
	}
}

// The test keys must match the JWKS that config/keycloak/fhirwall-realm.json inlines.
func TestFixtureKeysMatchJWKS(t *testing.T) {
	realm, err := os.ReadFile(filepath.Join("..", "..", "config", "keycloak", "fhirwall-realm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Clients []struct {
			ClientID   string            `json:"clientId"`
			Attributes map[string]string `json:"attributes"`
		} `json:"clients"`
	}
	if err := json.Unmarshal(realm, &r); err != nil {
		t.Fatal(err)
	}
	inlined := map[string]string{}
	for _, c := range r.Clients {
		inlined[c.ClientID] = c.Attributes["jwks.string"]
	}
	for _, client := range []string{"provider-org-a", "provider-org-b", "payer-b", "payer-c"} {
		dir := filepath.Join("..", "fixtures", "keys")
		key, err := LoadPrivateKey(filepath.Join(dir, client+".TEST-ONLY.key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.ReadFile(filepath.Join(dir, client+".TEST-ONLY.jwks.json"))
		if err != nil {
			t.Fatal(err)
		}
		for where, raw := range map[string]string{"fixture file": string(file), "realm": inlined[client]} {
			var set jose.JSONWebKeySet
			if err := json.Unmarshal([]byte(raw), &set); err != nil {
				t.Fatalf("%s %s: %v", client, where, err)
			}
			ks := set.Key(client + "-test-1")
			if len(ks) != 1 || ks[0].Algorithm != "RS384" || ks[0].Use != "sig" {
				t.Fatalf("%s %s: want one RS384 sig key with kid %s-test-1, got %+v", client, where, client, ks)
			}
			if !key.Public().(*rsa.PublicKey).Equal(ks[0].Key) {
				t.Errorf("%s %s: public key does not match the private key", client, where)
			}
		}
	}
}

func TestUnverifiedClaims(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, err := ClientAssertion("me", "http://as/token", k, "k1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := UnverifiedClaims(s)
	if err != nil {
		t.Fatal(err)
	}
	if c["iss"] != "me" || c["sub"] != "me" || c["aud"] != "http://as/token" || c["jti"] == "" {
		t.Errorf("claims = %v", c)
	}
	if _, err := UnverifiedClaims("not.a.jwt"); err == nil {
		t.Error("garbage accepted")
	}
}

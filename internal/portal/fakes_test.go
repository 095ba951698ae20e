package portal

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeIdP is an identity provider admin port in memory.
type fakeIdP struct {
	mu      sync.Mutex
	grants  map[string][]string // subject → client ids
	rotated []string
	revoked []string // subject/client
	fail    bool
}

func (f *fakeIdP) RotateSecret(_ context.Context, clientID string, _ time.Duration) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return "", errors.New("keycloak down (fake)")
	}
	f.rotated = append(f.rotated, clientID)
	return "rotated-secret-" + clientID, nil
}

func (f *fakeIdP) EndSessions(context.Context, string) error { return nil }

func (f *fakeIdP) Grants(_ context.Context, subject string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("keycloak down (fake)")
	}
	return slices.Clone(f.grants[subject]), nil
}

func (f *fakeIdP) RevokeGrant(_ context.Context, subject, clientID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, subject+"/"+clientID)
	f.grants[subject] = slices.DeleteFunc(f.grants[subject], func(s string) bool { return s == clientID })
	return nil
}

// fakeRevoker records the gateway revocations it is asked for.
type fakeRevoker struct {
	mu    sync.Mutex
	calls []string // subject/client/actor
}

func (f *fakeRevoker) RevokeGrant(_ context.Context, subject, clientID, actor string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, subject+"/"+clientID+"/"+actor)
	return nil
}

// fakeOIDCProvider is an OpenID provider in httptest: discovery, JWKS, an authorization endpoint that is
// never visited (tests read its URL) and a token endpoint that checks the client, the code and PKCE and
// issues RS256 tokens built from the pending authorization.
type fakeOIDCProvider struct {
	srv          *httptest.Server
	key          *rsa.PrivateKey
	clientID     string
	clientSecret string

	mu    sync.Mutex
	codes map[string]fakeAuthz
	// azp overrides the access token's azp (a token issued to another client).
	azp string
}

type fakeAuthz struct {
	challenge, nonce, sub, user string
	roles                       []string
}

func newFakeOIDCProvider(t *testing.T) *fakeOIDCProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeOIDCProvider{key: key, clientID: "fhirwall-portal", clientSecret: "portal-secret", codes: map[string]fakeAuthz{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "authorization_endpoint": p.srv.URL + "/auth",
			"token_endpoint": p.srv.URL + "/token", "jwks_uri": p.srv.URL + "/jwks", "end_session_endpoint": p.srv.URL + "/logout",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		e := big.NewInt(int64(key.E)).Bytes()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(e)}}})
	})
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// authorize is what the user's sign-in at the provider leaves behind: a code for the pending request.
func (p *fakeOIDCProvider) authorize(t *testing.T, authURL, sub, user string, roles ...string) (code, state string) {
	t.Helper()
	u := mustParse(t, authURL)
	q := u.Query()
	if q.Get("client_id") != p.clientID || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" {
		t.Fatalf("authorization request without client, PKCE or nonce: %s", authURL)
	}
	code = rand.Text()
	p.mu.Lock()
	p.codes[code] = fakeAuthz{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), sub: sub, user: user, roles: roles}
	p.mu.Unlock()
	return code, q.Get("state")
}

func (p *fakeOIDCProvider) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.FormValue("client_id"), r.FormValue("client_secret")
	}
	if id != p.clientID || secret != p.clientSecret {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	a, found := p.codes[r.FormValue("code")]
	delete(p.codes, r.FormValue("code"))
	azp := p.azp
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.FormValue("code_verifier")))
	if !found || base64.RawURLEncoding.EncodeToString(sum[:]) != a.challenge {
		http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
		return
	}
	if azp == "" {
		azp = p.clientID
	}
	now := time.Now().Unix()
	idt := p.sign(map[string]any{"iss": p.srv.URL, "aud": p.clientID, "sub": a.sub, "exp": now + 300, "iat": now,
		"nonce": a.nonce, "preferred_username": a.user, "azp": p.clientID})
	at := p.sign(map[string]any{"iss": p.srv.URL, "aud": "account", "sub": a.sub, "exp": now + 300, "iat": now,
		"azp": azp, "realm_access": map[string]any{"roles": a.roles}})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": at, "id_token": idt, "token_type": "Bearer", "expires_in": 300})
}

func (p *fakeOIDCProvider) sign(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, p.key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (p *fakeOIDCProvider) setAZP(azp string) { p.mu.Lock(); p.azp = azp; p.mu.Unlock() }

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

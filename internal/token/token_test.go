package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeIssuer is an OIDC discovery document and JWKS served by httptest, with a key to sign test tokens.
type fakeIssuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks",
			"authorization_endpoint": f.srv.URL + "/auth", "token_endpoint": f.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIssuer) sign(t *testing.T, claims map[string]any, extra map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1")
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: f.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *fakeIssuer) claims() map[string]any {
	return map[string]any{"iss": f.srv.URL, "aud": []string{"fhirwall", "account"}, "sub": "user-1", "azp": "patient-app",
		"typ": "Bearer", "scope": "openid patient/*.rs", "patient": "member-01", "jti": "j-1",
		"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()}
}

func newVerifier(t *testing.T, f *fakeIssuer) *Verifier {
	v, err := NewVerifier([]IssuerConfig{{URL: f.srv.URL, Audience: "fhirwall"}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidAccessTokenBecomesIdentity(t *testing.T) {
	f := newFakeIssuer(t)
	id, err := newVerifier(t, f).Verify(context.Background(), f.sign(t, f.claims(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.ClientID != "patient-app" || id.Patient != "member-01" || id.Subject != "user-1" || id.JTI != "j-1" || len(id.Scopes) != 2 {
		t.Fatalf("got %+v", id)
	}
}

func TestBadTokensAreRefused(t *testing.T) {
	f := newFakeIssuer(t)
	other := newFakeIssuer(t)
	v := newVerifier(t, f)
	mut := func(k string, val any) string {
		c := f.claims()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return f.sign(t, c, nil)
	}
	cases := map[string]string{
		"wrong audience":        mut("aud", "someone-else"),
		"expired":               mut("exp", time.Now().Add(-time.Hour).Unix()),
		"issuer with slash":     mut("iss", f.srv.URL+"/"),
		"ID token":              mut("typ", "ID"),
		"no client":             mut("azp", nil),
		"not yet valid":         mut("nbf", time.Now().Add(time.Hour).Unix()),
		"embedded jku":          f.sign(t, f.claims(), map[jose.HeaderKey]any{"jku": "http://evil/jwks"}),
		"signed by another key": other.sign(t, f.claims(), nil),
		"alg none":              "eyJhbGciOiJub25lIn0." + "eyJpc3MiOiIifQ.",
		"garbage":               "not-a-jwt",
	}
	for name, raw := range cases {
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func TestUnreachableIssuerFailsClosed(t *testing.T) {
	f := newFakeIssuer(t)
	raw := f.sign(t, f.claims(), nil)
	v := newVerifier(t, f)
	f.srv.Close()
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
}

func TestSymmetricAlgorithmsCannotBeConfigured(t *testing.T) {
	if _, err := NewVerifier([]IssuerConfig{{URL: "http://x", Audience: "a", Algorithms: []string{"HS256"}}}, time.Now); err == nil {
		t.Fatal("HS256 accepted")
	}
}

func TestFromAuthorization(t *testing.T) {
	if _, err := FromAuthorization(nil); !errors.Is(err, ErrMissing) {
		t.Errorf("no header: %v", err)
	}
	for _, bad := range [][]string{{"Bearer a", "Bearer b"}, {"Basic abc"}, {"Bearer "}, {"Bearer a b"}} {
		if _, err := FromAuthorization(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if tok, err := FromAuthorization([]string{"bearer abc.def.ghi"}); err != nil || tok != "abc.def.ghi" {
		t.Errorf("got %q %v", tok, err)
	}
}

func FuzzFromAuthorization(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "")
	f.Add("bearer a", "Bearer b")
	f.Add("Basic Zm9vOmJhcg==", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		values := []string{a}
		if b != "" {
			values = append(values, b)
		}
		tok, err := FromAuthorization(values)
		if err != nil {
			return
		}
		if len(values) != 1 || tok == "" || len(tok) > MaxTokenBytes || strings.ContainsAny(tok, " \t,") {
			t.Fatalf("accepted %q as %q", values, tok)
		}
	})
}

package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeClock is a settable clock; it starts on a whole second so claim edges are exact.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeIssuer is an OIDC discovery document and JWKS served by httptest, with keys to sign test tokens.
type fakeIssuer struct {
	srv        *httptest.Server
	key        *rsa.PrivateKey
	kid        string
	jwksFetch  atomic.Int32
	jwksDelay  time.Duration
	jwksDown   atomic.Bool
	mu         sync.Mutex
	publicKeys []jose.JSONWebKey
}

func newFakeIssuer(t testing.TB) *fakeIssuer {
	t.Helper()
	key := newRSAKey(t)
	f := &fakeIssuer{key: key, kid: "k1"}
	f.publicKeys = []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/jwks",
			"authorization_endpoint": f.srv.URL + "/auth", "token_endpoint": f.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.jwksFetch.Add(1)
		time.Sleep(f.jwksDelay)
		if f.jwksDown.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: f.publicKeys})
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

var (
	rsaKeyOnce sync.Once
	rsaKeys    []*rsa.PrivateKey
	rsaKeyNext atomic.Int32
)

// newRSAKey hands out keys from a small pool generated once: 2048-bit generation dominates test time.
func newRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaKeyOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
		}
	})
	return rsaKeys[int(rsaKeyNext.Add(1)-1)%len(rsaKeys)]
}

// rotate publishes a new key under kid and signs with it from now on.
func (f *fakeIssuer) rotate(t testing.TB, kid string) {
	key := newRSAKey(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key, f.kid = key, kid
	f.publicKeys = append(f.publicKeys, jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
}

func (f *fakeIssuer) signWith(t testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any, opts *jose.SignerOptions) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (f *fakeIssuer) sign(t testing.TB, claims map[string]any, extra map[jose.HeaderKey]any) string {
	t.Helper()
	f.mu.Lock()
	key, kid := f.key, f.kid
	f.mu.Unlock()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	return f.signWith(t, jose.RS256, key, claims, opts)
}

func (f *fakeIssuer) claims(now time.Time) map[string]any {
	return map[string]any{"iss": f.srv.URL, "aud": []string{"fhirwall", "account"}, "sub": "user-1", "azp": "patient-app",
		"typ": "Bearer", "scope": "openid patient/*.rs", "patient": "member-01", "jti": "j-1",
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix()}
}

func newVerifier(t testing.TB, clock *fakeClock, skew time.Duration, issuers ...*fakeIssuer) *Verifier {
	t.Helper()
	var cfgs []IssuerConfig
	for _, f := range issuers {
		cfgs = append(cfgs, IssuerConfig{URL: f.srv.URL, Audience: "fhirwall"})
	}
	v, err := NewVerifier(cfgs, Options{ClockSkew: skew, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidAccessTokenBecomesIdentity(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	c := f.claims(clock.Now())
	c["azp"], c["fhirwall_org"], c["scope"] = "provider-org-a", "Organization/org-a", "system/*.rs"
	delete(c, "patient")
	id, err := newVerifier(t, clock, DefaultClockSkew, f).Verify(context.Background(), f.sign(t, c, nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.ClientID != "provider-org-a" || id.Org != "Organization/org-a" || id.Subject != "user-1" || id.JTI != "j-1" ||
		len(id.Scopes) != 1 || id.Issuer != f.srv.URL || !id.Expiry.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("got %+v", id)
	}
}

// FHIR-NOTES "Known ways through a naive FHIR gateway": tokens.
func TestTokenAttacksAreRefused(t *testing.T) {
	f, other, untrusted := newFakeIssuer(t), newFakeIssuer(t), newFakeIssuer(t)
	clock := newFakeClock()
	now := clock.Now()
	v := newVerifier(t, clock, DefaultClockSkew, f, other)
	mut := func(k string, val any) string {
		c := f.claims(now)
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return f.sign(t, c, nil)
	}
	pubPEM := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1")
	otherIssuerClaims := other.claims(now)

	cases := map[string]string{
		"alg none":                            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + "eyJpc3MiOiIifQ.",
		"alg none claiming the issuer":        noneToken(t, f.claims(now)),
		"HS256 keyed with the RSA public key": f.signWith(t, jose.HS256, pubPEM, f.claims(now), kid),
		"algorithm not on the allow-list":     f.signWith(t, jose.RS384, f.key, f.claims(now), kid),
		"ES256 with a key not in the JWKS":    f.signWith(t, jose.ES256, ecKey, f.claims(now), kid),
		"jku header":                          f.sign(t, f.claims(now), map[jose.HeaderKey]any{"jku": "http://evil/jwks"}),
		"x5u header":                          f.sign(t, f.claims(now), map[jose.HeaderKey]any{"x5u": "http://evil/cert"}),
		"embedded jwk":                        f.signWith(t, jose.RS256, f.key, f.claims(now), (&jose.SignerOptions{EmbedJWK: true}).WithType("JWT")),
		"expired":                             mut("exp", now.Add(-time.Hour).Unix()),
		"no exp":                              mut("exp", nil),
		"nbf in the future":                   mut("nbf", now.Add(time.Hour).Unix()),
		"iat in the future":                   mut("iat", now.Add(time.Hour).Unix()),
		"issuer with trailing slash":          mut("iss", f.srv.URL+"/"),
		"issuer in another case":              mut("iss", strings.ToUpper(f.srv.URL)),
		"wrong audience":                      mut("aud", "someone-else"),
		"no audience":                         mut("aud", nil),
		"ID token":                            mut("typ", "ID"),
		"no client":                           mut("azp", nil),
		"no subject":                          mut("sub", nil),
		"unknown kid":                         f.sign(t, f.claims(now), map[jose.HeaderKey]any{"kid": "nope"}),
		"signed by another issuer's key":      other.sign(t, f.claims(now), nil),
		"another trusted issuer's token signed by the first": f.sign(t, otherIssuerClaims, nil),
		"untrusted issuer, valid signature":                  untrusted.sign(t, untrusted.claims(now), nil),
		"oversized":                                          f.sign(t, map[string]any{"iss": f.srv.URL, "pad": strings.Repeat("a", MaxTokenBytes)}, nil),
		"garbage":                                            "not-a-jwt",
		"garbage with two dots":                              "a.b.c",
		"empty":                                              "",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), raw)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("want ErrInvalid, got %v", err)
			}
			t.Log(err)
		})
	}
	// The same verifier still accepts both issuers' own tokens: the refusals above came from the tokens.
	for _, is := range []*fakeIssuer{f, other} {
		if _, err := v.Verify(context.Background(), is.sign(t, is.claims(now), nil)); err != nil {
			t.Errorf("%s: %v", is.srv.URL, err)
		}
	}
}

func noneToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// Each skew edge is one second inside or outside the leeway, with a 60 s skew and with none.
func TestClockSkewIsBoundedAndAppliedToExpNbfIat(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	now := clock.Now()
	cases := []struct {
		name  string
		skew  time.Duration
		claim string
		at    time.Duration // claim value relative to now
		ok    bool
	}{
		{"exp inside skew", time.Minute, "exp", -59 * time.Second, true},
		{"exp at skew", time.Minute, "exp", -60 * time.Second, true},
		{"exp past skew", time.Minute, "exp", -61 * time.Second, false},
		{"nbf inside skew", time.Minute, "nbf", 59 * time.Second, true},
		{"nbf at skew", time.Minute, "nbf", 60 * time.Second, true},
		{"nbf past skew", time.Minute, "nbf", 61 * time.Second, false},
		{"iat inside skew", time.Minute, "iat", 59 * time.Second, true},
		{"iat past skew", time.Minute, "iat", 61 * time.Second, false},
		{"exp one second ago without skew", 0, "exp", -time.Second, false},
		{"exp now without skew", 0, "exp", 0, true},
		{"nbf one second ahead without skew", 0, "nbf", time.Second, false},
		{"iat one second ahead without skew", 0, "iat", time.Second, false},
		{"nbf within go-oidc's own 5 min leeway", time.Minute, "nbf", 4 * time.Minute, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := f.claims(now)
			c[tc.claim] = now.Add(tc.at).Unix()
			_, err := newVerifier(t, clock, tc.skew, f).Verify(context.Background(), f.sign(t, c, nil))
			if tc.ok && err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
		})
	}
}

func TestConfigRefusesWeakAlgorithmsAndUnboundedSkew(t *testing.T) {
	cases := map[string]struct {
		cfgs []IssuerConfig
		opts Options
	}{
		"HS256":              {[]IssuerConfig{{URL: "http://x", Audience: "a", Algorithms: []string{"HS256"}}}, Options{}},
		"none":               {[]IssuerConfig{{URL: "http://x", Audience: "a", Algorithms: []string{"none"}}}, Options{}},
		"unknown algorithm":  {[]IssuerConfig{{URL: "http://x", Audience: "a", Algorithms: []string{"RS1"}}}, Options{}},
		"skew over 5 min":    {[]IssuerConfig{{URL: "http://x", Audience: "a"}}, Options{ClockSkew: 6 * time.Minute}},
		"negative skew":      {[]IssuerConfig{{URL: "http://x", Audience: "a"}}, Options{ClockSkew: -time.Second}},
		"issuer twice":       {[]IssuerConfig{{URL: "http://x", Audience: "a"}, {URL: "http://x", Audience: "b"}}, Options{}},
		"no audience":        {[]IssuerConfig{{URL: "http://x"}}, Options{}},
		"introspection half": {[]IssuerConfig{{URL: "http://x", Audience: "a", Introspection: &IntrospectionConfig{URL: "http://x/i"}}}, Options{}},
	}
	for name, tc := range cases {
		if _, err := NewVerifier(tc.cfgs, tc.opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewVerifier([]IssuerConfig{{URL: "http://x", Audience: "a", Algorithms: []string{"RS256", "ES384", "PS256"}}}, Options{ClockSkew: MaxClockSkew}); err != nil {
		t.Errorf("asymmetric algorithms refused: %v", err)
	}
}

func TestUnknownKidFloodFetchesJWKSOnce(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	v := newVerifier(t, clock, DefaultClockSkew, f)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	if n := f.jwksFetch.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for the first token, want 1", n)
	}
	// Within the interval an unknown kid costs no fetch at all.
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), map[jose.HeaderKey]any{"kid": "early"})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown kid: want ErrInvalid, got %v", err)
	}
	if n := f.jwksFetch.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for an unknown kid inside the interval, want 1", n)
	}
	clock.Advance(DefaultMinRefetchInterval)
	f.jwksDelay = 20 * time.Millisecond // callers overlap the one refetch
	var wg sync.WaitGroup
	for i := range 200 {
		raw := f.sign(t, f.claims(clock.Now()), map[jose.HeaderKey]any{"kid": "flood-" + string(rune('a'+i%26)) + strings.Repeat("x", i)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(ctx, raw); !errors.Is(err, ErrInvalid) {
				t.Errorf("unknown kid: want ErrInvalid, got %v", err)
			}
		}()
	}
	wg.Wait()
	if n := f.jwksFetch.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times after an unknown-kid flood, want 2 (one refetch)", n)
	}
	clock.Advance(DefaultMinRefetchInterval + time.Second)
	_, _ = v.Verify(ctx, f.sign(t, f.claims(clock.Now()), map[jose.HeaderKey]any{"kid": "later"}))
	if n := f.jwksFetch.Load(); n != 3 {
		t.Fatalf("JWKS fetched %d times once the interval passed, want 3", n)
	}
}

func TestConcurrentFirstCallersShareOneJWKSFetch(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	f.jwksDelay = 50 * time.Millisecond
	v := newVerifier(t, clock, DefaultClockSkew, f)
	var wg sync.WaitGroup
	for i := range 50 {
		c := f.claims(clock.Now())
		c["jti"] = string(rune('a' + i)) // distinct tokens: no cache hits
		raw := f.sign(t, c, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), raw); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := f.jwksFetch.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func TestRotatedKeyIsFetchedOnceTheIntervalAllows(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	v := newVerifier(t, clock, DefaultClockSkew, f)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	f.rotate(t, "k2")
	clock.Advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), nil)); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
}

func TestJWKSOutageKeepsCachedKeys(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	v := newVerifier(t, clock, DefaultClockSkew, f)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	f.jwksDown.Store(true)
	clock.Advance(keysMaxAge + time.Minute) // held keys are stale: a refresh is tried and fails
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), nil)); err != nil {
		t.Fatalf("cached key no longer used: %v", err)
	}
	clock.Advance(DefaultMinRefetchInterval)
	if _, err := v.Verify(ctx, f.sign(t, f.claims(clock.Now()), map[jose.HeaderKey]any{"kid": "new"})); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown kid during an outage with keys held: want ErrInvalid, got %v", err)
	}
}

func TestUnreachableIssuerFailsClosed(t *testing.T) {
	t.Run("discovery down", func(t *testing.T) {
		f, clock := newFakeIssuer(t), newFakeClock()
		raw := f.sign(t, f.claims(clock.Now()), nil)
		v := newVerifier(t, clock, DefaultClockSkew, f)
		f.srv.Close()
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("want ErrUnavailable, got %v", err)
		}
	})
	t.Run("JWKS down before any key was fetched", func(t *testing.T) {
		f, clock := newFakeIssuer(t), newFakeClock()
		f.jwksDown.Store(true)
		v := newVerifier(t, clock, DefaultClockSkew, f)
		for range 3 { // the second and third are throttled: no fetch, still 503
			if _, err := v.Verify(context.Background(), f.sign(t, f.claims(clock.Now()), nil)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("want ErrUnavailable, got %v", err)
			}
		}
		if n := f.jwksFetch.Load(); n != 1 {
			t.Fatalf("JWKS fetched %d times, want 1", n)
		}
		f.jwksDown.Store(false)
		clock.Advance(retryNoKeysIn)
		if _, err := v.Verify(context.Background(), f.sign(t, f.claims(clock.Now()), nil)); err != nil {
			t.Fatalf("after the JWKS came back: %v", err)
		}
	})
}

func TestVerifiedTokenIsCachedUntilExpiryOrFiveMinutes(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	v := newVerifier(t, clock, 0, f)
	ctx := context.Background()
	c := f.claims(clock.Now())
	c["exp"] = clock.Now().Add(time.Hour).Unix()
	long := f.sign(t, c, nil)
	short := f.sign(t, f.claims(clock.Now()), nil) // exp in one minute
	for _, raw := range []string{long, short} {
		if _, err := v.Verify(ctx, raw); err != nil {
			t.Fatal(err)
		}
	}
	f.srv.Close() // from here only the cache can answer
	id, err := v.Verify(ctx, long)
	if err != nil {
		t.Fatalf("cached token: %v", err)
	}
	id.Scopes[0] = "patient/*.cruds" // a caller's change must not reach the cache
	if id, _ := v.Verify(ctx, long); id.Scopes[0] != "openid" {
		t.Fatalf("cache entry was changed through a returned identity: %v", id.Scopes)
	}
	clock.Advance(time.Minute + time.Second)
	if _, err := v.Verify(ctx, short); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired token served from the cache: %v", err)
	}
	clock.Advance(MaxCacheTTL)
	if v.cache.len() == 0 {
		t.Fatal("cache empty before the long token was looked up again")
	}
	if _, err := v.Verify(ctx, long); err != nil { // re-verified with the held key, not served stale
		t.Fatalf("long token re-verified: %v", err)
	}
}

func TestIdentityCacheIsBoundedAndEvictsOldest(t *testing.T) {
	c := newIdentityCache(3)
	now := time.Now()
	for i := range 5 {
		c.put(cacheKey(string(rune('a'+i))), Identity{ClientID: string(rune('a' + i))}, now.Add(time.Minute))
	}
	if n := c.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := c.get(cacheKey(string(rune('a'+i))), now); ok != want {
			t.Errorf("entry %c present=%v, want %v", 'a'+i, ok, want)
		}
	}
}

func TestFromAuthorization(t *testing.T) {
	if _, err := FromAuthorization(nil); !errors.Is(err, ErrMissing) {
		t.Errorf("no header: %v", err)
	}
	for _, bad := range [][]string{{"Bearer a", "Bearer b"}, {"Basic abc"}, {"Bearer "}, {"Bearer a b"}, {"Bearer " + strings.Repeat("a", MaxTokenBytes+1)}} {
		if _, err := FromAuthorization(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%.40q: %v", bad, err)
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

// FuzzVerify feeds arbitrary strings to a verifier trusting a live fake issuer. No input may panic, and none
// may verify: the seeds are well-formed tokens the issuer did not sign, so no mutation can be valid.
func FuzzVerify(f *testing.F) {
	is, clock := newFakeIssuer(f), newFakeClock()
	v := newVerifier(f, clock, DefaultClockSkew, is)
	attacker := newFakeIssuer(f)
	f.Add(attacker.sign(f, is.claims(clock.Now()), nil))
	f.Add(noneTokenF(f, is.claims(clock.Now())))
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln")
	f.Add("a.b.c")
	f.Add("opaque-token")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		if id, err := v.Verify(context.Background(), raw); err == nil {
			t.Fatalf("accepted %q as %+v", raw, id)
		}
	})
}

func noneTokenF(f *testing.F, claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(b) + "."
}

func BenchmarkVerifyCached(b *testing.B) {
	f, clock := newFakeIssuer(b), newFakeClock()
	v := newVerifier(b, clock, DefaultClockSkew, f)
	raw := f.sign(b, f.claims(clock.Now()), nil)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	f, clock := newFakeIssuer(b), newFakeClock()
	v, err := NewVerifier([]IssuerConfig{{URL: f.srv.URL, Audience: "fhirwall"}}, Options{ClockSkew: DefaultClockSkew, Now: clock.Now, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	raw := f.sign(b, f.claims(clock.Now()), nil)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), raw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIssuedAtAndAuthTimeComeFromTheirClaims(t *testing.T) {
	f, clock := newFakeIssuer(t), newFakeClock()
	signedIn := clock.Now().Add(-3 * time.Hour)
	with := f.claims(clock.Now())
	with["auth_time"] = signedIn.Unix()
	without := f.claims(clock.Now())
	delete(without, "iat")
	v := newVerifier(t, clock, DefaultClockSkew, f)
	id, err := v.Verify(context.Background(), f.sign(t, with, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !id.IssuedAt.Equal(time.Unix(clock.Now().Unix(), 0)) || !id.AuthTime.Equal(time.Unix(signedIn.Unix(), 0)) {
		t.Fatalf("issued at %v, auth time %v; want %v, %v", id.IssuedAt, id.AuthTime, clock.Now(), signedIn)
	}
	id, err = v.Verify(context.Background(), f.sign(t, without, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !id.IssuedAt.IsZero() || !id.AuthTime.IsZero() {
		t.Fatalf("absent claims: issued at %v, auth time %v; want both zero", id.IssuedAt, id.AuthTime)
	}
}

package revocation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirwall/fhirwall/internal/capability"
	"github.com/fhirwall/fhirwall/internal/token"
)

// issuerFake is an authorization server's revocation endpoint: it accepts client "app-1" with secret
// "s3cret" (Basic or post), any client_assertion of app-1 and public client "public-app", answers status
// (200 unless set) and remembers what it was sent.
type issuerFake struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	got    []url.Values
	auth   []string
}

func newIssuerFake(t *testing.T) *issuerFake {
	f := &issuerFake{status: http.StatusOK}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		f.mu.Lock()
		f.got, f.auth = append(f.got, r.PostForm), append(f.auth, r.Header.Get("Authorization"))
		status := f.status
		f.mu.Unlock()
		user, pass, basic := r.BasicAuth()
		authenticated := (basic && user == "app-1" && pass == "s3cret") ||
			(r.PostForm.Get("client_id") == "app-1" && r.PostForm.Get("client_secret") == "s3cret") ||
			r.PostForm.Get("client_assertion") != "" ||
			(r.PostForm.Get("client_id") == "public-app" && r.PostForm.Get("client_secret") == "")
		switch {
		case status != http.StatusOK:
			w.WriteHeader(status)
		case !authenticated:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *issuerFake) calls() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.got) }

// discoveryFake names the issuer fake's endpoint, or fails.
type discoveryFake struct {
	endpoint string
	err      error
}

func (f discoveryFake) Discover(context.Context, string) (*capability.Endpoints, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &capability.Endpoints{Issuer: "https://idp", RevocationEndpoint: f.endpoint}, nil
}

// recorderFake remembers revoked tokens, or fails.
type recorderFake struct {
	err    error
	tokens []Token
	actors []string
}

func (f *recorderFake) RevokeToken(_ context.Context, t Token, actor, _ string) error {
	if f.err != nil {
		return f.err
	}
	f.tokens, f.actors = append(f.tokens, t), append(f.actors, actor)
	return nil
}

type handlerSetup struct {
	issuer   *issuerFake
	verifier *verifierFake
	store    *recorderFake
	h        *Handler
}

func newHandlerSetup(t *testing.T) *handlerSetup {
	s := &handlerSetup{issuer: newIssuerFake(t), store: &recorderFake{},
		verifier: &verifierFake{id: token.Identity{ClientID: "app-1", Subject: "svc-1", JTI: "j-1", Expiry: time.Now().Add(time.Hour)}}}
	h, err := NewHandler(HandlerConfig{Issuer: "https://idp", Discovery: discoveryFake{endpoint: s.issuer.srv.URL},
		Verifier: s.verifier, Store: s.store, PerMinute: 600})
	if err != nil {
		t.Fatal(err)
	}
	s.h = h
	return s
}

type call struct {
	method, contentType, body, auth string
}

func (s *handlerSetup) do(c call) *httptest.ResponseRecorder {
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.contentType == "" {
		c.contentType = "application/x-www-form-urlencoded"
	}
	r := httptest.NewRequest(c.method, Path, strings.NewReader(c.body))
	r.Header.Set("Content-Type", c.contentType)
	if c.auth != "" {
		r.Header.Set("Authorization", c.auth)
	}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, r)
	return w
}

func oauthErrorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return e.Error
}

func basic(user, pass string) string {
	r := http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

// assertion is an unsigned-by-anyone-trusted client assertion of client: only its shape matters here.
func assertion(t *testing.T, client string) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	s, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: client, Subject: client, ID: "a-1"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEachClientAuthenticationIsForwardedAndTheTokenRecorded(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    call
	}{
		{"client_secret_basic", call{body: "token=tok-1&token_type_hint=access_token", auth: basic("app-1", "s3cret")}},
		{"client_secret_post", call{body: "token=tok-1&client_id=app-1&client_secret=s3cret"}},
		{"private_key_jwt", call{body: "token=tok-1&client_assertion_type=" + url.QueryEscape(jwtBearer) + "&client_assertion=" + assertion(t, "app-1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newHandlerSetup(t)
			w := s.do(tc.c)
			if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("status %d body %q cache %q; want 200, empty, no-store", w.Code, w.Body, w.Header().Get("Cache-Control"))
			}
			if len(s.store.tokens) != 1 || s.store.tokens[0].JTI != "j-1" || s.store.actors[0] != "client:app-1" {
				t.Fatalf("recorded %+v by %v; want j-1 by client:app-1", s.store.tokens, s.store.actors)
			}
			sent := s.issuer.got[0]
			if sent.Get("token") != "tok-1" || (tc.c.auth != "") != (s.issuer.auth[0] != "") {
				t.Fatalf("issuer got %v with Authorization %q", sent, s.issuer.auth[0])
			}
		})
	}
}

func TestPublicClientIdentifiedByClientIDOnly(t *testing.T) {
	s := newHandlerSetup(t)
	s.verifier.id.ClientID = "public-app"
	if w := s.do(call{body: "token=tok-1&client_id=public-app"}); w.Code != http.StatusOK || len(s.store.tokens) != 1 {
		t.Fatalf("status %d, recorded %v", w.Code, s.store.tokens)
	}
}

func TestOnlyKnownParametersReachTheIssuer(t *testing.T) {
	s := newHandlerSetup(t)
	s.do(call{body: "token=tok-1&token_type_hint=weird&extra=1&redirect_uri=x", auth: basic("app-1", "s3cret")})
	if got := s.issuer.got[0]; len(got) != 1 || got.Get("token") != "tok-1" {
		t.Fatalf("issuer got %v; want the token alone (unknown hint and parameters dropped)", got)
	}
}

func TestIssuerRefusalIsRelayedAndNothingIsRecorded(t *testing.T) {
	s := newHandlerSetup(t)
	w := s.do(call{body: "token=tok-1", auth: basic("app-1", "wrong")})
	if w.Code != http.StatusUnauthorized || oauthErrorOf(t, w) != "invalid_client" || w.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("status %d body %q; want 401 invalid_client with a challenge", w.Code, w.Body)
	}
	if len(s.store.tokens) != 0 {
		t.Fatalf("recorded %v after the issuer refused", s.store.tokens)
	}
}

func TestTokensTheGatewayWouldRefuseOrOfAnotherClientAreNotRecorded(t *testing.T) {
	for name, setup := range map[string]func(*handlerSetup){
		"invalid or expired token": func(s *handlerSetup) { s.verifier.err = token.ErrInvalid },
		"another client's token":   func(s *handlerSetup) { s.verifier.id.ClientID = "app-2" },
	} {
		s := newHandlerSetup(t)
		setup(s)
		if w := s.do(call{body: "token=tok-1", auth: basic("app-1", "s3cret")}); w.Code != http.StatusOK || len(s.store.tokens) != 0 {
			t.Errorf("%s: status %d, recorded %v; want 200 (RFC 7009 §2.2) and nothing recorded", name, w.Code, s.store.tokens)
		}
	}
}

func TestAnythingThatLeavesTheTokenUsableAnswers503(t *testing.T) {
	for name, setup := range map[string]func(*handlerSetup){
		"issuer fails":            func(s *handlerSetup) { s.issuer.status = http.StatusInternalServerError },
		"issuer unknown":          func(s *handlerSetup) { s.h.cfg.Discovery = discoveryFake{err: errors.New("down")} },
		"issuer lacks revocation": func(s *handlerSetup) { s.h.cfg.Discovery = discoveryFake{} },
		"keys unavailable":        func(s *handlerSetup) { s.verifier.err = token.ErrUnavailable },
		"store fails":             func(s *handlerSetup) { s.store.err = ErrAuditFailed },
	} {
		s := newHandlerSetup(t)
		setup(s)
		w := s.do(call{body: "token=tok-1", auth: basic("app-1", "s3cret")})
		if w.Code != http.StatusServiceUnavailable || oauthErrorOf(t, w) != "temporarily_unavailable" || w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: status %d body %q; want 503 temporarily_unavailable with Retry-After", name, w.Code, w.Body)
		}
	}
}

func TestMalformedRequestsAreRefusedBeforeTheIssuerIsAsked(t *testing.T) {
	ok := basic("app-1", "s3cret")
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"GET", call{method: http.MethodGet, body: "token=t", auth: ok}, http.StatusMethodNotAllowed, "invalid_request"},
		{"JSON body", call{contentType: "application/json", body: `{"token":"t"}`, auth: ok}, http.StatusBadRequest, "invalid_request"},
		{"no token", call{body: "token_type_hint=access_token", auth: ok}, http.StatusBadRequest, "invalid_request"},
		{"token twice", call{body: "token=a&token=b", auth: ok}, http.StatusBadRequest, "invalid_request"},
		{"bad form", call{body: "token=%zz", auth: ok}, http.StatusBadRequest, "invalid_request"},
		{"no client", call{body: "token=t"}, http.StatusUnauthorized, "invalid_client"},
		{"bearer instead of client auth", call{body: "token=t", auth: "Bearer abc"}, http.StatusUnauthorized, "invalid_client"},
		{"two methods", call{body: "token=t&client_id=app-1&client_secret=s3cret", auth: ok}, http.StatusBadRequest, "invalid_request"},
		{"client_id contradicts Basic", call{body: "token=t&client_id=app-2", auth: ok}, http.StatusUnauthorized, "invalid_client"},
		{"assertion of another type", call{body: "token=t&client_assertion_type=x&client_assertion=y"}, http.StatusUnauthorized, "invalid_client"},
		{"assertion not a JWT", call{body: "token=t&client_assertion_type=" + url.QueryEscape(jwtBearer) + "&client_assertion=abc"}, http.StatusUnauthorized, "invalid_client"},
		{"too large", call{body: "token=" + strings.Repeat("a", MaxBodyBytes), auth: ok}, http.StatusRequestEntityTooLarge, "invalid_request"},
	} {
		s := newHandlerSetup(t)
		w := s.do(tc.c)
		if w.Code != tc.status || oauthErrorOf(t, w) != tc.code || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: status %d body %q; want %d %s, no-store", tc.name, w.Code, w.Body, tc.status, tc.code)
		}
		if s.issuer.calls() != 0 || len(s.store.tokens) != 0 {
			t.Errorf("%s: the issuer was asked (%d) or a token recorded (%v)", tc.name, s.issuer.calls(), s.store.tokens)
		}
	}
}

func TestRequestsPerIPAreLimited(t *testing.T) {
	s := newHandlerSetup(t)
	h, err := NewHandler(HandlerConfig{Issuer: "https://idp", Discovery: discoveryFake{endpoint: s.issuer.srv.URL},
		Verifier: s.verifier, Store: s.store, PerMinute: 6})
	if err != nil {
		t.Fatal(err)
	}
	s.h = h // burst 1 at 6 a minute
	if w := s.do(call{body: "token=t", auth: basic("app-1", "s3cret")}); w.Code != http.StatusOK {
		t.Fatalf("first: %d", w.Code)
	}
	if w := s.do(call{body: "token=t", auth: basic("app-1", "s3cret")}); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("second at once: %d; want 429 with Retry-After", w.Code)
	}
}

// One IPv6 host commonly holds a whole /64: a bucket per address would let it spread its requests over 2^64
// addresses. The addresses of one /64 share a bucket (as DCR's limiter keys them); another /64, or an IPv4
// address written as IPv4-mapped IPv6, is judged as itself.
func TestRequestsFromOneIPv6SlashSixtyFourShareALimit(t *testing.T) {
	s := newHandlerSetup(t)
	h, err := NewHandler(HandlerConfig{Issuer: "https://idp", Discovery: discoveryFake{endpoint: s.issuer.srv.URL},
		Verifier: s.verifier, Store: s.store, PerMinute: 6})
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string) int {
		r := httptest.NewRequest(http.MethodPost, Path, strings.NewReader("token=t"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Authorization", basic("app-1", "s3cret"))
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if c := from("[2001:db8:1:2::1]:4000"); c != http.StatusOK {
		t.Fatalf("first: %d", c)
	}
	if c := from("[2001:db8:1:2::ffff:2]:4001"); c != http.StatusTooManyRequests {
		t.Errorf("another address of the same /64: %d, want 429", c)
	}
	if c := from("[2001:db8:1:3::1]:4000"); c != http.StatusOK {
		t.Errorf("another /64: %d, want 200", c)
	}
	if c := from("192.0.2.7:4000"); c != http.StatusOK {
		t.Fatalf("an IPv4 address: %d", c)
	}
	if c := from("[::ffff:192.0.2.7]:4000"); c != http.StatusTooManyRequests {
		t.Errorf("the same IPv4 address, IPv4-mapped: %d, want 429", c)
	}
}

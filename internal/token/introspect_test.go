package token

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeIntrospection is an RFC 7662 endpoint that knows a few opaque tokens.
type fakeIntrospection struct {
	srv   *httptest.Server
	calls atomic.Int32
	down  atomic.Bool
	mu    sync.Mutex
	known map[string]map[string]any
}

func newFakeIntrospection(t *testing.T) *fakeIntrospection {
	t.Helper()
	f := &fakeIntrospection{known: map[string]map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		if f.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		if id, secret, ok := r.BasicAuth(); !ok || id != "fhirwall" || secret != "s3cret" || r.Method != http.MethodPost {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		answer, ok := f.known[r.PostFormValue("token")]
		f.mu.Unlock()
		if !ok {
			answer = map[string]any{"active": false}
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIntrospection) add(token string, answer map[string]any) {
	f.mu.Lock()
	f.known[token] = answer
	f.mu.Unlock()
}

func newIntrospectingVerifier(t *testing.T, clock *fakeClock, f *fakeIntrospection, secret string) *Verifier {
	t.Helper()
	v, err := NewVerifier([]IssuerConfig{{URL: "https://idp.example/realms/r", Audience: "fhirwall",
		Introspection: &IntrospectionConfig{URL: f.srv.URL, ClientID: "fhirwall", ClientSecret: secret}}},
		Options{ClockSkew: DefaultClockSkew, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func activeAnswer(now time.Time, exp time.Duration) map[string]any {
	return map[string]any{"active": true, "iss": "https://idp.example/realms/r", "aud": "fhirwall", "sub": "user-1",
		"client_id": "patient-app", "scope": "patient/*.rs launch/patient", "patient": "member-01", "token_type": "Bearer",
		"exp": now.Add(exp).Unix()}
}

func TestOpaqueTokenIsIntrospectedAndCachedUntilExp(t *testing.T) {
	f, clock := newFakeIntrospection(t), newFakeClock()
	f.add("opaque-1", activeAnswer(clock.Now(), 2*time.Minute))
	v := newIntrospectingVerifier(t, clock, f, "s3cret")
	ctx := context.Background()
	id, err := v.Verify(ctx, "opaque-1")
	if err != nil {
		t.Fatal(err)
	}
	if id.ClientID != "patient-app" || id.Patient != "member-01" || len(id.Scopes) != 2 || id.Issuer != "https://idp.example/realms/r" {
		t.Fatalf("got %+v", id)
	}
	if _, err := v.Verify(ctx, "opaque-1"); err != nil || f.calls.Load() != 1 {
		t.Fatalf("second use: err %v, %d introspection calls, want 1", err, f.calls.Load())
	}
	clock.Advance(2*time.Minute + time.Second) // past exp: asked again, and the endpoint now says inactive
	f.add("opaque-1", map[string]any{"active": false})
	if _, err := v.Verify(ctx, "opaque-1"); !errors.Is(err, ErrInvalid) || f.calls.Load() != 2 {
		t.Fatalf("after exp: err %v, %d calls, want ErrInvalid after 2", err, f.calls.Load())
	}
}

func TestIntrospectionCacheIsCappedAtFiveMinutes(t *testing.T) {
	f, clock := newFakeIntrospection(t), newFakeClock()
	f.add("opaque-long", activeAnswer(clock.Now(), time.Hour))
	v := newIntrospectingVerifier(t, clock, f, "s3cret")
	if _, err := v.Verify(context.Background(), "opaque-long"); err != nil {
		t.Fatal(err)
	}
	f.add("opaque-long", map[string]any{"active": false}) // revoked
	clock.Advance(MaxCacheTTL)
	if _, err := v.Verify(context.Background(), "opaque-long"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoked token still served %v after MaxCacheTTL", err)
	}
}

func TestIntrospectionRefusals(t *testing.T) {
	f, clock := newFakeIntrospection(t), newFakeClock()
	now := clock.Now()
	with := func(k string, val any) map[string]any {
		a := activeAnswer(now, time.Minute)
		a[k] = val
		return a
	}
	cases := map[string]map[string]any{
		"inactive":       {"active": false},
		"expired":        activeAnswer(now, -2*time.Minute),
		"wrong audience": with("aud", []string{"other"}),
		"another issuer": with("iss", "https://evil.example"),
		"ID token":       with("typ", "ID"),
		"refresh token":  with("token_type", "refresh_token"),
		"no client":      with("client_id", ""),
		"nbf in future":  with("nbf", now.Add(time.Hour).Unix()),
	}
	v := newIntrospectingVerifier(t, clock, f, "s3cret")
	for name, answer := range cases {
		f.add(name, answer)
		if _, err := v.Verify(context.Background(), name); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func TestIntrospectionOutageFailsClosed(t *testing.T) {
	f, clock := newFakeIntrospection(t), newFakeClock()
	f.add("opaque-1", activeAnswer(clock.Now(), time.Minute))
	f.down.Store(true)
	if _, err := newIntrospectingVerifier(t, clock, f, "s3cret").Verify(context.Background(), "opaque-1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("endpoint down: want ErrUnavailable, got %v", err)
	}
	f.down.Store(false)
	f.add("malformed", map[string]any{"active": "true", "sub": "x", "client_id": "y"})
	if _, err := newIntrospectingVerifier(t, clock, f, "s3cret").Verify(context.Background(), "malformed"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("malformed answer: want ErrUnavailable, got %v", err)
	}
	if _, err := newIntrospectingVerifier(t, clock, f, "wrong").Verify(context.Background(), "opaque-1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("our credentials refused: want ErrUnavailable, got %v", err)
	}
	f.srv.Close()
	if _, err := newIntrospectingVerifier(t, clock, f, "s3cret").Verify(context.Background(), "opaque-1"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("endpoint gone: want ErrUnavailable, got %v", err)
	}
}

func TestIntrospectedIssuedAtAndAuthTimeComeFromTheAnswer(t *testing.T) {
	clock, f := newFakeClock(), newFakeIntrospection(t)
	answer := activeAnswer(clock.Now(), time.Minute)
	answer["iat"], answer["auth_time"] = clock.Now().Add(-time.Minute).Unix(), clock.Now().Add(-time.Hour).Unix()
	f.add("opaque-1", answer)
	id, err := newIntrospectingVerifier(t, clock, f, "s3cret").Verify(context.Background(), "opaque-1")
	if err != nil {
		t.Fatal(err)
	}
	if id.IssuedAt.Unix() != clock.Now().Add(-time.Minute).Unix() || id.AuthTime.Unix() != clock.Now().Add(-time.Hour).Unix() {
		t.Fatalf("issued at %v, auth time %v", id.IssuedAt, id.AuthTime)
	}
}

package adminauth

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const good = "0123456789abcdef0123456789abcdef"

func TestShortTokensAreRefused(t *testing.T) {
	if _, err := New([]byte("  short \n")); err == nil || !strings.Contains(err.Error(), "/dev/urandom") {
		t.Fatalf("a short token: %v", err)
	}
}

func TestOnlyTheBearerTokenGetsThrough(t *testing.T) {
	tok, err := New([]byte(good + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }),
		"test admin", slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(w http.ResponseWriter, status int, msg string) { http.Error(w, msg, status) }, "unauthorized")
	for header, want := range map[string]int{
		"Bearer " + good: http.StatusNoContent, "bearer " + good: http.StatusNoContent,
		"": http.StatusUnauthorized, "Bearer": http.StatusUnauthorized, "Basic " + good: http.StatusUnauthorized,
		"Bearer " + good + "x": http.StatusUnauthorized, "Bearer " + good[:31]: http.StatusUnauthorized,
	} {
		r := httptest.NewRequest(http.MethodGet, "/admin/x", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Authorization %q: %d, want %d", header, w.Code, want)
		}
		if want == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: 401 without WWW-Authenticate: Bearer", header)
		}
	}
}

package dcr

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/registry/admin/admintest"
)

// fakeCounter is a Counter in memory that two handlers (two replicas) share; fail makes it an outage.
type fakeCounter struct {
	mu     sync.Mutex
	counts map[string]int // key + window → calls
	fail   bool
}

func (c *fakeCounter) CountCall(_ context.Context, key string, window time.Time) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return 0, errors.New("fake counter down")
	}
	k := key + "@" + window.Format(time.RFC3339)
	c.counts[k]++
	return c.counts[k], nil
}

func sharedReplica(t *testing.T, c Counter, clock *clockFake) http.Handler {
	t.Helper()
	h, err := New(admintest.NewFakeStore(), testOffered(), Options{PublicURL: publicURL, PerMinute: 3, Counter: c,
		Now: clock.now, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func call(h http.Handler, addr string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "application/json")
	r.RemoteAddr = addr
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestSharedCounterHoldsTheLimitAcrossReplicas(t *testing.T) {
	counter := &fakeCounter{counts: map[string]int{}}
	clock := &clockFake{t: time.Date(2026, 12, 7, 10, 0, 15, 0, time.UTC)}
	a, b := sharedReplica(t, counter, clock), sharedReplica(t, counter, clock)
	// Three calls a minute in all: two through one replica, one through the other, then both refuse.
	for i, h := range []http.Handler{a, b, a} {
		if w := call(h, "198.51.100.7:4000"); w.Code == http.StatusTooManyRequests {
			t.Fatalf("call %d refused: %d", i, w.Code)
		}
	}
	for _, h := range []http.Handler{a, b} {
		w := call(h, "198.51.100.7:4001")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "45" {
			t.Fatalf("fourth call: %d Retry-After %q, want 429 until the minute ends (45 s)", w.Code, w.Header().Get("Retry-After"))
		}
	}
	if w := call(b, "198.51.100.8:4000"); w.Code == http.StatusTooManyRequests {
		t.Errorf("another address is limited too")
	}
	clock.advance(45 * time.Second) // the next minute
	if w := call(b, "198.51.100.7:4002"); w.Code == http.StatusTooManyRequests {
		t.Errorf("still limited in the next minute")
	}
}

func TestSharedCounterDownRefusesWith503(t *testing.T) {
	counter := &fakeCounter{counts: map[string]int{}, fail: true}
	h := sharedReplica(t, counter, &clockFake{t: time.Unix(1_800_000_000, 0)})
	w := call(h, "198.51.100.7:4000")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), ServerError) {
		t.Fatalf("counter down: %d Retry-After %q %s, want 503 server_error with Retry-After", w.Code, w.Header().Get("Retry-After"), w.Body.String())
	}
}

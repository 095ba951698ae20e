package fhirserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// slowServer answers a count Bundle after delay, or gives up when the request's context ends.
func slowServer(t *testing.T, delay time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","total":1}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestCallersHangingUpLeaveTheBreakerClosed(t *testing.T) {
	srv := slowServer(t, time.Hour)
	c := New(srv.URL+"/fhir", &http.Client{Timeout: 10 * time.Second})
	s := NewSearcher("consent", srv.URL+"/fhir", &http.Client{Timeout: 10 * time.Second}, 10)
	for i := range 6 {
		ctx, cancel := context.WithCancel(context.Background())
		if i%2 == 0 {
			cancel() // gone before the call
		} else {
			time.AfterFunc(20*time.Millisecond, cancel) // gone while the server works
		}
		if _, err := c.Matches(ctx, "Observation", "o1", nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: %v, want context.Canceled", i, err)
		}
		if err := s.Search(ctx, "Consent", url.Values{}, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("search %d: %v, want context.Canceled", i, err)
		}
		cancel()
	}
	// A caller's own deadline is its impatience too, not the server's failure.
	for range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := c.Matches(ctx, "Observation", "o1", nil)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%v, want context.DeadlineExceeded", err)
		}
	}
	for _, b := range []Breaker{c.Breaker(), s.Breaker()} {
		if b.State() != gobreaker.StateClosed {
			t.Errorf("breaker %s is %v after callers hung up, want closed", b.Name(), b.State())
		}
	}
}

func TestServerSlowerThanOurTimeoutOpensTheBreaker(t *testing.T) {
	srv := slowServer(t, time.Hour)
	c := New(srv.URL+"/fhir", &http.Client{Timeout: 20 * time.Millisecond}) // fhir_server.lookup_timeout
	for range breakerTrips {
		if _, err := c.Matches(context.Background(), "Observation", "o1", nil); err == nil {
			t.Fatal("a server slower than the timeout answered")
		}
	}
	if _, err := c.Matches(context.Background(), "Observation", "o1", nil); !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("after %d timeouts: %v, want the open breaker", breakerTrips, err)
	}
}

func TestSpentLookupBudgetCountsAgainstTheServer(t *testing.T) {
	srv := slowServer(t, time.Hour)
	s := NewSearcher("attribution", srv.URL+"/fhir", &http.Client{}, 10)
	for range breakerTrips {
		ctx, cancel := WithBudget(context.WithoutCancel(context.Background()), 20*time.Millisecond)
		err := s.Search(ctx, "Group", url.Values{}, nil)
		cancel()
		if err == nil {
			t.Fatal("a server slower than the budget answered")
		}
	}
	if s.Breaker().State() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after %d spent budgets, want open", s.Breaker().State(), breakerTrips)
	}
}

func TestAHangUpAmongFailuresNeitherTripsNorResetsTheBreaker(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer failing.Close()
	c := New(failing.URL+"/fhir", &http.Client{Timeout: time.Second})
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range breakerTrips {
		if i == 2 {
			_, _ = c.Matches(gone, "Observation", "o1", nil)
		}
		_, _ = c.Matches(context.Background(), "Observation", "o1", nil)
	}
	if c.Breaker().State() != gobreaker.StateOpen {
		t.Fatalf("breaker %v after %d server errors with a hang-up among them, want open", c.Breaker().State(), breakerTrips)
	}
}

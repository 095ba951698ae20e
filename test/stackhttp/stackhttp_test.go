package stackhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/stackhttp"
)

var _ stackhttp.Logger = (*testing.T)(nil)

// fakeFHIR answers 429 for the first throttled requests, then 200 with the request's headers echoed.
func fakeFHIR(t *testing.T, throttled int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= throttled {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("X-Fhirwall-Decision-Id", "d-1")
		w.Header().Set("X-Seen", r.Header.Get("Accept")+"|"+r.Header.Get("Content-Type")+"|"+r.Header.Get("Authorization")+"|"+r.Header.Get("Prefer"))
		w.Write([]byte(`{"resourceType":"Bundle"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func client(srv *httptest.Server) stackhttp.Client {
	return stackhttp.Client{HTTP: srv.Client(), RetryOn: []int{http.StatusTooManyRequests}, Retries: 5, Wait: time.Millisecond}
}

func TestSendWaitsOutARateLimitAndSendsAsAFHIRClient(t *testing.T) {
	srv, n := fakeFHIR(t, 2)
	a, err := client(srv).Send(context.Background(), t, stackhttp.Request{Method: "POST", URL: srv.URL + "/Claim/$submit",
		Token: "tok", Header: map[string]string{"Prefer": "return=minimal"}, Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusOK || n.Load() != 3 || a.DecisionID != "d-1" || a.Method != "POST" || !strings.HasSuffix(a.URL, "/Claim/$submit") {
		t.Fatalf("answer %+v after %d requests, want 200 with decision d-1 after 3", a, n.Load())
	}
	if got, want := a.Header.Get("X-Seen"), "application/fhir+json|application/fhir+json|Bearer tok|return=minimal"; got != want {
		t.Errorf("request headers %q, want %q", got, want)
	}
}

func TestSendWithoutBodyOrTokenSendsNeither(t *testing.T) {
	srv, _ := fakeFHIR(t, 0)
	a, err := client(srv).Send(context.Background(), t, stackhttp.Request{Method: "GET", URL: srv.URL + "/metadata"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Header.Get("X-Seen"), "application/fhir+json|||"; got != want {
		t.Errorf("request headers %q, want %q", got, want)
	}
}

func TestSendReturnsTheLastRateLimitWhenRetriesRunOut(t *testing.T) {
	srv, n := fakeFHIR(t, 100)
	a, err := client(srv).Send(context.Background(), t, stackhttp.Request{Method: "GET", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != http.StatusTooManyRequests || n.Load() != 6 {
		t.Fatalf("status %d after %d requests, want 429 after 6 (one and five retries)", a.Status, n.Load())
	}
}

func TestSendErrorNamesTheRequest(t *testing.T) {
	srv, _ := fakeFHIR(t, 0)
	srv.Close()
	_, err := client(srv).Send(context.Background(), t, stackhttp.Request{Method: "DELETE", URL: srv.URL + "/Subscription/x"})
	if err == nil || !strings.HasPrefix(err.Error(), "DELETE "+srv.URL+"/Subscription/x: ") {
		t.Fatalf("error %v, want one naming DELETE and the URL", err)
	}
}

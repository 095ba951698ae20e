package selftest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// fakeLimiter is a stand-in deployment for the rate-limit check's judgement: its metadata answers 200 up to
// allow requests, then 429 in the shape it is given.
type fakeLimiter struct {
	allow      int64
	retryAfter string
	body       string
	n          atomic.Int64
}

func (f *fakeLimiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Fhirwall-Decision-Id", fmt.Sprint(f.n.Load()))
	if f.n.Add(1) <= f.allow {
		fmt.Fprint(w, `{"resourceType":"CapabilityStatement"}`)
		return
	}
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	w.WriteHeader(http.StatusTooManyRequests)
	fmt.Fprint(w, f.body)
}

func burst(t *testing.T, f *fakeLimiter, n int) Result {
	t.Helper()
	srv := httptest.NewServer(f)
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	cfg, err := ParseConfig([]byte("apis: {payer_to_payer: /p2p}\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Base: base, HTTP: srv.Client(), Config: cfg, RateLimitBurst: n, Only: []string{"ratelimit/burst-answers-429"}})
	if err != nil || len(res) != 1 {
		t.Fatal(res, err)
	}
	return res[0]
}

const throttled = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"throttled"}]}`

func TestBurstPassesOnAProper429(t *testing.T) {
	if r := burst(t, &fakeLimiter{allow: 10, retryAfter: "1", body: throttled}, 40); r.Outcome != Pass {
		t.Errorf("%s %s", r.Outcome, r.Detail)
	}
}

func TestBurstFailsWithoutA429OrWithAnImproperOne(t *testing.T) {
	for name, f := range map[string]*fakeLimiter{
		"never limited":           {allow: 1 << 30},
		"no Retry-After":          {allow: 10, body: throttled},
		"Retry-After as a date":   {allow: 10, retryAfter: "Wed, 21 Oct 2026 07:28:00 GMT", body: throttled},
		"not an OperationOutcome": {allow: 10, retryAfter: "1", body: "slow down"},
	} {
		t.Run(name, func(t *testing.T) {
			if r := burst(t, f, 40); r.Outcome != Fail {
				t.Errorf("%s %s, want fail", r.Outcome, r.Detail)
			}
		})
	}
}

func TestBurstSendsExactlyNRequests(t *testing.T) {
	f := &fakeLimiter{allow: 5, retryAfter: "1", body: throttled}
	burst(t, f, 37)
	if got := f.n.Load(); got != 37 {
		t.Errorf("%d requests, want 37", got)
	}
}

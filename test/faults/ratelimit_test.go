//go:build e2e && faults

package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
)

// TestGlobalRateLimitFailsClosed: with the global rate limit on (config/fhirwall.yaml rate_limits.global),
// Redis stopped, or the rate limit service itself, leaves no shared count to hold a client to, so both
// faces refuse a limited client's request: 503, an OperationOutcome that says the rate limit service is
// unavailable, and nothing reaches the FHIR server. Started again, answers resume.
func TestGlobalRateLimitFailsClosed(t *testing.T) {
	evidence.Proves(t, "OPS-RATE-01", "SEC-04")
	if err := stack(t, "ratelimit", "status"); err != nil {
		t.Fatalf("the stack runs no rate limit service: up.sh must start test/stack/redis.sh and ratelimit.sh (%v)", err)
	}
	for _, fault := range []struct{ name, script string }{
		{"redis stopped", "redis"},
		{"rate limit service stopped", "ratelimit"},
	} {
		t.Run(fault.name, func(t *testing.T) {
			s := &session{}
			healthy(t, s)
			token := s.Token(t)
			if err := stack(t, fault.script, "stop"); err != nil {
				t.Fatal(err)
			}
			restarted := false
			t.Cleanup(func() {
				if !restarted {
					if err := stack(t, fault.script, "start"); err != nil {
						t.Error(err)
					}
				}
			})

			before := upstreamRequests(t)
			for _, way := range []struct {
				name string
				url  func(string) string
			}{{"envoy", envoyURL}, {"standalone", standaloneURL}} {
				for i := 0; i < 3; i++ {
					a := get(t, way.url(ownEOBSearch), token)
					t.Logf("%s, %s: refusal %d: %d in %v", fault.name, way.name, i+1, a.status, a.elapsed.Round(time.Millisecond))
					requireOperationOutcome503(t, fault.name+" ("+way.name+")", a)
					if !strings.Contains(string(a.body), ratelimit.UnavailableDiagnostics) {
						t.Errorf("%s (%s): the refusal does not say the rate limit service is unavailable: %s", fault.name, way.name, a)
					}
				}
			}
			if after := upstreamRequests(t); after != before {
				t.Errorf("%s, yet %d requests reached the FHIR server", fault.name, after-before)
			}

			if err := stack(t, fault.script, "start"); err != nil {
				t.Fatal(err)
			}
			restarted = true
			for _, way := range []struct {
				name string
				url  func(string) string
			}{{"envoy", envoyURL}, {"standalone", standaloneURL}} {
				took := waitFor200(t, fault.name+" then started ("+way.name+")", s, way.url, ownEOBSearch, 30*time.Second)
				t.Logf("%s started again: %s answers 200 %v later", fault.script, way.name, took.Round(time.Millisecond))
			}
		})
	}
}

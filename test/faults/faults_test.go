//go:build e2e && faults

// Package faults proves that fhirwall fails closed on the real stack (test/stack/up.sh): with fhirwall-proxy
// stopped or frozen, or the FHIR server stopped, a request that is otherwise allowed is refused quickly with
// a FHIR OperationOutcome and never reaches (or never comes back from) the FHIR server, and traffic recovers
// once the service is back. The tests stop shared services: run them after the other e2e suites (make
// faults); each restores what it stopped.
package faults

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// TestEnvoyRefusesWhenTheProxyIsStopped: no authorization service, no request. Envoy's ext_authz fails
// (connection refused), status_on_error 503 and the local reply mapper make that an OperationOutcome, and
// the FHIR server sees nothing.
func TestEnvoyRefusesWhenTheProxyIsStopped(t *testing.T) {
	evidence.Proves(t, "SEC-04")
	s := &session{}
	healthy(t, s)
	token := s.Token(t)

	if err := stack(t, "fhirwall", "stop-proxy"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := stack(t, "fhirwall", "start-proxy"); err != nil {
				t.Error(err)
			}
		}
	})

	before := upstreamRequests(t)
	for i := 0; i < 3; i++ {
		a := get(t, envoyURL(ownEOBSearch), token)
		t.Logf("proxy stopped: refusal %d: %d in %v", i+1, a.status, a.elapsed.Round(time.Millisecond))
		requireOperationOutcome503(t, "proxy stopped", a)
	}
	if after := upstreamRequests(t); after != before {
		t.Errorf("proxy stopped, yet %d requests reached the FHIR server", after-before)
	}

	if err := stack(t, "fhirwall", "start-proxy"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	took := waitFor200(t, "after start-proxy", s, envoyURL, ownEOBSearch, 30*time.Second)
	t.Logf("proxy restarted: Envoy answers 200 again %v after start-proxy returned", took.Round(time.Millisecond))
}

// TestEnvoyRefusesWhenTheProxyHangs: fhirwall-proxy frozen (SIGSTOP) accepts connections but never answers.
// The ext_authz call times out after 2 s and the request is refused with an OperationOutcome, unforwarded.
func TestEnvoyRefusesWhenTheProxyHangs(t *testing.T) {
	evidence.Proves(t, "SEC-04")
	s := &session{}
	healthy(t, s)
	token := s.Token(t)

	thaw := freeze(t, "proxy")
	before := upstreamRequests(t)
	for i := 0; i < 2; i++ {
		a := get(t, envoyURL(ownEOBSearch), token)
		t.Logf("proxy frozen: refusal %d: %d in %v", i+1, a.status, a.elapsed.Round(time.Millisecond))
		requireOperationOutcome503(t, "proxy frozen", a)
	}
	if after := upstreamRequests(t); after != before {
		t.Errorf("proxy frozen, yet %d requests reached the FHIR server", after-before)
	}

	thaw()
	took := waitFor200(t, "after SIGCONT", s, envoyURL, ownEOBSearch, 30*time.Second)
	t.Logf("proxy thawed: Envoy answers 200 again after %v", took.Round(time.Millisecond))
}

// TestEnvoyWithholdsTheAnswerWhenExtProcHangs: the request was allowed by ext_authz and forwarded, but the
// proxy stops answering before the FHIR server's answer comes back, so ext_proc cannot check and audit it.
// To get there deterministically the FHIR server is frozen first (the request waits on it, which Envoy's
// upstream_rq_active gauge shows), then the proxy is frozen, then the FHIR server thawed: its answer meets
// a hanging ext_proc, and must not reach the client.
func TestEnvoyWithholdsTheAnswerWhenExtProcHangs(t *testing.T) {
	evidence.Proves(t, "SEC-04")
	s := &session{}
	healthy(t, s)
	token := s.Token(t)

	before := upstreamRequests(t)
	thawHAPI := freeze(t, "hapi")
	type result struct {
		a   answer
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := tryGet(t, envoyURL(ownEOBSearch), token)
		done <- result{a, err}
	}()

	// Wait until the request is with the FHIR server, i.e. past ext_authz and ext_proc's request headers.
	deadline := time.Now().Add(10 * time.Second)
	for fhirServerStat(t, "upstream_rq_active") == 0 {
		select {
		case r := <-done:
			thawHAPI()
			t.Fatalf("the request ended before it reached the FHIR server: %v %v", r.a, r.err)
		default:
		}
		if time.Now().After(deadline) {
			thawHAPI()
			t.Fatal("the request never reached the FHIR server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	thawProxy := freeze(t, "proxy")
	frozenAt := time.Now()
	thawHAPI()

	r := <-done
	if r.err != nil {
		t.Fatalf("ext_proc hanging: %v", r.err)
	}
	t.Logf("ext_proc hanging: %d %v after the proxy froze (request took %v in all)",
		r.a.status, time.Since(frozenAt).Round(time.Millisecond), r.a.elapsed.Round(time.Millisecond))
	requireOperationOutcome503(t, "ext_proc hanging", r.a)
	if strings.Contains(string(r.a.body), "Bundle") {
		t.Errorf("the FHIR server's answer left unchecked: %s", r.a.body)
	}
	if n := upstreamRequests(t) - before; n != 1 {
		t.Errorf("%d requests reached the FHIR server, want exactly the one withheld", n)
	}

	thawProxy()
	took := waitFor200(t, "after SIGCONT", s, envoyURL, ownEOBSearch, 30*time.Second)
	t.Logf("proxy thawed: Envoy answers 200 again after %v", took.Round(time.Millisecond))
}

// TestFHIRServerDownIsA503OperationOutcome: with HAPI stopped both ways answer 503 OperationOutcome quickly
// (Envoy's mapped local reply for a forwarded search, fhirwall's own refusal when the decision needs the
// FHIR server, as a read does for its compartment check), and traffic recovers by itself once HAPI is back.
func TestFHIRServerDownIsA503OperationOutcome(t *testing.T) {
	evidence.Proves(t, "SEC-04")
	s := &session{}
	healthy(t, s)
	eob := ownEOBID(t)
	paths := []string{ownEOBSearch, "/ExplanationOfBenefit/" + eob}
	for _, p := range paths {
		if a := get(t, envoyURL(p), s.Token(t)); a.status != http.StatusOK {
			t.Fatalf("before the fault, %s answered %s", p, a)
		}
	}

	if err := stack(t, "hapi", "stop"); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			if err := stack(t, "hapi", "start"); err != nil {
				t.Error(err)
			}
		}
	})

	for _, way := range []struct {
		name string
		url  func(string) string
	}{{"envoy", envoyURL}, {"standalone", standaloneURL}} {
		for _, p := range paths {
			a := get(t, way.url(p), s.Token(t))
			t.Logf("FHIR server stopped: %s GET %s: %d in %v: %s", way.name, p, a.status, a.elapsed.Round(time.Millisecond), a.body)
			requireOperationOutcome503(t, "FHIR server stopped, "+way.name+" "+p, a)
		}
	}

	// hapi.sh start waits for HAPI's health; the client traffic must come back by itself, with no restart
	// of Envoy or fhirwall-proxy.
	t0 := time.Now()
	startErr := make(chan error, 1)
	go func() { startErr <- stack(t, "hapi", "start") }()
	const recoveryLimit = 180 * time.Second
	envoyTook := waitFor200(t, "envoy after hapi.sh start", s, envoyURL, ownEOBSearch, recoveryLimit)
	standaloneTook := waitFor200(t, "standalone after hapi.sh start", s, standaloneURL, ownEOBSearch, recoveryLimit-envoyTook)
	if err := <-startErr; err != nil {
		t.Fatal(err)
	}
	started = true
	t.Logf("FHIR server restarted: hapi.sh start took %v; envoy 200 after %v, standalone 200 after %v",
		time.Since(t0).Round(time.Second), envoyTook.Round(time.Millisecond), (envoyTook + standaloneTook).Round(time.Millisecond))
	for _, p := range paths {
		if a := get(t, envoyURL(p), s.Token(t)); a.status != http.StatusOK {
			t.Errorf("after recovery, %s answered %s", p, a)
		}
	}
}

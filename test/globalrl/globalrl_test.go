//go:build e2e

package globalrl

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/internal/ratelimit"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

const (
	window  = 10 * time.Second // how long each measurement sends
	workers = 3                // per face
	// pause between one worker's requests: about 150 requests a second per face, several times the rates, and
	// no more, so that the rate limit service's timeout (100ms) measures the limit, not a saturated test box
	pause = 20 * time.Millisecond
	// tolerance is how far the allowed count may be from rate x seconds.
	tolerance = 0.10
)

// TestGlobalLimitHoldsAClientToItsTierAcrossBothFaces sends one client's requests through Envoy and the
// standalone proxy at once, as fast as they are answered, for whole one-second windows of the rate limit
// service: each face's local limit alone would allow the tier's rate, so together they would allow twice
// it; the global limit must hold the total to the tier's rate. Then the same for one member of a patient
// app, held to the per-user rate.
func TestGlobalLimitHoldsAClientToItsTierAcrossBothFaces(t *testing.T) {
	evidence.Proves(t, "OPS-RATE-01")
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	orgA, err := stackauth.Backend(ctx, "provider-org-a", "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	member, err := stackauth.Member(ctx, "member01", "openid", "fhirUser", "launch/patient", "patient/Patient.rs")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, token string
		rate              int
	}{
		{"backend client provider-org-a, tier backend", "/provider-access/fhir/Patient/member-01", orgA.AccessToken, tierRate},
		{"member01 of patient-app, per-user rate", "/patient-access/fhir/Patient/member-01", member.AccessToken, userRate},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			urls := []string{s.envoyURL + c.path, s.standaloneURL + c.path}
			waitServed(t, s, urls, c.token)
			m := measure(ctx, urls, c.token)
			want := float64(c.rate) * window.Seconds()
			t.Logf("%s: %d allowed in %s (%d through Envoy, %d standalone), %d refused with 429, %d other; want %.0f ± %.0f%%",
				c.name, m.allowed(), window, m.ok[0], m.ok[1], m.limited[0]+m.limited[1], m.other, want, tolerance*100)
			if m.other > 0 {
				t.Errorf("%d answers were neither 200 nor 429 (first: %s); proxy log ends:\n%s", m.other, m.firstOther, s.proxy.tail())
			}
			if math.Abs(float64(m.allowed())-want) > tolerance*want {
				t.Errorf("%d allowed, want %.0f ± %.0f%%: the faces together are not held to the rate once", m.allowed(), want, tolerance*100)
			}
			for i, face := range []string{"Envoy", "standalone"} {
				if m.ok[i] == 0 || m.limited[i] == 0 {
					t.Errorf("%s: %d allowed, %d refused: both faces must share the limit", face, m.ok[i], m.limited[i])
				}
			}
		})
	}
	// Over the limit, both faces answer alike: 429, Retry-After, the same OperationOutcome.
	t.Run("429 reads the same from both faces", func(t *testing.T) {
		path := "/provider-access/fhir/Patient/member-01"
		var got [2]answer
		for i, base := range []string{s.envoyURL, s.standaloneURL} {
			got[i] = firstRefusal(t, base+path, orgA.AccessToken, 429)
		}
		if got[0].retryAfter == "" || got[0] != got[1] {
			t.Fatalf("Envoy: %+v\nstandalone: %+v", got[0], got[1])
		}
	})
	// A lower tier in the file reaches the service through fhirwall-xds, without a restart: each face's local
	// limit also drops to it, so without the new global limit the two would allow twice as much.
	t.Run("lower tier reaches the service without a restart", func(t *testing.T) {
		const lower = 5
		writeConfig(t, s.dir, s.rlsAddr, lower)
		time.Sleep(5 * time.Second) // fhirwall-xds and fhirwall-proxy watch the file; the service takes the push
		path := "/provider-access/fhir/Patient/member-01"
		m := measure(ctx, []string{s.envoyURL + path, s.standaloneURL + path}, orgA.AccessToken)
		want := float64(lower) * window.Seconds()
		t.Logf("after the change: %d allowed in %s (%d through Envoy, %d standalone), %d refused, %d other; want %.0f ± %.0f%%",
			m.allowed(), window, m.ok[0], m.ok[1], m.limited[0]+m.limited[1], m.other, want, tolerance*100)
		if m.other > 0 || math.Abs(float64(m.allowed())-want) > tolerance*want {
			t.Errorf("%d allowed (%d other answers), want %.0f ± %.0f%%; fhirwall-xds log ends:\n%s", m.allowed(), m.other, want, tolerance*100, s.xds.tail())
		}
	})
	// The rate limit service gone: both faces refuse (fail closed) with the same 503, Retry-After included.
	t.Run("service down: both faces 503", func(t *testing.T) {
		s.rls.stop()
		path := "/provider-access/fhir/Patient/member-01"
		var got [2]answer
		for i, base := range []string{s.envoyURL, s.standaloneURL} {
			got[i] = firstRefusal(t, base+path, orgA.AccessToken, 503)
		}
		if got[0].retryAfter == "" || got[0].body != got[1].body || !strings.Contains(got[0].body, ratelimit.UnavailableDiagnostics) {
			t.Fatalf("Envoy: %+v\nstandalone: %+v", got[0], got[1])
		}
	})
}

type answer struct {
	status            int
	retryAfter, ctype string
	body              string
}

// firstRefusal sends requests to url until one is answered status (within 10 s) and returns that answer.
func firstRefusal(t *testing.T, url, token string, status int) answer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == status {
			return answer{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), string(b)}
		}
	}
	t.Fatalf("%s never answered %d", url, status)
	return answer{}
}

// waitServed waits until every URL answers 200: the rate limit service has its limits from fhirwall-xds
// (before that it answers errors, and both faces refuse with 503).
func waitServed(t *testing.T, s *stack, urls []string, token string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, u := range urls {
		for {
			code := get(context.Background(), http.DefaultClient, u, token)
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d after 60s; rate limit service log:\n%s\nproxy log:\n%s", u, code, s.rls.tail(), s.proxy.tail())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	time.Sleep(1100 * time.Millisecond) // the probes' window is over
}

type measurement struct {
	mu          sync.Mutex
	ok, limited [2]int
	other       int
	firstOther  string
}

func (m *measurement) allowed() int { return m.ok[0] + m.ok[1] }

// measure sends from workers goroutines per URL from the start of a whole second for window, less a margin,
// so exactly window/1s of the service's fixed one-second windows are touched.
func measure(ctx context.Context, urls []string, token string) *measurement {
	next := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(next) + 5*time.Millisecond)
	end := next.Add(window - 50*time.Millisecond)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers}}
	m := &measurement{}
	var wg sync.WaitGroup
	for i, u := range urls {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					code := get(ctx, client, u, token)
					time.Sleep(pause)
					m.mu.Lock()
					switch code {
					case 200:
						m.ok[i]++
					case 429:
						m.limited[i]++
					default:
						if m.other == 0 {
							m.firstOther = fmt.Sprintf("%d from %s", code, u)
						}
						m.other++
					}
					m.mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return m
}

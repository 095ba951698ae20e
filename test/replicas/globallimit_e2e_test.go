//go:build e2e

package replicas

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/stackauth"
)

// The stack's standard tier (config/fhirwall.yaml: rate_limits.tiers.standard.per_second), the tier of
// patient-app, and its per-member rate (rate_limits.per_user.standard).
const (
	standardPerSecond = 50
	globalRunSeconds  = 10
	offeredPerSecond  = 120
)

// TestGlobalLimitHoldsAcrossBothEnvoys: two members of one patient app send 120 requests a second between
// them, spread evenly over both Envoys, for 10 whole clock seconds. Each Envoy's local limit alone would let
// about 50 a second through it, so 100 in all; the global limit (envoyproxy/ratelimit over Redis, counting one
// window a second) holds the app to its tier across both: 50 a second, 500 in the run, measured within 10%.
// The members' own rate (40/s each) is above what each sends through the limit, so the app's tier is the one
// that binds.
func TestGlobalLimitHoldsAcrossBothEnvoys(t *testing.T) {
	evidence.Proves(t, "OPS-RATE-01")
	setup(t)
	var tokens []string
	for _, who := range []string{"member02", "member03"} {
		tok, err := stackauth.Member(context.Background(), who, "openid", "fhirUser", "launch/patient", "patient/Patient.rs")
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok.AccessToken)
	}
	// Whole clock seconds: the limiter counts per second, so a run that starts just after a second begins and
	// ends just before one ends covers exactly globalRunSeconds windows.
	start := time.Now().Truncate(time.Second).Add(time.Second + 30*time.Millisecond)
	time.Sleep(time.Until(start))
	end := start.Add(globalRunSeconds*time.Second - 60*time.Millisecond)

	var ok, limited [2]atomic.Int64
	var other atomic.Int64
	var firstOther atomic.Value
	work := make(chan int, offeredPerSecond)
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			for i := range work {
				envoy, token := i%2, tokens[(i/2)%2]
				status, h, err := getStatus(envoyURLs[envoy]+"/patient-access/fhir/Patient", token)
				switch {
				case err != nil:
					other.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
					continue
				case status == http.StatusOK:
					ok[envoy].Add(1)
				case status == http.StatusTooManyRequests && h.Get("Retry-After") != "":
					limited[envoy].Add(1)
				default:
					other.Add(1)
					firstOther.CompareAndSwap(nil, fmt.Sprintf("status %d", status))
				}
				record("global limit", status, h)
			}
		})
	}
	tick := time.NewTicker(time.Second / offeredPerSecond)
	sent := 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		work <- sent
		sent++
	}
	tick.Stop()
	close(work)
	wg.Wait()

	allowed := ok[0].Load() + ok[1].Load()
	want := int64(standardPerSecond * globalRunSeconds)
	t.Logf("global limit across 2 Envoys: %d sent in %ds, %d allowed (Envoy a %d, b %d; want %d ±10%%), 429 %d (a %d, b %d), other %d",
		sent, globalRunSeconds, allowed, ok[0].Load(), ok[1].Load(), want, limited[0].Load()+limited[1].Load(),
		limited[0].Load(), limited[1].Load(), other.Load())
	if other.Load() > 0 {
		t.Errorf("%d answers were neither 200 nor 429 with Retry-After; the first: %v", other.Load(), firstOther.Load())
	}
	// The limit binds only where more was offered than it allows; a loaded machine sends less than asked, which
	// is fine while every second still offers well over the tier.
	if sent < int(want)*13/10 {
		t.Fatalf("only %d requests sent of %d asked, under 1.3× the %d the tier allows: the machine could not offer the load, the count proves nothing",
			sent, offeredPerSecond*globalRunSeconds, want)
	}
	if math.Abs(float64(allowed-want)) > 0.1*float64(want) {
		t.Errorf("%d allowed across both Envoys, want %d within 10%%: the tier is not held across replicas", allowed, want)
	}
	if ok[0].Load() == 0 || ok[1].Load() == 0 {
		t.Errorf("one Envoy allowed nothing (a %d, b %d): the load was not spread", ok[0].Load(), ok[1].Load())
	}
}

// getStatus is one GET whose body is read and dropped.
func getStatus(url, token string) (int, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, err
}

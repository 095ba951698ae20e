// Command priorauth measures the Prior Authorization API's Claim/$submit through the real stack: -c
// concurrent clients of provider-org-a POST PAS request Bundles for an MRI of the brain (CPT 70551, approved
// automatically by the rules: validation, decision, the FHIR-server writes and the PAS response Bundle, with
// no reviewer and no UM call), each with its own Claim identifier, through each face, for -n requests or
// -d long. It prints throughput, latency percentiles and the errors (any answer but 200 with A1).
//
//	make stack-up && go run ./test/bench/priorauth -c 8 -n 500
//	go run ./test/bench/priorauth -mode standalone -c 16 -d 60s
//
// The prior-auth API's rate limit (config/fhirwall.yaml, backend tier) caps what one client may send: 429s
// are counted apart, so a run that meets the limit says so instead of timing refusals. Every request leaves a
// Claim, a ClaimResponse and an ExplanationOfBenefit of member-05 on the stack's HAPI.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pa "github.com/fhirwall/fhirwall/test/priorauth"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// scopes are what a provider organisation's backend asks for to submit.
var scopes = []string{"system/Claim.c"}

func main() {
	only := flag.String("mode", "", "envoy or standalone; empty: both")
	conc := flag.Int("c", 8, "concurrent clients")
	count := flag.Int("n", 200, "requests per face (ignored when -d is set)")
	dur := flag.Duration("d", 0, "run each face this long instead of -n requests")
	warmup := flag.Int("warmup", 10, "requests per face before measuring (not counted)")
	flag.Parse()
	if *conc < 1 || (*count < 1 && *dur <= 0) {
		fmt.Fprintln(os.Stderr, "priorauth: -c and -n (or -d) must be positive")
		os.Exit(2)
	}
	if err := run(*only, *conc, *count, *dur, *warmup); err != nil {
		fmt.Fprintln(os.Stderr, "priorauth:", err)
		os.Exit(1)
	}
}

// tokens renews provider-org-a's access token before it expires (Keycloak's live 5 minutes).
type tokens struct {
	mu      sync.Mutex
	token   string
	renewAt time.Time
}

func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Now().Before(t.renewAt) {
		return t.token, nil
	}
	tok, err := stackauth.Backend(ctx, "provider-org-a", scopes...)
	if err != nil {
		return "", err
	}
	life := time.Duration(tok.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	t.token, t.renewAt = tok.AccessToken, time.Now().Add(life-time.Minute)
	return t.token, nil
}

func run(only string, conc, count int, dur time.Duration, warmup int) error {
	ctx := context.Background()
	client, err := stackenv.Client(60 * time.Second)
	if err != nil {
		return err
	}
	tr := client.Transport.(*http.Transport)
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conc*2, conc*2
	tk := &tokens{}
	if _, err := tk.get(ctx); err != nil {
		return err
	}
	runID := pa.NewRunID()
	what := fmt.Sprintf("%d requests", count)
	if dur > 0 {
		what = dur.String()
	}
	fmt.Printf("$submit of an auto-approved MRI (CPT 70551), %d concurrent clients, %s per face, run %s\n\n", conc, what, runID)
	fmt.Println("| face | requests | errors | 429 | throughput | p50 | p95 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	var results []named
	for _, f := range []struct{ name, base string }{
		{"envoy", stackenv.EnvoyURL() + "/prior-auth/fhir"},
		{"standalone", stackenv.StandaloneURL + "/prior-auth/fhir"},
	} {
		if only != "" && only != f.name {
			continue
		}
		if warmup > 0 {
			if _, err := measure(ctx, client, tk, f.base, runID+"-"+f.name+"-warmup", min(conc, warmup), warmup, 0); err != nil {
				return fmt.Errorf("%s warm-up: %w", f.name, err)
			}
		}
		r, err := measure(ctx, client, tk, f.base, runID+"-"+f.name, conc, count, dur)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		r.print(f.name)
		results = append(results, named{f.name, r})
	}
	fmt.Println()
	for _, x := range results {
		x.r.printErrors(x.face)
	}
	return nil
}

type named struct {
	face string
	r    result
}

// result is one face's run.
type result struct {
	latencies []time.Duration // of the 200 A1 answers
	errors    map[string]int  // what went wrong → how often
	limited   int             // 429s
	elapsed   time.Duration
}

func (r result) print(face string) {
	n := len(r.latencies)
	errs := 0
	for _, c := range r.errors {
		errs += c
	}
	slices.Sort(r.latencies)
	pct := func(p float64) string {
		if n == 0 {
			return "-"
		}
		return r.latencies[min(n-1, int(float64(n)*p))].Round(100 * time.Microsecond).String()
	}
	slowest := "-"
	if n > 0 {
		slowest = r.latencies[n-1].Round(100 * time.Microsecond).String()
	}
	fmt.Printf("| %s | %d | %d | %d | %.1f/s | %s | %s | %s | %s |\n", face, n+errs+r.limited, errs, r.limited,
		float64(n)/r.elapsed.Seconds(), pct(0.50), pct(0.95), pct(0.99), slowest)
}

// printErrors lists what went wrong, after the table.
func (r result) printErrors(face string) {
	var kinds []string
	for k := range r.errors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Printf("%s: %d× %s\n", face, r.errors[k], k)
	}
}

// measure has conc workers send requests until count are sent (dur 0) or dur has passed.
func measure(ctx context.Context, c *http.Client, tk *tokens, base, prefix string, conc, count int, dur time.Duration) (result, error) {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		res     = result{errors: map[string]int{}}
		wg      sync.WaitGroup
		stopAt  time.Time
		fatal   error
		fatalMu sync.Mutex
	)
	if dur > 0 {
		stopAt = time.Now().Add(dur)
	}
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if dur > 0 && time.Now().After(stopAt) || dur <= 0 && i > int64(count) {
					return
				}
				body, err := pa.NewRequest(fmt.Sprintf("pa-bench-%s-%d", prefix, i), pa.MRIBrain).Bundle()
				if err == nil {
					var tok string
					if tok, err = tk.get(ctx); err == nil {
						var lat time.Duration
						var kind string
						lat, kind, err = submit(ctx, c, base, tok, body)
						mu.Lock()
						switch kind {
						case "":
							res.latencies = append(res.latencies, lat)
						case "429":
							res.limited++
						default:
							res.errors[kind]++
						}
						mu.Unlock()
					}
				}
				if err != nil {
					fatalMu.Lock()
					fatal = errors.Join(fatal, err)
					fatalMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, fatal
}

// submit POSTs one request Bundle; kind is "" for a 200 PAS response Bundle with A1, else what it was. err is
// for what stops the run (no connection at all).
func submit(ctx context.Context, c *http.Client, base, token string, body []byte) (time.Duration, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/Claim/$submit", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Content-Type", "application/fhir+json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		return lat, "reading the answer: " + err.Error(), nil
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return lat, "429", nil
	case resp.StatusCode != http.StatusOK:
		return lat, fmt.Sprintf("%d %.120s", resp.StatusCode, out), nil
	}
	ans, err := pa.ReadAnswer(out)
	if err != nil {
		return lat, "200 but " + err.Error(), nil
	}
	if d, ok := ans.First(); !ok || !d.All(pa.Approved) {
		return lat, fmt.Sprintf("200 but not A1: %v", d.Codes()), nil
	}
	return lat, "", nil
}

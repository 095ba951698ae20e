//go:build e2e

package adversarial

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// probe is one request of a sweep: who sends it, and an optional expectation beyond check.
type probe struct {
	p      *principal
	c      call
	expect func(a answer) string // "" when the answer is as expected
}

// sweepWorkers bounds the requests a sweep has in flight (the stack runs on two cores, and the proxy's
// in-flight bound and rate limits are shared with other suites).
const sweepWorkers = 4

// sweep sends every probe through both modes, a few at a time, and reports each problem (check, then the
// probe's expectation) as an error naming the request. It returns how many requests were sent.
func sweep(t *testing.T, probes []probe) int {
	t.Helper()
	tr := groundTruth(t)
	for _, pr := range probes {
		pr.p.prepare(t, tr)
		pr.p.token(t)
	}
	type job struct {
		pr probe
		m  mode
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	statuses := map[int]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // go test's -timeout decides
	defer cancel()
	for range sweepWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				status, out := run(ctx, j.pr, j.m)
				mu.Lock()
				problems = append(problems, out...)
				statuses[status]++
				mu.Unlock()
			}
		}()
	}
	n := 0
	for _, pr := range probes {
		for _, m := range modes() {
			jobs <- job{pr, m}
			n++
		}
	}
	close(jobs)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("answers by status: %v", statuses)
	return n
}

// run sends one probe through one mode and returns the answer's status and what is wrong with it.
func run(ctx context.Context, pr probe, m mode) (int, []string) {
	tok, err := pr.p.tokenFor(ctx)
	if err != nil {
		return 0, []string{fmt.Sprintf("%s: %v", pr.p.name, err)}
	}
	a, err := send(ctx, m, pr.p.api, tok, pr.c)
	if err != nil {
		return 0, []string{fmt.Sprintf("%s as %s, %s: %v", pr.c, pr.p.name, m.name, err)}
	}
	var out []string
	for _, problem := range check(pr.p, a) {
		out = append(out, fmt.Sprintf("%s as %s, %s: %s", pr.c, pr.p.name, m.name, problem))
	}
	if pr.expect != nil {
		if problem := pr.expect(a); problem != "" {
			out = append(out, fmt.Sprintf("%s as %s, %s: %s", pr.c, pr.p.name, m.name, problem))
		}
	}
	return a.status, out
}

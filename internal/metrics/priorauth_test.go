package metrics

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPriorAuthDecisionsAreCountedByStatusAndOnlyDecisionsAreTimed(t *testing.T) {
	m, _ := newMetrics(t)
	m.PriorAuthDecided("approved", false, 2*time.Second)
	m.PriorAuthDecided("denied", true, 30*time.Hour)
	m.PriorAuthDecided("pended", true, time.Second)
	m.PriorAuthDecided("error", false, time.Second)
	m.PriorAuthDecided("Approved; DROP", false, time.Second)
	for _, tc := range []struct{ status, expedited string }{
		{"approved", "false"}, {"denied", "true"}, {"pended", "true"}, {"error", "false"}, {"other", "false"},
	} {
		if got := testutil.ToFloat64(m.priorAuth.decisions.WithLabelValues(tc.status, tc.expedited)); got != 1 {
			t.Errorf("%v: %v, want 1", tc, got)
		}
	}
	if n := testutil.CollectAndCount(m.priorAuth.seconds); n != 2 {
		t.Fatalf("%d timed series, want 2 (a pended answer or an error is not a decision)", n)
	}
}

func TestPriorAuthDecisionBucketsHoldTheCMSDeadlines(t *testing.T) {
	m, reg := newMetrics(t)
	m.PriorAuthDecided("approved", true, 71*time.Hour)
	m.PriorAuthDecided("approved", true, 73*time.Hour)
	m.PriorAuthDecided("partial", false, 6*24*time.Hour)
	m.PriorAuthDecided("denied", false, 8*24*time.Hour)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	within := map[string]uint64{} // expedited → decisions within its deadline
	for _, mf := range mfs {
		if mf.GetName() != PriorAuthDecisionDuration {
			continue
		}
		for _, mt := range mf.GetMetric() {
			exp := mt.GetLabel()[0].GetValue()
			deadline := 7 * 24 * 3600.0
			if exp == "true" {
				deadline = 72 * 3600
			}
			for _, b := range mt.GetHistogram().GetBucket() {
				if b.GetUpperBound() == deadline {
					within[exp] = b.GetCumulativeCount()
				}
			}
		}
	}
	if within["true"] != 1 || within["false"] != 1 {
		t.Fatalf("decided within the deadline per bucket: %v, want 1 expedited and 1 standard", within)
	}
}

func TestPriorAuthQueueIsReadAtScrapeTime(t *testing.T) {
	m, reg := newMetrics(t)
	pended := 3
	if err := m.WatchPriorAuthQueue(func(ctx context.Context) (int, int, time.Duration, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the read has no deadline: a hung database would hang the scrape")
		}
		return pended, 1, 80 * time.Hour, nil
	}); err != nil {
		t.Fatal(err)
	}
	pended = 4
	want := `
# HELP fhirwall_prior_auth_oldest_pended_seconds Age of the oldest pended prior-authorization request, from its receipt (0 when none is pended).
# TYPE fhirwall_prior_auth_oldest_pended_seconds gauge
fhirwall_prior_auth_oldest_pended_seconds 288000
# HELP fhirwall_prior_auth_past_deadline Pended prior-authorization requests past their CMS deadline (72 h expedited, 7 days standard).
# TYPE fhirwall_prior_auth_past_deadline gauge
fhirwall_prior_auth_past_deadline 1
# HELP fhirwall_prior_auth_pended Prior-authorization requests pended for review.
# TYPE fhirwall_prior_auth_pended gauge
fhirwall_prior_auth_pended 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), PriorAuthPended, PriorAuthPastDeadline, PriorAuthOldestPended); err != nil {
		t.Fatal(err)
	}
}

func TestPriorAuthQueueReadFailureLeavesTheGaugesOutAndIsLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	m, err := New(reg, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	readErr := errors.New("fake: postgres down")
	if err := m.WatchPriorAuthQueue(func(context.Context) (int, int, time.Duration, error) { return 2, 0, time.Hour, readErr }); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n, err := testutil.GatherAndCount(reg, PriorAuthPended, PriorAuthPastDeadline, PriorAuthOldestPended); err != nil || n != 0 {
			t.Fatalf("while the read fails: %d series, %v; want none and no scrape error", n, err)
		}
	}
	if got := strings.Count(logs.String(), "could not read the queue"); got != 1 {
		t.Fatalf("logged %d times over three failed scrapes, want once:\n%s", got, logs.String())
	}
	readErr = nil
	if n, _ := testutil.GatherAndCount(reg, PriorAuthPended, PriorAuthPastDeadline, PriorAuthOldestPended); n != 3 {
		t.Fatalf("after recovery: %d series, want 3", n)
	}
	readErr = errors.New("fake: postgres down again")
	_, _ = testutil.GatherAndCount(reg, PriorAuthPended)
	if got := strings.Count(logs.String(), "could not read the queue"); got != 2 {
		t.Fatalf("a new outage after recovery logged %d times in all, want 2", got)
	}
}

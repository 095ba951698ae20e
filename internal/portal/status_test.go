package portal

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fhirwall/fhirwall/internal/metrics"
)

// statusRig registers the two metrics the status page reads, as internal/metrics names and labels them.
type statusRig struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	now      time.Time
	status   *Status
}

func newStatusRig(t *testing.T) *statusRig {
	r := &statusRig{reg: prometheus.NewRegistry(), now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metrics.RequestsTotal, Help: "h"}, []string{"api", "mode", "code"})
	r.seconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metrics.RequestDuration, Help: "h",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1}}, []string{"api", "mode"})
	r.reg.MustRegister(r.requests, r.seconds)
	r.status = NewStatus(r.reg, func() time.Time { return r.now })
	return r
}

func (r *statusRig) serve(api, code string, n int, took float64) {
	for range n {
		r.requests.WithLabelValues(api, "standalone", code).Inc()
		r.seconds.WithLabelValues(api, "standalone").Observe(took)
	}
}

func TestStatusWindowsCountOnlyTheirOwnRequests(t *testing.T) {
	r := newStatusRig(t)
	// An hour ago: a bad spell (half 5xx, slow), then 55 minutes of snapshots, then a good 5 minutes.
	r.serve("patient-access", "503", 100, 0.8)
	r.serve("patient-access", "200", 100, 0.8)
	for range 241 {
		if err := r.status.Record(); err != nil {
			t.Fatal(err)
		}
		r.now = r.now.Add(SnapshotEvery)
		if r.now.Sub(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)) == 56*time.Minute {
			r.serve("patient-access", "200", 99, 0.003)
			r.serve("patient-access", "500", 1, 0.003)
			r.serve("patient-access", "none", 50, 0.003) // clients that went away count neither way
		}
	}
	figs := r.status.Report("patient-access")
	if len(figs) != 3 {
		t.Fatalf("%d windows", len(figs))
	}
	five, life := figs[0], figs[2]
	if five.Requests != 100 || math.Abs(five.Availability-0.99) > 1e-9 {
		t.Errorf("last 5 minutes: %v requests at %v, want 100 at 0.99", five.Requests, five.Availability)
	}
	if five.P99 > 0.005 || !five.HasLatency {
		t.Errorf("last 5 minutes p99 %v, want within the 5 ms bucket (the slow hour-old requests excluded)", five.P99)
	}
	if life.Requests != 300 || math.Abs(life.Availability-199.0/300) > 1e-9 || life.P99 < 0.5 {
		t.Errorf("lifetime: %v requests at %v, p99 %v", life.Requests, life.Availability, life.P99)
	}
	if other := r.status.Report("provider-access"); other[0].Requests != 0 || other[0].HasLatency {
		t.Errorf("an API without requests shows figures %+v", other[0])
	}
}

func TestStatusPageSaysFiguresArePerReplica(t *testing.T) {
	x := newHarness(t)
	body := x.get(nil, "/status").Body.String()
	if !strings.Contains(body, `data-test="replica"`) || !strings.Contains(body, "Database upgrade") {
		t.Errorf("status page lacks the per-replica note or the maintenance window")
	}
	wantStatus(t, x.get(nil, "/status/unknown"), 404)
}

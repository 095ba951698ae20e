package metrics

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The Prior Authorization API's series: decisions by outcome and their time from receipt (CMS-0057-F
// timeframes: 72 hours expedited, 7 days standard), and the review queue read at scrape time.

type priorAuthSeries struct {
	decisions *prometheus.CounterVec
	seconds   *prometheus.HistogramVec
}

// priorAuthBuckets run from an automatic decision (seconds) to past the standard 7-day deadline; 72 h and
// 7 d are bounds, so the share decided within each CMS timeframe is read off one bucket.
var priorAuthBuckets = []float64{
	1, 5, 30, // rules and the UM system, while the provider waits
	60, 300, 900, 3600, // a reviewer at hand
	4 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 72 * 3600, // the expedited deadline
	96 * 3600, 5 * 24 * 3600, 7 * 24 * 3600, // the standard deadline
	14 * 24 * 3600,
}

func newPriorAuthSeries() priorAuthSeries {
	return priorAuthSeries{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: PriorAuthDecisionsTotal,
			Help: "Prior-authorization requests answered, by status (approved, denied, partial, pended, error) and whether expedited; a pended request decided later counts again with its decision."},
			[]string{"status", "expedited"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: PriorAuthDecisionDuration,
			Help:    "Time from a prior-authorization request's receipt to its decision (approved, denied or partial).",
			Buckets: priorAuthBuckets}, []string{"expedited"}),
	}
}

// priorAuthStatuses are the status label's values (the adapter's priorauth.Status; anything else is other).
var priorAuthStatuses = map[string]bool{"approved": true, "denied": true, "partial": true, "pended": true, "error": true}

// PriorAuthDecided counts an answered prior-authorization request by status and, when it is a decision
// (not pended, not an error), observes took, the time from its receipt.
func (m *Metrics) PriorAuthDecided(status string, expedited bool, took time.Duration) {
	if !priorAuthStatuses[status] {
		status = "other"
	}
	exp := strconv.FormatBool(expedited)
	m.priorAuth.decisions.WithLabelValues(status, exp).Inc()
	if status != "pended" && status != "error" && status != "other" && took >= 0 {
		m.priorAuth.seconds.WithLabelValues(exp).Observe(took.Seconds())
	}
}

// priorAuthReadTimeout bounds a scrape's read of the queue, under Prometheus' default 10 s scrape timeout.
const priorAuthReadTimeout = 3 * time.Second

// WatchPriorAuthQueue registers the review queue's gauges, read by read at each scrape: pended requests,
// those past their CMS deadline, and the age of the oldest. When read fails the gauges are left out of
// that scrape (an absent series alerts; a stale zero would not), and the failure is logged once until a
// read succeeds again.
func (m *Metrics) WatchPriorAuthQueue(read func(ctx context.Context) (pended, pastDeadline int, oldest time.Duration, err error)) error {
	return m.reg.Register(&priorAuthQueueCollector{read: read, m: m})
}

var (
	priorAuthPendedDesc = prometheus.NewDesc(PriorAuthPended,
		"Prior-authorization requests pended for review.", nil, nil)
	priorAuthPastDeadlineDesc = prometheus.NewDesc(PriorAuthPastDeadline,
		"Pended prior-authorization requests past their CMS deadline (72 h expedited, 7 days standard).", nil, nil)
	priorAuthOldestDesc = prometheus.NewDesc(PriorAuthOldestPended,
		"Age of the oldest pended prior-authorization request, from its receipt (0 when none is pended).", nil, nil)
)

type priorAuthQueueCollector struct {
	read    func(ctx context.Context) (int, int, time.Duration, error)
	m       *Metrics
	failing atomic.Bool
}

func (c *priorAuthQueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- priorAuthPendedDesc
	ch <- priorAuthPastDeadlineDesc
	ch <- priorAuthOldestDesc
}

func (c *priorAuthQueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), priorAuthReadTimeout)
	defer cancel()
	pended, past, oldest, err := c.read(ctx)
	if err != nil {
		if !c.failing.Swap(true) {
			c.m.log.Warn("prior-auth queue metrics: could not read the queue; its gauges are left out until it can be read", "err", err)
		}
		return
	}
	if c.failing.Swap(false) {
		c.m.log.Info("prior-auth queue metrics: the queue can be read again")
	}
	ch <- prometheus.MustNewConstMetric(priorAuthPendedDesc, prometheus.GaugeValue, float64(pended))
	ch <- prometheus.MustNewConstMetric(priorAuthPastDeadlineDesc, prometheus.GaugeValue, float64(past))
	ch <- prometheus.MustNewConstMetric(priorAuthOldestDesc, prometheus.GaugeValue, oldest.Seconds())
}

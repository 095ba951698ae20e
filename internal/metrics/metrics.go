// Package metrics is fhirwall-proxy's Prometheus instrumentation and its health endpoints: every series is
// labelled by the API it concerns, and the decision core, both faces and the audit sink report into one Metrics.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// Metric names, also read by the dashboard generator's test (config/grafana).
const (
	RequestsTotal           = "fhirwall_requests_total"
	DecisionsTotal          = "fhirwall_decisions_total"
	DecisionDuration        = "fhirwall_decision_duration_seconds"
	RequestDuration         = "fhirwall_request_duration_seconds"
	UpstreamErrorsTotal     = "fhirwall_upstream_errors_total"
	BreakerState            = "fhirwall_circuit_breaker_state"
	AuditWritesInFlight     = "fhirwall_audit_writes_in_flight"
	AuditWriteFailuresTotal = "fhirwall_audit_write_failures_total"
	AuditSpoolBytes         = "fhirwall_audit_spool_bytes"
	AuditSpoolBudget        = "fhirwall_audit_spool_budget_bytes"
	AuditSpoolLag           = "fhirwall_audit_spool_unshipped_entries"
	AuditSpoolFailed        = "fhirwall_audit_spool_failed"
	AuditShippedTotal       = "fhirwall_audit_shipped_total"
	AuditShipFailuresTotal  = "fhirwall_audit_ship_failures_total"
	RateLimitedTotal        = "fhirwall_rate_limited_total"
	DecisionCacheTotal      = "fhirwall_decision_cache_total"

	PriorAuthDecisionsTotal   = "fhirwall_prior_auth_decisions_total"
	PriorAuthDecisionDuration = "fhirwall_prior_auth_decision_seconds"
	PriorAuthPended           = "fhirwall_prior_auth_pended"
	PriorAuthPastDeadline     = "fhirwall_prior_auth_past_deadline"
	PriorAuthOldestPended     = "fhirwall_prior_auth_oldest_pended_seconds"
)

// Names lists every metric New registers (histograms add _bucket, _sum and _count series).
var Names = []string{RequestsTotal, DecisionsTotal, DecisionDuration, RequestDuration, UpstreamErrorsTotal,
	BreakerState, AuditWritesInFlight, AuditWriteFailuresTotal, RateLimitedTotal,
	AuditSpoolBytes, AuditSpoolBudget, AuditSpoolLag, AuditSpoolFailed, AuditShippedTotal, AuditShipFailuresTotal,
	DecisionCacheTotal,
	PriorAuthDecisionsTotal, PriorAuthDecisionDuration, PriorAuthPended, PriorAuthPastDeadline, PriorAuthOldestPended}

// NoAPI is the api label of a request under no configured API.
const NoAPI = "none"

// Upstream error kinds, the kind label of UpstreamErrorsTotal.
const (
	KindTimeout     = "timeout"
	KindConnect     = "connect"
	Kind5xx         = "5xx"
	KindBreakerOpen = "breaker_open" // refused by a circuit breaker without calling the server
	KindOther       = "other"
)

// Metrics holds fhirwall's collectors. It implements decision.Observer and the standalone face's hook.
type Metrics struct {
	requests        *prometheus.CounterVec
	decisions       *prometheus.CounterVec
	decisionSeconds *prometheus.HistogramVec
	requestSeconds  *prometheus.HistogramVec
	upstreamErrors  *prometheus.CounterVec
	auditInFlight   *prometheus.GaugeVec
	auditFailures   *prometheus.CounterVec
	rateLimited     *prometheus.CounterVec
	priorAuth       priorAuthSeries
	reg             prometheus.Registerer
	log             *slog.Logger
	reasons         boundedLabel // the decisive reason label's values
	clients         boundedLabel // the rate-limited client label's values
}

var _ decision.Observer = (*Metrics)(nil)

// maxReasons bounds the reason label: reasons are codes from the core and the Rego policies (a few dozen),
// but a policy set is configuration, and a label must not grow with it unchecked.
const maxReasons = 100

// maxClients bounds the client label of RateLimitedTotal: only registered clients get their own value, and
// no more than this many of them (a registry of thousands of apps must not become thousands of series per API).
const maxClients = 500

// OtherClient is the client label of a request whose client is not registered (or past maxClients).
const OtherClient = "other"

// Option changes what New builds.
type Option func(*Metrics)

// WithLogger is where the collectors that read state at scrape time report a failed read (default: nowhere).
func WithLogger(log *slog.Logger) Option { return func(m *Metrics) { m.log = log } }

// New registers fhirwall's metrics on reg (a registry the caller built; nothing is global).
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	m := &Metrics{
		reg:       reg,
		log:       slog.New(slog.DiscardHandler),
		priorAuth: newPriorAuthSeries(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: RequestsTotal,
			Help: "Requests answered, by API, mode and the HTTP status the client got (none: no answer reached it)."},
			[]string{"api", "mode", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: DecisionsTotal,
			Help: "Decisions, by API, mode, outcome (allow, deny, error) and decisive reason code."},
			[]string{"api", "mode", "outcome", "reason"}),
		decisionSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: DecisionDuration,
			Help:    "Time to decide a request (token, classification, facts, policy, obligations).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"api", "mode"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: RequestDuration,
			Help:    "Whole request time in the standalone proxy, from the request to the end of the answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"api", "mode"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: UpstreamErrorsTotal,
			Help: "Failed calls to the FHIR server (adapters while deciding, and proxied requests), by kind."},
			[]string{"api", "mode", "kind"}),
		auditInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: AuditWritesInFlight,
			Help: "Audit records being written and not yet acknowledged by the sink."}, []string{"api"}),
		auditFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: AuditWriteFailuresTotal,
			Help: "Audit writes that failed (the request was answered 503 instead)."}, []string{"api"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: RateLimitedTotal,
			Help: "Allowed requests the rate limiter refused (429), by API, mode and registered client (other: any other)."},
			[]string{"api", "mode", "client"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.decisions, m.decisionSeconds, m.requestSeconds,
		m.upstreamErrors, m.auditInFlight, m.auditFailures, m.rateLimited, m.priorAuth.decisions, m.priorAuth.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// Decided counts a decision and, when it was timed, its latency.
func (m *Metrics) Decided(d *decision.Decision, took time.Duration) {
	api, mode := labels(d)
	out := "allow"
	switch {
	case d.Allow:
	case d.Refusal.Status >= 500:
		out = "error"
	default:
		out = "deny"
	}
	m.decisions.WithLabelValues(api, mode, out, m.reason(d.Reasons)).Inc()
	if took > 0 {
		m.decisionSeconds.WithLabelValues(api, mode).Observe(took.Seconds())
	}
}

// Answered counts a request by the status its client got, and an allowed request answered 429 as rate
// limited: both faces record that answer through the core (the standalone limiter, and Envoy's local or
// global rate limit through ext_proc's local reply), so one place counts both.
func (m *Metrics) Answered(d *decision.Decision, status int) {
	api, mode := labels(d)
	m.requests.WithLabelValues(api, mode, code(status)).Inc()
	if d.Allow && status == http.StatusTooManyRequests {
		m.rateLimited.WithLabelValues(api, mode, m.client(d.Client)).Inc()
	}
}

// UpstreamFailed counts a failed call to the FHIR server by kind.
func (m *Metrics) UpstreamFailed(d *decision.Decision, err error) {
	api, mode := labels(d)
	m.upstreamErrors.WithLabelValues(api, mode, Kind(err)).Inc()
}

// Served observes a whole standalone request.
func (m *Metrics) Served(d *decision.Decision, took time.Duration) {
	api, mode := labels(d)
	m.requestSeconds.WithLabelValues(api, mode).Observe(took.Seconds())
}

func labels(d *decision.Decision) (api, mode string) {
	api, mode = d.Input.API, d.Input.Mode
	if api == "" {
		api = NoAPI
	}
	if mode == "" {
		mode = "unknown"
	}
	return api, mode
}

// reason is the decisive reason (the last one: a refusal after the policy allowed is appended to the
// policy's reasons), bounded in form and in number.
func (m *Metrics) reason(reasons []string) string {
	if len(reasons) == 0 {
		return "none"
	}
	r := reasons[len(reasons)-1]
	if !isCode(r) {
		return "other"
	}
	return m.reasons.value(r, maxReasons, "other")
}

// client is the client label: the id of a registered client (the registry found it), bounded in form and
// in number like reason; anything else is OtherClient.
func (m *Metrics) client(c *decision.Client) string {
	if c == nil || !isClientID(c.ID) {
		return OtherClient
	}
	return m.clients.value(c.ID, maxClients, OtherClient)
}

// boundedLabel is the set of values a label has taken so far, so that it never takes more than a bound: a
// value seen before keeps its series, a new one gets its own only while there is room.
type boundedLabel struct {
	seen sync.Map
	n    atomic.Int32
}

// value is v if v has a series or there is room for one more of at most max, else other.
func (b *boundedLabel) value(v string, max int32, other string) string {
	if _, seen := b.seen.Load(v); seen {
		return v
	}
	if b.n.Add(1) > max {
		b.n.Add(-1)
		return other
	}
	if _, seen := b.seen.LoadOrStore(v, struct{}{}); seen {
		b.n.Add(-1)
	}
	return v
}

// isClientID: what registered client ids look like (letters, digits, . _ : -), short enough for a label.
func isClientID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func isCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// code is a status as a label: the number for a status net/http knows, its class otherwise, none for 0.
func code(status int) string {
	switch {
	case status == 0:
		return "none"
	case http.StatusText(status) != "":
		return strconv.Itoa(status)
	case status >= 100 && status < 600:
		return strconv.Itoa(status/100) + "xx"
	}
	return "other"
}

// Kind classifies an error of a call to the FHIR server. An error carrying the server's answer reports it
// with a StatusCode() int method (adapters/fhirserver.StatusError, the standalone face's upstream 5xx).
func Kind(err error) string {
	var sc interface{ StatusCode() int }
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return KindBreakerOpen
	case errors.As(err, &sc):
		if sc.StatusCode() >= 500 {
			return Kind5xx
		}
		return KindOther
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case errors.As(err, &op) && op.Op == "dial":
		return KindConnect
	}
	return KindOther
}

// AuditSink counts the writes of next: in flight while it has not answered, and failed.
func (m *Metrics) AuditSink(next decision.Sink) decision.Sink { return &auditSink{next: next, m: m} }

type auditSink struct {
	next decision.Sink
	m    *Metrics
}

func (s *auditSink) Write(ctx context.Context, r audit.Record) error {
	api := r.API
	if api == "" {
		api = NoAPI
	}
	g := s.m.auditInFlight.WithLabelValues(api)
	g.Inc()
	defer g.Dec()
	err := s.next.Write(ctx, r)
	if err != nil {
		s.m.auditFailures.WithLabelValues(api).Inc()
	}
	return err
}

// Breaker is a circuit breaker as gobreaker's CircuitBreaker[T] shows itself.
type Breaker interface {
	Name() string
	State() gobreaker.State
}

// WatchBreakers registers a gauge of each breaker's state (0 closed, 1 half-open, 2 open), read at scrape time.
func (m *Metrics) WatchBreakers(bs ...Breaker) error {
	return m.reg.Register(breakerCollector(bs))
}

var breakerDesc = prometheus.NewDesc(BreakerState,
	"Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"breaker"}, nil)

type breakerCollector []Breaker

func (breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerDesc }

func (bc breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range bc {
		// gobreaker's constants are 0 closed, 1 half-open, 2 open: the gauge's values.
		ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, float64(b.State()), b.Name())
	}
}

// Spool is what the metrics read of the audit spool and its shipper at scrape time.
type Spool struct {
	Stats   func() audit.Stats
	Shipped func() (shipped, failures uint64)
}

// WatchSpool registers the spool's gauges: bytes against the budget (requests are refused at the budget) and
// the entries not yet acknowledged by Kafka, and the shipper's counters.
func (m *Metrics) WatchSpool(s Spool) error {
	return m.reg.Register(spoolCollector(s))
}

var (
	spoolBytesDesc   = prometheus.NewDesc(AuditSpoolBytes, "Bytes in the audit spool's segments.", nil, nil)
	spoolBudgetDesc  = prometheus.NewDesc(AuditSpoolBudget, "The audit spool's disk budget; at it, requests are refused (503).", nil, nil)
	spoolLagDesc     = prometheus.NewDesc(AuditSpoolLag, "Audit entries durable in the spool but not yet acknowledged by Kafka.", nil, nil)
	shippedDesc      = prometheus.NewDesc(AuditShippedTotal, "Audit entries acknowledged by Kafka.", nil, nil)
	shipFailuresDesc = prometheus.NewDesc(AuditShipFailuresTotal, "Failed Kafka writes of audit batches (each is retried).", nil, nil)
	spoolFailedDesc  = prometheus.NewDesc(AuditSpoolFailed, "1 when a spool write or fsync failed: every request is refused until restart.", nil, nil)
)

type spoolCollector Spool

func (spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{spoolBytesDesc, spoolBudgetDesc, spoolLagDesc, shippedDesc, shipFailuresDesc, spoolFailedDesc} {
		ch <- d
	}
}

func (s spoolCollector) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	failed := 0.0
	if st.Failed != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(spoolBytesDesc, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(spoolBudgetDesc, prometheus.GaugeValue, float64(st.Budget))
	ch <- prometheus.MustNewConstMetric(spoolLagDesc, prometheus.GaugeValue, float64(st.Durable-st.Cursor))
	ch <- prometheus.MustNewConstMetric(spoolFailedDesc, prometheus.GaugeValue, failed)
	shipped, failures := s.Shipped()
	ch <- prometheus.MustNewConstMetric(shippedDesc, prometheus.CounterValue, float64(shipped))
	ch <- prometheus.MustNewConstMetric(shipFailuresDesc, prometheus.CounterValue, float64(failures))
}

// WatchDecisionCache registers the decision cache's counter, read at scrape time: result hit (answered from
// the cache), miss (evaluated and kept) or bypass (evaluated without the cache: a policy set that reads the
// clock or the network, or an input without canonical encoding).
func (m *Metrics) WatchDecisionCache(stats func() decision.CacheStats) error {
	return m.reg.Register(decisionCacheCollector(stats))
}

var decisionCacheDesc = prometheus.NewDesc(DecisionCacheTotal,
	"Policy decisions by where they came from: hit (the decision cache), miss, bypass (evaluated without the cache).", []string{"result"}, nil)

type decisionCacheCollector func() decision.CacheStats

func (decisionCacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- decisionCacheDesc }

func (f decisionCacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := f()
	ch <- prometheus.MustNewConstMetric(decisionCacheDesc, prometheus.CounterValue, float64(s.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(decisionCacheDesc, prometheus.CounterValue, float64(s.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(decisionCacheDesc, prometheus.CounterValue, float64(s.Bypasses), "bypass")
}

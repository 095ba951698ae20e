package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/outcome"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func decided(api string, allow bool, status int, reasons ...string) *decision.Decision {
	return &decision.Decision{Input: decision.Input{API: api, Mode: decision.ModeEnvoy}, Allow: allow,
		Refusal: outcome.Refusal{Status: status}, Reasons: reasons}
}

func TestDecisionsAreCountedByAPIOutcomeAndDecisiveReason(t *testing.T) {
	m, _ := newMetrics(t)
	m.Decided(decided("patient-access", true, 0, "patient_scope"), time.Millisecond)
	m.Decided(decided("patient-access", false, 404, "patient_scope", "not_this_patient"), time.Millisecond)
	m.Decided(decided("provider-access", false, 503, "facts_unavailable"), time.Millisecond)
	m.Decided(decided("", false, 404, "no_api"), 0)
	for _, tc := range []struct{ api, outcome, reason string }{
		{"patient-access", "allow", "patient_scope"},
		{"patient-access", "deny", "not_this_patient"},
		{"provider-access", "error", "facts_unavailable"},
		{NoAPI, "deny", "no_api"},
	} {
		if got := testutil.ToFloat64(m.decisions.WithLabelValues(tc.api, "envoy", tc.outcome, tc.reason)); got != 1 {
			t.Errorf("%v: %v decisions, want 1", tc, got)
		}
	}
	if n := testutil.CollectAndCount(m.decisionSeconds); n != 2 {
		t.Fatalf("%d latency series, want 2 (an untimed refusal is not observed)", n)
	}
}

func TestReasonLabelStaysBounded(t *testing.T) {
	m, _ := newMetrics(t)
	m.Decided(decided("patient-access", false, 403, "Not A Code!"), time.Millisecond)
	for i := range maxReasons + 10 {
		m.Decided(decided("patient-access", false, 403, fmt.Sprintf("reason_%d", i)), time.Millisecond)
	}
	if n := testutil.CollectAndCount(m.decisions); n != maxReasons+1 {
		t.Fatalf("%d reason series, want %d and the rest as other", n, maxReasons+1)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("patient-access", "envoy", "deny", "other")); got != 11 {
		t.Fatalf("other = %v, want 11", got)
	}
}

func TestStatusCodeLabel(t *testing.T) {
	for status, want := range map[int]string{0: "none", 200: "200", 404: "404", 503: "503", 299: "2xx", 599: "5xx", 999: "other"} {
		if got := code(status); got != want {
			t.Errorf("code(%d) = %q, want %q", status, got, want)
		}
	}
}

type fakeStatusErr int

func (e fakeStatusErr) Error() string   { return "fake status" }
func (e fakeStatusErr) StatusCode() int { return int(e) }

func TestUpstreamErrorKinds(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("facts: %w", gobreaker.ErrOpenState), KindBreakerOpen},
		{fmt.Errorf("fhir server: %w", fakeStatusErr(503)), Kind5xx},
		{fakeStatusErr(404), KindOther},
		{&url.Error{Op: "Get", URL: "http://fhir", Err: dial}, KindConnect},
		{context.DeadlineExceeded, KindTimeout},
		{&url.Error{Op: "Get", URL: "http://fhir", Err: timeoutErr{}}, KindTimeout},
		{errors.New("something else"), KindOther},
	} {
		if got := Kind(tc.err); got != tc.want {
			t.Errorf("Kind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "fake timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

type fakeBlockingSink struct {
	entered chan struct{}
	release chan error
}

func (f fakeBlockingSink) Write(context.Context, audit.Record) error {
	f.entered <- struct{}{}
	return <-f.release
}

func TestAuditWritesInFlightAndFailuresPerAPI(t *testing.T) {
	m, _ := newMetrics(t)
	inner := fakeBlockingSink{entered: make(chan struct{}), release: make(chan error)}
	sink := m.AuditSink(inner)
	done := make(chan error)
	go func() { done <- sink.Write(context.Background(), audit.Record{API: "payer-exchange"}) }()
	<-inner.entered
	if got := testutil.ToFloat64(m.auditInFlight.WithLabelValues("payer-exchange")); got != 1 {
		t.Fatalf("in flight while writing = %v, want 1", got)
	}
	inner.release <- errors.New("fake broker down")
	if err := <-done; err == nil {
		t.Fatal("the sink's error was swallowed")
	}
	if got := testutil.ToFloat64(m.auditInFlight.WithLabelValues("payer-exchange")); got != 0 {
		t.Fatalf("in flight after the write = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.auditFailures.WithLabelValues("payer-exchange")); got != 1 {
		t.Fatalf("failures = %v, want 1", got)
	}
}

type fakeBreaker struct {
	name  string
	state gobreaker.State
}

func (f *fakeBreaker) Name() string           { return f.name }
func (f *fakeBreaker) State() gobreaker.State { return f.state }

func TestBreakerStateIsReadAtScrapeTime(t *testing.T) {
	m, reg := newMetrics(t)
	fhir := &fakeBreaker{name: "fhir-server"}
	if err := m.WatchBreakers(fhir, &fakeBreaker{name: "consent", state: gobreaker.StateHalfOpen}); err != nil {
		t.Fatal(err)
	}
	fhir.state = gobreaker.StateOpen
	want := `
# HELP fhirwall_circuit_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open.
# TYPE fhirwall_circuit_breaker_state gauge
fhirwall_circuit_breaker_state{breaker="consent"} 1
fhirwall_circuit_breaker_state{breaker="fhir-server"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), BreakerState); err != nil {
		t.Fatal(err)
	}
}

// An allowed request answered 429 is rate limited, counted per API and registered client; a refusal's 429
// (the policy's) is not the limiter's, and an unregistered or odd client id is other.
func TestRateLimitedIsCountedPerAPIAndRegisteredClient(t *testing.T) {
	m, _ := newMetrics(t)
	limited := func(api, client string) *decision.Decision {
		d := decided(api, true, 0)
		if client != "" {
			d.Client = &decision.Client{ID: client}
		}
		return d
	}
	m.Answered(limited("prior-auth", "provider-org-a"), 429)
	m.Answered(limited("prior-auth", "provider-org-a"), 429)
	m.Answered(limited("prior-auth", ""), 429)
	m.Answered(limited("prior-auth", "bad client id\n"), 429)
	m.Answered(limited("prior-auth", "provider-org-a"), 200)
	m.Answered(decided("prior-auth", false, 429, "too_many"), 429)
	for _, tc := range []struct {
		client string
		want   float64
	}{{"provider-org-a", 2}, {OtherClient, 2}} {
		if got := testutil.ToFloat64(m.rateLimited.WithLabelValues("prior-auth", decision.ModeEnvoy, tc.client)); got != tc.want {
			t.Errorf("rate limited of %s = %v, want %v", tc.client, got, tc.want)
		}
	}
}

func TestRateLimitedClientLabelIsBounded(t *testing.T) {
	m, _ := newMetrics(t)
	for i := range maxClients + 10 {
		d := decided("patient-access", true, 0)
		d.Client = &decision.Client{ID: "app-" + strconv.Itoa(i)}
		m.Answered(d, 429)
	}
	if n := testutil.CollectAndCount(m.rateLimited); n != maxClients+1 {
		t.Fatalf("%d series, want %d registered clients and other", n, maxClients+1)
	}
	if got := testutil.ToFloat64(m.rateLimited.WithLabelValues("patient-access", decision.ModeEnvoy, OtherClient)); got != 10 {
		t.Fatalf("other = %v, want the 10 past the bound", got)
	}
}

func TestEveryNamedMetricIsRegistered(t *testing.T) {
	m, reg := newMetrics(t)
	if err := m.WatchBreakers(&fakeBreaker{name: "fhir-server"}); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchSpool(Spool{
		Stats:   func() audit.Stats { return audit.Stats{Bytes: 10, Budget: 100, Durable: 7, Cursor: 5} },
		Shipped: func() (uint64, uint64) { return 5, 1 },
	}); err != nil {
		t.Fatal(err)
	}
	d := decided("patient-access", true, 0, "patient_scope")
	m.Decided(d, time.Millisecond)
	m.Answered(d, 200)
	m.Served(d, time.Millisecond)
	m.UpstreamFailed(d, context.DeadlineExceeded)
	m.Answered(d, 429)
	m.PriorAuthDecided("approved", true, time.Minute)
	if err := m.WatchPriorAuthQueue(func(context.Context) (int, int, time.Duration, error) { return 1, 0, time.Hour, nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchDecisionCache(func() decision.CacheStats { return decision.CacheStats{Hits: 2, Misses: 1} }); err != nil {
		t.Fatal(err)
	}
	_ = m.AuditSink(fakeOKSink{}).Write(context.Background(), audit.Record{API: "patient-access"})
	_ = m.AuditSink(fakeFailSink{}).Write(context.Background(), audit.Record{API: "patient-access"})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, n := range Names {
		if !got[n] {
			t.Errorf("%s is named but not gathered", n)
		}
	}
	if len(got) != len(Names) {
		t.Errorf("gathered %d metrics, Names lists %d", len(got), len(Names))
	}
}

type fakeOKSink struct{}

func (fakeOKSink) Write(context.Context, audit.Record) error { return nil }

type fakeFailSink struct{}

func (fakeFailSink) Write(context.Context, audit.Record) error { return errors.New("fake failure") }

func TestReadyzAnswers503WithTheFirstFailingCheck(t *testing.T) {
	ok := Check{Name: "policy", Ready: func(context.Context) error { return nil }}
	down := Check{Name: "audit sink", Ready: func(context.Context) error { return errors.New("kafka: dial\nrefused") }}
	for _, tc := range []struct {
		name   string
		checks []Check
		status int
		body   string
	}{
		{"all checks hold", []Check{ok}, 200, "ready policy_revision=r1\n"},
		{"sink down", []Check{ok, down}, 503, "not ready: audit sink: kafka: dial refused\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Readyz(time.Second, func() string { return "policy_revision=r1" }, tc.checks...)(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
		})
	}
}

func TestMetricsEndpointServesTheRegistry(t *testing.T) {
	m, reg := newMetrics(t)
	d := decided("patient-access", true, 0)
	d.Input.Mode = decision.ModeStandalone
	d.Client = &decision.Client{ID: "patient-app"}
	m.Answered(d, 429)
	rec := httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `fhirwall_rate_limited_total{api="patient-access",client="patient-app",mode="standalone"} 1`) {
		t.Fatalf("got %d:\n%s", rec.Code, rec.Body.String())
	}
}

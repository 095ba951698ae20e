package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/metrics"
)

// measured is a gateway in front of upstream whose core and face report into a fresh registry.
func measured(t *testing.T, upstream string) (*httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sink := &fakeSink{records: make(chan audit.Record, 16)}
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: m.AuditSink(sink),
		Log: log, Now: time.Now, Observer: m}
	u, _ := url.Parse(upstream + "/fhir")
	g := New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, u, http.DefaultTransport, log)
	g.Metrics = m
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv, reg
}

func get(t *testing.T, srv *httptest.Server, path string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer member-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestStandaloneRequestsAppearAsPerAPISeries(t *testing.T) {
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if strings.HasSuffix(r.URL.Path, "/obs-down") {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, `{"resourceType":"Observation","id":"obs-1"}`)
	}))
	defer fhir.Close()
	srv, reg := measured(t, fhir.URL)

	if st := get(t, srv, "/patient-access/fhir/Observation/obs-1"); st != 200 {
		t.Fatalf("allowed request answered %d", st)
	}
	if st := get(t, srv, "/patient-access/fhir/Observation/obs-down"); st != 503 {
		t.Fatalf("upstream 503 answered %d", st)
	}
	if st := get(t, srv, "/elsewhere/fhir/Patient"); st != 404 {
		t.Fatalf("request under no API answered %d", st)
	}

	want := `
# HELP fhirwall_requests_total Requests answered, by API, mode and the HTTP status the client got (none: no answer reached it).
# TYPE fhirwall_requests_total counter
fhirwall_requests_total{api="none",code="404",mode="standalone"} 1
fhirwall_requests_total{api="patient-access",code="200",mode="standalone"} 1
fhirwall_requests_total{api="patient-access",code="503",mode="standalone"} 1
# HELP fhirwall_upstream_errors_total Failed calls to the FHIR server (adapters while deciding, and proxied requests), by kind.
# TYPE fhirwall_upstream_errors_total counter
fhirwall_upstream_errors_total{api="patient-access",kind="5xx",mode="standalone"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metrics.RequestsTotal, metrics.UpstreamErrorsTotal); err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case metrics.DecisionsTotal:
			if n := len(mf.GetMetric()); n != 2 {
				t.Errorf("%d decision series, want allow for patient-access and deny (no_api) for none", n)
			}
		case metrics.DecisionDuration, metrics.RequestDuration:
			var n uint64
			for _, s := range mf.GetMetric() {
				if hasLabel(s.GetLabel(), "api", "patient-access") {
					n += s.GetHistogram().GetSampleCount()
				}
			}
			if n != 2 {
				t.Errorf("%s: %d patient-access observations, want 2", mf.GetName(), n)
			}
		}
	}
}

func TestStandaloneUnreachableFHIRServerIsAConnectError(t *testing.T) {
	fhir := httptest.NewServer(http.NotFoundHandler())
	addr := fhir.URL
	fhir.Close() // nothing listens there any more
	srv, reg := measured(t, addr)
	if st := get(t, srv, "/patient-access/fhir/Observation/obs-1"); st != 503 {
		t.Fatalf("answered %d, want 503", st)
	}
	want := `
# HELP fhirwall_upstream_errors_total Failed calls to the FHIR server (adapters while deciding, and proxied requests), by kind.
# TYPE fhirwall_upstream_errors_total counter
fhirwall_upstream_errors_total{api="patient-access",kind="connect",mode="standalone"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metrics.UpstreamErrorsTotal); err != nil {
		t.Fatal(err)
	}
}

func hasLabel(ls []*dto.LabelPair, name, value string) bool {
	for _, l := range ls {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

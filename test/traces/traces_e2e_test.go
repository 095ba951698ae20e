//go:build e2e

// Package traces checks OpenTelemetry tracing on the real stack (test/stack/up.sh, with the Jaeger collector
// of test/stack/jaeger.sh): one request through Envoy is one trace holding Envoy's spans and fhirwall-proxy's
// (ext_authz, ext_proc, decision, policy, response check, audit write), the trace its audit record names;
// one standalone request's trace holds the upstream span too; and a client's own traceparent is never the
// trace an audit record names. The trace id is read from the audit record in Kafka, found by the answer's
// X-Fhirwall-Decision-Id; the spans from the collector's query API.
package traces

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

// Service names of the stack's config (tracing.envoy_service_name and tracing.service_name defaults).
const (
	envoyService = "fhirwall-envoy"
	proxyService = "fhirwall-proxy"
)

var traceIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// clientTraceID is the trace a client claims with its own traceparent (new for each run, so the collector's
// memory of earlier runs cannot answer for this one); untrusted, it must go nowhere.
var clientTraceID, clientTraceparent = func() (string, string) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b[:16])
	return id, "00-" + id + "-" + hex.EncodeToString(b[16:]) + "-01"
}()

// jaegerTrace is the part of the query API's answer (GET /api/traces/{id}) the tests read.
type jaegerTrace struct {
	Data []struct {
		Spans []struct {
			SpanID        string `json:"spanID"`
			OperationName string `json:"operationName"`
			ProcessID     string `json:"processID"`
			References    []struct {
				RefType string `json:"refType"`
				TraceID string `json:"traceID"`
				SpanID  string `json:"spanID"`
			} `json:"references"`
			Tags []struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			} `json:"tags"`
		} `json:"spans"`
		Processes map[string]struct {
			ServiceName string `json:"serviceName"`
		} `json:"processes"`
	} `json:"data"`
}

// span is one span as the tests compare it: its service and name.
type span struct{ service, name string }

func (tr jaegerTrace) spans() []span {
	var out []span
	for _, d := range tr.Data {
		for _, s := range d.Spans {
			out = append(out, span{d.Processes[s.ProcessID].ServiceName, s.OperationName})
		}
	}
	return out
}

// collector fails or skips t unless the stack's trace collector answers.
func collector(t *testing.T) {
	t.Helper()
	resp, err := http.Get(stackenv.JaegerQueryURL + "/api/services")
	if err != nil {
		require.Missing(t, "the trace collector is not running: bash test/stack/jaeger.sh start, then restart fhirwall and Envoy (bash test/stack/fhirwall.sh stop && bash test/stack/fhirwall.sh start; bash test/stack/envoy.sh restart)")
	}
	resp.Body.Close()
}

// get sends one GET with the member's token and the client's own trace context; it returns the decision id.
func get(t *testing.T, ctx context.Context, client *http.Client, url, token string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("traceparent", clientTraceparent)
	req.Header.Set("tracestate", "client=chosen")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	id := resp.Header.Get("X-Fhirwall-Decision-Id")
	if id == "" {
		t.Fatalf("GET %s: no X-Fhirwall-Decision-Id", url)
	}
	return id
}

// traceIDOf reads the trace_id of the audit record of decision id from Kafka.
func traceIDOf(t *testing.T, ctx context.Context, since time.Time, decisionID string) string {
	t.Helper()
	var traceID string
	found, err := stackaudit.Scan(ctx, since, func(rec map[string]any) bool {
		if rec["decision_id"] != decisionID {
			return false
		}
		traceID, _ = rec["trace_id"].(string)
		return true
	})
	if err != nil {
		t.Fatalf("reading the audit topic: %v", err)
	}
	if !found {
		t.Fatalf("no audit record for decision %s", decisionID)
	}
	if traceID == "" {
		t.Fatalf("the audit record of decision %s has no trace_id: is tracing on in the running stack (FHIRWALL_TRACING_ENDPOINT, test/stack/fhirwall.sh)?", decisionID)
	}
	if !traceIDRE.MatchString(traceID) {
		t.Fatalf("trace_id %q is not a W3C trace id", traceID)
	}
	if traceID == clientTraceID {
		t.Fatalf("the audit record names the trace the client chose (%s): an untrusted traceparent was followed", clientTraceID)
	}
	return traceID
}

// waitForSpans reads trace id from the collector until it holds every wanted span (spans arrive in batches,
// Envoy's within its flush interval) or time runs out.
func waitForSpans(t *testing.T, ctx context.Context, traceID string, want []span) jaegerTrace {
	t.Helper()
	var tr jaegerTrace
	var missing []span
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		tr = readTrace(t, ctx, traceID)
		got := tr.spans()
		missing = slices.DeleteFunc(slices.Clone(want), func(s span) bool { return slices.Contains(got, s) })
		if len(missing) == 0 {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s lacks %v after 30s; it holds %v", traceID, missing, got)
		}
	}
}

func readTrace(t *testing.T, ctx context.Context, traceID string) jaegerTrace {
	t.Helper()
	var tr jaegerTrace
	req, _ := http.NewRequestWithContext(ctx, "GET", stackenv.JaegerQueryURL+"/api/traces/"+traceID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return tr
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("collector's answer for %s: %v", traceID, err)
	}
	return tr
}

// noSecretsInTags fails t if any span's tag value carries the token, the query or the patient's id.
func noSecretsInTags(t *testing.T, tr jaegerTrace, secrets ...string) {
	t.Helper()
	for _, d := range tr.Data {
		for _, s := range d.Spans {
			for _, tag := range s.Tags {
				v := fmt.Sprint(tag.Value)
				for _, secret := range secrets {
					if secret != "" && strings.Contains(v, secret) {
						t.Errorf("span %s of %s: tag %s = %q carries %q", s.OperationName, d.Processes[s.ProcessID].ServiceName, tag.Key, v, secret)
					}
				}
			}
		}
	}
}

func member(t *testing.T, ctx context.Context) (token, patient string) {
	t.Helper()
	tok, err := stackauth.Member(ctx, "member01", "openid", "fhirUser", "launch/patient", "patient/Patient.rs")
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken, tok.Patient
}

// TestEnvoyRequestIsOneTraceOfEnvoysAndFhirwallsSpans: one request through Envoy, one trace: Envoy's own spans
// and fhirwall-proxy's under them, and it is the trace the audit record names, not the one the client sent.
func TestEnvoyRequestIsOneTraceOfEnvoysAndFhirwallsSpans(t *testing.T) {
	evidence.Proves(t, "OPS-TRACE-01")
	collector(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token, patient := member(t, ctx)
	client, err := stackenv.Client(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Second)
	// A search: its answer goes through response enforcement (the patient compartment).
	id := get(t, ctx, client, stackenv.EnvoyURL()+"/patient-access/fhir/Patient?_id="+patient, token)
	traceID := traceIDOf(t, ctx, since, id)
	tr := waitForSpans(t, ctx, traceID, []span{
		{envoyService, "ingress"},
		{proxyService, "ext_authz"}, {proxyService, "decision"}, {proxyService, "policy"},
		{proxyService, "ext_proc"}, {proxyService, "response check"}, {proxyService, "audit write"},
	})
	// fhirwall's spans hang under Envoy's: the ext_authz span's parent is a span of this trace.
	for _, d := range tr.Data {
		for _, s := range d.Spans {
			if s.OperationName == "ext_authz" && (len(s.References) == 0 || s.References[0].TraceID != traceID) {
				t.Errorf("fhirwall's ext_authz span has no parent in trace %s: %+v", traceID, s.References)
			}
		}
	}
	noSecretsInTags(t, tr, token, patient, "_id=")
	if got := readTrace(t, ctx, clientTraceID).spans(); len(got) > 0 {
		t.Errorf("the client's own trace %s reached the collector: %v", clientTraceID, got)
	}
}

// TestStandaloneRequestTraceHasTheUpstreamSpan: the standalone proxy's trace of one request holds the same
// stages and the FHIR server's answer (upstream), and ignores the client's traceparent.
func TestStandaloneRequestTraceHasTheUpstreamSpan(t *testing.T) {
	evidence.Proves(t, "OPS-TRACE-01")
	collector(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token, patient := member(t, ctx)
	since := time.Now().Add(-time.Second)
	id := get(t, ctx, &http.Client{Timeout: 10 * time.Second}, stackenv.StandaloneURL+"/patient-access/fhir/Patient?_id="+patient, token)
	traceID := traceIDOf(t, ctx, since, id)
	tr := waitForSpans(t, ctx, traceID, []span{
		{proxyService, "request"}, {proxyService, "decision"}, {proxyService, "policy"},
		{proxyService, "upstream"}, {proxyService, "response check"}, {proxyService, "audit write"},
	})
	noSecretsInTags(t, tr, token, patient, "_id=")
}

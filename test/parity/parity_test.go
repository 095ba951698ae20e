// Package parity runs one table of requests through both faces of fhirwall, Envoy's ext_authz and the
// standalone gateway, with fakes for the token issuer, the FHIR server and the audit sink, and checks that
// both give the same answers and write one audit record per request.
package parity

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fhirwall/fhirwall/config"
	"github.com/fhirwall/fhirwall/filters/authz"
	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/decisiontest"
	"github.com/fhirwall/fhirwall/internal/gateway"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/seal"
	"github.com/fhirwall/fhirwall/policies"
)

// fakeCompartment knows which patient each resource belongs to.
type fakeCompartment map[string]string

func (f fakeCompartment) Matches(_ context.Context, typ, id string, narrow []policy.Narrow) (bool, error) {
	for _, n := range narrow {
		if n.Param == "patient" && f[typ+"/"+id] != n.Value {
			return false, nil
		}
	}
	_, ok := f[typ+"/"+id]
	return ok, nil
}

// fakeSink records what was written, and fails when told to.
type fakeSink struct {
	mu      sync.Mutex
	records []audit.Record
	fail    bool
}

func (f *fakeSink) Write(_ context.Context, r audit.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("fake sink down")
	}
	f.records = append(f.records, r)
	return nil
}

func (f *fakeSink) last() audit.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.records[len(f.records)-1]
}

var apis = []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}

func newCore(t testing.TB, sink *fakeSink) *decision.Core {
	t.Helper()
	cfg, err := config.Load("../../config/fhirwall.yaml")
	if err != nil {
		t.Fatal(err)
	}
	engine, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	return &decision.Core{
		Tokens: decisiontest.FakeTokens{
			"member01": {ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: []string{"launch/patient", "patient/*.rs"}, JTI: "j1"},
			"eob-only": {ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: []string{"patient/ExplanationOfBenefit.rs"}},
		},
		// As fhirwall-proxy runs it (policies.decision_cache's defaults): both faces share one cache.
		Policy:      decision.NewCachedPolicy(engine, decision.CacheOptions{Entries: 10000, MaxBytes: 32 << 20}),
		Compartment: fakeCompartment{"ExplanationOfBenefit/eob-01": "member-01", "ExplanationOfBenefit/eob-02": "member-02"},
		Audit:       sink,
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:         time.Now,
		Registry: decisiontest.FakeRegistry{"patient-app": {ID: "patient-app", Name: "Member app", Active: true,
			APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs", "patient/*.read"}, Tier: "standard"}},
		Carry: testKeys, // ext_authz seals every allowed decision for ext_proc
	}
}

// testKeys seal the decisions the Envoy face carries to ext_proc.
var testKeys, _ = seal.NewKeyring(bytes.Repeat([]byte{3}, seal.KeySize))

type result struct {
	status   int
	body     string
	upstream string // the query the FHIR server received, for allowed requests
}

// viaEnvoy asks the ext_authz face, as Envoy would; an allowed request is "forwarded" by applying the
// query mutations the way Envoy does.
func viaEnvoy(t *testing.T, core *decision.Core, token, path string) result {
	s := &authz.Server{Core: core, APIs: apis, Log: core.Log}
	hdr := map[string]string{}
	if token != "" {
		hdr["authorization"] = "Bearer " + token
	}
	resp, err := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: hdr}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if den := resp.GetDeniedResponse(); den != nil {
		return result{status: int(den.GetStatus().GetCode()), body: den.GetBody()}
	}
	_, q, _ := strings.Cut(path, "?")
	vals, _ := url.ParseQuery(q)
	ok := resp.GetOkResponse()
	// As Envoy applies them: sets replace every value of a key, removals run after the sets.
	for _, p := range ok.GetQueryParametersToSet() {
		vals.Set(p.GetKey(), p.GetValue())
	}
	for _, k := range ok.GetQueryParametersToRemove() {
		vals.Del(k)
	}
	return result{status: 200, upstream: vals.Encode()}
}

// viaStandalone sends the request through the standalone gateway to a fake FHIR server.
func viaStandalone(t *testing.T, core *decision.Core, token, path string) result {
	var upstream string
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream = r.URL.RawQuery
		if r.Header.Get("Authorization") != "" || r.Header.Get("X-Fhirwall-Patient") != "" {
			t.Errorf("token or client-set internal header reached the FHIR server")
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, `{"resourceType":"Bundle"}`)
	}))
	defer fhir.Close()
	u, _ := url.Parse(fhir.URL + "/fhir")
	gw := httptest.NewServer(gateway.New(core, apis, u, http.DefaultTransport, core.Log))
	defer gw.Close()
	req, _ := http.NewRequest("GET", gw.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Fhirwall-Patient", "member-02")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, upstream: upstream}
	if resp.StatusCode != 200 {
		r.body = string(b)
	}
	return r
}

func TestBothModesGiveTheSameAnswers(t *testing.T) {
	cases := []struct {
		name, token, path string
		status            int
		upstream          string
	}{
		{"member searches own EOBs, narrowed", "member01", "/patient-access/fhir/ExplanationOfBenefit", 200, "patient=member-01"},
		{"member names self", "member01", "/patient-access/fhir/ExplanationOfBenefit?patient=member-01", 200, "patient=member-01"},
		{"other parameters are kept", "member01", "/patient-access/fhir/ExplanationOfBenefit?_count=2&status=active", 200, "_count=2&patient=member-01&status=active"},
		{"member reads own EOB", "member01", "/patient-access/fhir/ExplanationOfBenefit/eob-01", 200, ""},
		{"member reads own Patient", "member01", "/patient-access/fhir/Patient/member-01", 200, ""},
		{"other member's EOB by id is 404", "member01", "/patient-access/fhir/ExplanationOfBenefit/eob-02", 404, ""},
		{"missing EOB is the same 404", "member01", "/patient-access/fhir/ExplanationOfBenefit/no-such", 404, ""},
		{"other member's EOBs by search are 404", "member01", "/patient-access/fhir/ExplanationOfBenefit?patient=member-02", 404, ""},
		{"other Patient is 404", "member01", "/patient-access/fhir/Patient/member-02", 404, ""},
		{"no token is 401", "", "/patient-access/fhir/ExplanationOfBenefit", 401, ""},
		{"bad token is 401", "forged", "/patient-access/fhir/ExplanationOfBenefit", 401, ""},
		{"capabilities need no token", "", "/patient-access/fhir/metadata", 200, ""},
		{"scope for another type is 403", "eob-only", "/patient-access/fhir/Observation", 403, ""},
		{"unknown API is 404", "member01", "/other/fhir/Patient", 404, ""},
		{"dot segments are refused", "member01", "/patient-access/fhir/Patient/../Patient/member-02", 404, ""},
		{"writes are not supported yet", "member01", "/patient-access/fhir/Patient/member-01/$everything", 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := &fakeSink{}
			core := newCore(t, sink)
			e := viaEnvoy(t, core, c.token, c.path)
			s := viaStandalone(t, core, c.token, c.path)
			if e.status != c.status || s.status != c.status {
				t.Fatalf("status: envoy %d, standalone %d, want %d", e.status, s.status, c.status)
			}
			if e.body != s.body {
				t.Errorf("refusal bodies differ:\n envoy      %s\n standalone %s", e.body, s.body)
			}
			if c.status == 200 && c.upstream != "" && (e.upstream != c.upstream || s.upstream != c.upstream) {
				t.Errorf("upstream query: envoy %q, standalone %q, want %q", e.upstream, s.upstream, c.upstream)
			}
			// Envoy-mode allowed requests are recorded by ext_proc when the response passes; refusals at once.
			want := 2
			if c.status == 200 {
				want = 1
			}
			if len(sink.records) != want {
				t.Fatalf("%d audit records, want %d", len(sink.records), want)
			}
			if r := sink.last(); r.Status != c.status || r.DecisionID == "" || r.Time.IsZero() || r.Path == "" {
				t.Errorf("audit record %+v", r)
			}
		})
	}
}

func TestNotYoursAndMissingLookTheSame(t *testing.T) {
	core := newCore(t, &fakeSink{})
	a := viaStandalone(t, core, "member01", "/patient-access/fhir/ExplanationOfBenefit/eob-02")
	b := viaStandalone(t, core, "member01", "/patient-access/fhir/ExplanationOfBenefit/no-such")
	if a != b {
		t.Fatalf("not-yours %+v differs from missing %+v", a, b)
	}
}

func TestAuditSinkDownRefusesInBothModes(t *testing.T) {
	sink := &fakeSink{fail: true}
	core := newCore(t, sink)
	if s := viaStandalone(t, core, "member01", "/patient-access/fhir/ExplanationOfBenefit"); s.status != 503 {
		t.Errorf("standalone allowed request with audit down: %d", s.status)
	}
	if e := viaEnvoy(t, core, "", "/patient-access/fhir/ExplanationOfBenefit"); e.status != 503 {
		t.Errorf("envoy refusal with audit down: %d", e.status)
	}
}

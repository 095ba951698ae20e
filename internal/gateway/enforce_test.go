package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/policy"
	"github.com/fhirwall/fhirwall/internal/token"
)

type fakeTokens struct{}

func (fakeTokens) Verify(_ context.Context, raw string) (token.Identity, error) {
	if raw != "member-token" {
		return token.Identity{}, token.ErrInvalid
	}
	return token.Identity{ClientID: "patient-app", Subject: "u1", Patient: "member-01", Scopes: []string{"patient/*.rs"}}, nil
}

type fakeRegistry struct{}

func (fakeRegistry) Lookup(context.Context, string) (decision.Client, error) {
	return decision.Client{ID: "patient-app", Active: true, APIs: []string{"patient-access"}, Scopes: []string{"patient/*.rs"}}, nil
}

// fakePolicy allows everything; paths under /Observation carry no compartment obligation (headers only),
// every other path must be enforced for member-01.
type fakePolicy struct{}

func (fakePolicy) Decide(_ context.Context, in any) (policy.Result, error) {
	req := in.(map[string]any)["request"].(map[string]any)
	if req["resource_type"] == "Observation" {
		return policy.Result{Allow: true}, nil
	}
	return policy.Result{Allow: true, Obligations: policy.Obligations{Compartment: &policy.Compartment{Patient: "member-01"},
		ResourceTypes: map[string]policy.Constraints{"*": {}}, PublicTypes: []string{"Practitioner"}}}, nil
}
func (fakePolicy) Revision() string { return "fake" }

type fakeSink struct{ records chan audit.Record }

func (f *fakeSink) Write(_ context.Context, r audit.Record) error { f.records <- r; return nil }

const upstreamBundle = `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"member-02"}}]}`

type answer struct {
	status  int
	header  http.Header
	body    string
	records []audit.Record
}

// through sends one GET through the gateway to a fake FHIR server answering body (gzipped when gz), with
// enforce as the response enforcer.
func through(t *testing.T, path string, gz, clientAsksGzip bool, enforce func(ctx context.Context, d *decision.Decision, status int, ct string, body []byte) (decision.Enforced, error)) answer {
	t.Helper()
	fhir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Header().Set("ETag", `W/"7"`)
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write([]byte(upstreamBundle))
			zw.Close()
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
			w.Write(b.Bytes())
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(upstreamBundle)))
		io.WriteString(w, upstreamBundle)
	}))
	defer fhir.Close()
	sink := &fakeSink{records: make(chan audit.Record, 4)}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	core := &decision.Core{Tokens: fakeTokens{}, Policy: fakePolicy{}, Registry: fakeRegistry{}, Audit: sink, Log: log, Now: time.Now}
	u, _ := url.Parse(fhir.URL + "/fhir")
	g := New(core, []decision.API{{Name: "patient-access", Prefix: "/patient-access/fhir"}}, u, http.DefaultTransport, log)
	g.Enforce = enforce
	srv := httptest.NewServer(g)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer member-token")
	if clientAsksGzip {
		// The Transport then leaves the body encoded; otherwise it asks for gzip itself and decodes it.
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	for len(sink.records) > 0 {
		a.records = append(a.records, <-sink.records)
	}
	return a
}

func TestStandaloneReplacesTheBodyWithTheEnforcedOne(t *testing.T) {
	const filtered = `{"resourceType":"Bundle","entry":[]}`
	for _, tc := range []struct{ gz, clientAsksGzip bool }{{false, false}, {true, true}, {true, false}} {
		t.Run("upstream gzip="+strconv.FormatBool(tc.gz)+" client asks gzip="+strconv.FormatBool(tc.clientAsksGzip), func(t *testing.T) {
			var saw string
			a := through(t, "/patient-access/fhir/Patient/member-02", tc.gz, tc.clientAsksGzip, func(_ context.Context, _ *decision.Decision, st int, ct string, body []byte) (decision.Enforced, error) {
				saw = ct + " " + string(body)
				return decision.Enforced{Status: st, Body: []byte(filtered), Patients: []string{"member-01"}, Categories: []string{"demographics"}}, nil
			})
			if saw != "application/fhir+json "+upstreamBundle {
				t.Fatalf("enforcer saw %q", saw)
			}
			if a.status != 200 || a.body != filtered || a.header.Get("Content-Length") != strconv.Itoa(len(filtered)) ||
				a.header.Get("Content-Encoding") != "" || a.header.Get("Content-Type") != "application/fhir+json" {
				t.Fatalf("got %d %v %s", a.status, a.header, a.body)
			}
			if len(a.records) != 1 || a.records[0].Status != 200 || a.records[0].Bytes != int64(len(filtered)) ||
				strings.Join(a.records[0].Patients, ",") != "member-01" || strings.Join(a.records[0].DataCategories, ",") != "demographics" {
				t.Fatalf("records %+v", a.records)
			}
		})
	}
}

func TestStandaloneEnforcementRefusalReplacesStatusAndHeaders(t *testing.T) {
	notFound := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`
	a := through(t, "/patient-access/fhir/Patient/member-02", false, false, func(context.Context, *decision.Decision, int, string, []byte) (decision.Enforced, error) {
		return decision.Enforced{Status: 404, Body: []byte(notFound)}, nil
	})
	if a.status != 404 || a.body != notFound || a.header.Get("ETag") != "" || a.header.Get(DecisionHeader) == "" {
		t.Fatalf("got %d %v %s", a.status, a.header, a.body)
	}
	if len(a.records) != 1 || a.records[0].Status != 404 {
		t.Fatalf("records %+v", a.records)
	}
}

func TestStandaloneUncheckableAnswerIs502AndNeverTheBody(t *testing.T) {
	a := through(t, "/patient-access/fhir/Patient/member-02", true, true, func(context.Context, *decision.Decision, int, string, []byte) (decision.Enforced, error) {
		return decision.Enforced{}, errors.New("fake enforcement failure")
	})
	if a.status != 502 || strings.Contains(a.body, "member-02") || !strings.Contains(a.body, "OperationOutcome") {
		t.Fatalf("got %d %s", a.status, a.body)
	}
	if len(a.records) != 1 || a.records[0].Status != 502 {
		t.Fatalf("records %+v", a.records)
	}
}

func TestStandaloneHeadersOnlyDecisionStreamsUnenforced(t *testing.T) {
	a := through(t, "/patient-access/fhir/Observation/obs-1", false, false, func(context.Context, *decision.Decision, int, string, []byte) (decision.Enforced, error) {
		t.Error("enforcer called for a decision without response obligations")
		return decision.Enforced{}, errors.New("unexpected")
	})
	if a.status != 200 || a.body != upstreamBundle || len(a.records) != 1 {
		t.Fatalf("got %d %s, records %+v", a.status, a.body, a.records)
	}
}

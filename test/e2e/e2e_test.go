//go:build e2e

// Package e2e drives the real stack started by test/stack/up.sh: Envoy (fed by fhirwall-xds), fhirwall-proxy,
// HAPI FHIR with the seed data, Keycloak with the fhirwall realm, and Kafka. Every case runs in both modes:
// through Envoy and through the standalone proxy.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/smartclient"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackenv"
)

const (
	issuer     = "http://127.0.0.1:8180/realms/fhirwall"
	hapiBase   = "http://127.0.0.1:8090/fhir"
	envoyAdmin = "http://127.0.0.1:9901"
)

var modes = []struct{ name, base string }{
	{"envoy", stackenv.EnvoyURL() + "/patient-access/fhir"},
	{"standalone", stackenv.StandaloneURL + "/patient-access/fhir"},
}

func repoRoot() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// member01Token logs member01 in through Keycloak's login form, as a real patient app does (code + PKCE).
func member01Token(t *testing.T) string {
	t.Helper()
	tok, err := smartclient.AuthorizationCodePKCE(ctx(t), issuer, "patient-app", "http://127.0.0.1:8089/callback",
		[]string{"openid", "fhirUser", "launch/patient", "patient/ExplanationOfBenefit.rs", "patient/Patient.rs"},
		"member01", "fhirwall-demo")
	if err != nil {
		t.Fatalf("login member01: %v (is the stack up? make stack-up)", err)
	}
	if tok.Patient != "member-01" {
		t.Fatalf("token response patient = %q, want member-01", tok.Patient)
	}
	return tok.AccessToken
}

type answer struct {
	status     int
	body       []byte
	decisionID string
}

func get(t *testing.T, url, token string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, b, resp.Header.Get("X-Fhirwall-Decision-Id")}
}

func isOperationOutcome(b []byte) bool {
	var r struct{ ResourceType string }
	return json.Unmarshal(b, &r) == nil && r.ResourceType == "OperationOutcome"
}

// eobIDOf finds one ExplanationOfBenefit id of a member straight from HAPI (test setup, not through fhirwall).
func eobIDOf(t *testing.T, patient string) string {
	a := get(t, hapiBase+"/ExplanationOfBenefit?patient="+patient+"&_elements=id", "")
	var b struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	if err := json.Unmarshal(a.body, &b); err != nil || len(b.Entry) == 0 {
		t.Fatalf("no EOB of %s in HAPI (seeded? %s)", patient, a.body)
	}
	return b.Entry[0].Resource.ID
}

type expectation struct {
	decisionID, mode, path string
	status                 int
}

func TestPatientAccessThroughTheRealStack(t *testing.T) {
	evidence.Proves(t, "CMS-PA-01", "CMS-PA-03", "AUD-01")
	since := time.Now().Add(-time.Second) // the audit records are looked for from here (Kafka's timestamps)
	token := member01Token(t)
	otherEOB := eobIDOf(t, "member-02")
	var expected []expectation
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			check := func(path, tok string, want int) answer {
				t.Helper()
				a := get(t, m.base+path, tok)
				if a.status != want {
					t.Fatalf("GET %s: %d, want %d: %s", path, a.status, want, a.body)
				}
				if a.decisionID == "" {
					t.Fatalf("GET %s: no decision id header", path)
				}
				expected = append(expected, expectation{a.decisionID, m.name, path, want})
				return a
			}

			// The member reads their own claims: 200, and only their own.
			a := check("/ExplanationOfBenefit", token, 200)
			var bundle struct {
				ResourceType string
				Entry        []struct {
					Resource struct {
						ResourceType string
						Patient      struct{ Reference string }
					}
				}
			}
			if err := json.Unmarshal(a.body, &bundle); err != nil || bundle.ResourceType != "Bundle" || len(bundle.Entry) == 0 {
				t.Fatalf("own EOBs: want a non-empty Bundle, got %s", a.body)
			}
			for _, e := range bundle.Entry {
				if e.Resource.ResourceType == "ExplanationOfBenefit" && e.Resource.Patient.Reference != "Patient/member-01" {
					t.Fatalf("EOB of %s returned to member-01", e.Resource.Patient.Reference)
				}
			}

			// The client's own parameters survive narrowing (here: the page size).
			paged := check("/ExplanationOfBenefit?_count=2", token, 200)
			if err := json.Unmarshal(paged.body, &bundle); err != nil || len(bundle.Entry) != 2 {
				t.Fatalf("_count=2: want 2 entries, got %s", paged.body)
			}

			// Another member's EOB: the same 404 OperationOutcome as one that does not exist.
			notYours := check("/ExplanationOfBenefit/"+otherEOB, token, 404)
			missing := check("/ExplanationOfBenefit/no-such-eob-0000", token, 404)
			if !isOperationOutcome(notYours.body) || string(notYours.body) != string(missing.body) {
				t.Fatalf("not-yours %s and missing %s must be the same OperationOutcome", notYours.body, missing.body)
			}
			check("/ExplanationOfBenefit?patient=member-02", token, 404)

			// No token: 401 with an OperationOutcome.
			if a := check("/ExplanationOfBenefit", "", 401); !isOperationOutcome(a.body) {
				t.Fatalf("401 without OperationOutcome: %s", a.body)
			}
		})
	}
	t.Run("audit", func(t *testing.T) { checkAudit(t, since, expected) })
}

// checkAudit reads the audit topic from since (test/stackaudit: every partition from that time, so a long-lived
// stack's topic is not read from its start) until every expected decision has its record, with every field.
func checkAudit(t *testing.T, since time.Time, want []expectation) {
	if len(want) == 0 {
		t.Fatal("no requests to look for")
	}
	byID := map[string]expectation{}
	for _, w := range want {
		byID[w.decisionID] = w
	}
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done, err := stackaudit.Scan(c, since, func(rec map[string]any) bool {
		w, ok := byID[fmt.Sprint(rec["decision_id"])]
		if !ok {
			return false
		}
		delete(byID, w.decisionID)
		raw, _ := json.Marshal(rec)
		for _, f := range []string{"id", "time", "client_id", "patients", "resource_type", "interaction", "scopes", "source_ip", "status", "data_categories", "decision_id", "api", "reasons", "policy_revision"} {
			if _, ok := rec[f]; !ok {
				t.Errorf("%s %s: record lacks %q: %s", w.mode, w.path, f, raw)
			}
		}
		if got, _ := rec["status"].(float64); int(got) != w.status {
			t.Errorf("%s %s: record status %v, client got %d", w.mode, w.path, rec["status"], w.status)
		}
		if ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"])); err != nil || ts.Location() != time.UTC || !strings.HasSuffix(fmt.Sprint(rec["time"]), "Z") {
			t.Errorf("%s %s: time %v is not UTC", w.mode, w.path, rec["time"])
		}
		if w.status != 401 {
			if rec["client_id"] != "patient-app" || fmt.Sprint(rec["patients"]) != "[member-01]" || rec["resource_type"] != "ExplanationOfBenefit" {
				t.Errorf("%s %s: record %s", w.mode, w.path, raw)
			}
		}
		if w.status == 200 && fmt.Sprint(rec["data_categories"]) != "[claims]" {
			t.Errorf("%s %s: data categories %v", w.mode, w.path, rec["data_categories"])
		}
		return len(byID) == 0
	})
	if err != nil || !done {
		t.Fatalf("%d audit records never arrived (%v): %+v", len(byID), err, byID)
	}
}

// TestEnvoyFailsClosedWithoutTheProxy stops fhirwall-proxy while Envoy runs: Envoy must refuse, and the
// FHIR server must see no request at all.
func TestEnvoyFailsClosedWithoutTheProxy(t *testing.T) {
	evidence.Proves(t, "SEC-04")
	token := member01Token(t)
	script := filepath.Join(repoRoot(), "test", "stack", "fhirwall.sh")
	if out, err := exec.Command("bash", script, "stop-proxy").CombinedOutput(); err != nil {
		t.Fatalf("stop proxy: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", script, "start-proxy").CombinedOutput(); err != nil {
			t.Errorf("restart proxy: %v %s", err, out)
		}
	})
	before := upstreamRequests(t)
	for i := 0; i < 5; i++ {
		a := get(t, modes[0].base+"/ExplanationOfBenefit", token)
		if a.status < 500 && a.status != 403 {
			t.Fatalf("proxy down, Envoy answered %d: %s", a.status, a.body)
		}
		if !isOperationOutcome(a.body) {
			t.Errorf("proxy down, refusal is not an OperationOutcome: %s", a.body)
		}
	}
	if after := upstreamRequests(t); after != before {
		t.Fatalf("proxy down, yet %d requests reached the FHIR server", after-before)
	}
}

// upstreamRequests reads Envoy's count of requests sent to the FHIR server, summed over every API's cluster.
func upstreamRequests(t *testing.T) int {
	a := get(t, envoyAdmin+"/stats?filter=^cluster\\.fhir_server_[a-z-]+\\.upstream_rq_total$", "")
	total, lines := 0, strings.Split(strings.TrimSpace(string(a.body)), "\n")
	for _, line := range lines {
		_, v, ok := strings.Cut(line, ": ")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("envoy stats: %s", a.body)
		}
		total += n
	}
	if len(lines) < 2 {
		t.Fatalf("envoy stats name fewer FHIR server clusters than APIs: %s", a.body)
	}
	return total
}

// httpClient trusts the stack's own CA, which signed Envoy's listener certificate.
var httpClient = func() *http.Client {
	c, err := stackenv.Client(2 * time.Minute)
	if err != nil {
		panic(err)
	}
	return c
}()

func TestMain(m *testing.M) {
	if _, err := http.Get(envoyAdmin + "/ready"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the stack is not up; run `make stack-up` (or `make test`)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

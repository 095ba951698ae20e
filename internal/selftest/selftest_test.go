package selftest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

const fakeToken = "member-token-SECRET-1234"

// fakeDeployment is a stand-in for a deployment's Patient Access API under /pa, for unit tests of the checks'
// judgement only (the real deployment is test/selftest's). A correct one serves member-01 their own data
// and answers every other id 404; the faults make it wrong the ways a deployment could be.
type fakeDeployment struct {
	leakOther       bool // serves member-02's Patient and names them in EOB searches
	forbidNotMissed bool // answers another member's id 403, a missing one 404
	echoToken       bool // quotes the Authorization header in its refusals
	failOther       bool // answers another member's id 503 (an OperationOutcome): failing, not refusing
}

func (f fakeDeployment) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/fhir+json")
	outcome := func(status int, code, text string) {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":%q,"diagnostics":%q}]}`, code, text)
	}
	if r.Header.Get("Authorization") != "Bearer "+fakeToken {
		outcome(401, "login", "no valid token")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/pa")
	switch {
	case path == "/Patient/member-01":
		fmt.Fprint(w, `{"resourceType":"Patient","id":"member-01"}`)
	case path == "/Patient/member-02" && f.leakOther:
		fmt.Fprint(w, `{"resourceType":"Patient","id":"member-02"}`)
	case path == "/Patient/member-02" && f.failOther:
		outcome(503, "transient", "unavailable")
	case path == "/Patient/member-02" && f.forbidNotMissed:
		outcome(403, "forbidden", "not yours")
	case path == "/ExplanationOfBenefit" && f.leakOther:
		fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"ExplanationOfBenefit","id":"e1","patient":{"reference":"Patient/member-02"}}}]}`)
	case path == "/ExplanationOfBenefit" || path == "/Coverage":
		fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","total":0}`)
	case f.echoToken:
		outcome(404, "not-found", "no such resource for "+r.Header.Get("Authorization"))
	default:
		outcome(404, "not-found", "no such resource")
	}
}

func runAgainst(t *testing.T, f fakeDeployment, only ...string) map[string]Result {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "member.token"), []byte(fakeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "selftest.yaml")
	os.WriteFile(cfgFile, []byte("apis: {patient_access: /pa}\nmember: {token_file: member.token, patient: member-01, other_patient: member-02}\n"), 0o600)
	cfg, err := LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(srv.URL)
	res, err := Run(context.Background(), Options{Base: base, HTTP: srv.Client(), Config: cfg, Only: only})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Result{}
	for _, r := range res {
		out[r.Name] = r
	}
	return out
}

var memberChecks = []string{"scopes/member-reads-own-data", "scopes/other-patient-refused", "refusal/not-yours-answers-like-not-found", "adversarial/search-bypass"}

func TestACorrectDeploymentPassesTheMemberChecks(t *testing.T) {
	for name, r := range runAgainst(t, fakeDeployment{}, memberChecks...) {
		if r.Outcome != Pass {
			t.Errorf("%s: %s %s", name, r.Outcome, r.Detail)
		}
	}
}

func TestADeploymentLeakingAnotherPatientFailsTheChecksThatLookForIt(t *testing.T) {
	res := runAgainst(t, fakeDeployment{leakOther: true}, memberChecks...)
	for _, name := range memberChecks {
		if res[name].Outcome != Fail {
			t.Errorf("%s: %s %s, want fail", name, res[name].Outcome, res[name].Detail)
		}
	}
}

func TestAFailingDeploymentDoesNotPassAsRefusingAnotherPatient(t *testing.T) {
	const name = "scopes/other-patient-refused"
	if r := runAgainst(t, fakeDeployment{failOther: true}, name)[name]; r.Outcome != Fail || !strings.Contains(r.Detail, "503") {
		t.Fatalf("%s against a 503: %s %s, want fail naming the 503", name, r.Outcome, r.Detail)
	}
}

func TestNotYoursAnsweredUnlikeNotFoundFailsRefusalEquivalence(t *testing.T) {
	r := runAgainst(t, fakeDeployment{forbidNotMissed: true}, "refusal/not-yours-answers-like-not-found")["refusal/not-yours-answers-like-not-found"]
	if r.Outcome != Fail || !strings.Contains(r.Detail, "403") {
		t.Errorf("%s %s, want a failure naming the 403", r.Outcome, r.Detail)
	}
}

func TestADetailNeverCarriesAToken(t *testing.T) {
	res := runAgainst(t, fakeDeployment{leakOther: true, echoToken: true})
	for name, r := range res {
		if strings.Contains(r.Detail, fakeToken) || strings.Contains(r.Detail, "SECRET") {
			t.Errorf("%s: detail carries the token: %s", name, r.Detail)
		}
	}
}

func TestChecksWithoutTheirClientsSkipAndSayWhy(t *testing.T) {
	res := runAgainst(t, fakeDeployment{}, "datascope/provider-access-attributed-only", "datascope/payer-to-payer-opted-in-only", "ratelimit/burst-answers-429", "audit/records-appear")
	if len(res) != 4 {
		t.Fatalf("ran %d checks, want 4", len(res))
	}
	for name, r := range res {
		if r.Outcome != Skip || r.Detail == "" {
			t.Errorf("%s: %s %q, want a skip with its reason", name, r.Outcome, r.Detail)
		}
	}
}

// Every id a check names is in internal/evidence's table: a renamed or removed requirement would otherwise
// drop out of the signed matrix without a word.
func TestEveryCheckNamesRequirementsOfTheTable(t *testing.T) {
	for _, c := range Checks() {
		if len(c.Requirements) == 0 {
			t.Errorf("%s proves nothing", c.Name)
		}
		for _, id := range c.Requirements {
			if _, ok := evidence.Lookup(id); !ok {
				t.Errorf("%s names %s, which is not in internal/evidence/requirements.yaml", c.Name, id)
			}
		}
	}
}

func TestLeaksFindsReferencesAndIdsButNotPrefixes(t *testing.T) {
	r := &runner{}
	for body, want := range map[string]bool{
		`{"reference":"Patient/member-02"}`:          true,
		`{"id": "member-02"}`:                        true,
		`{"reference":"Patient/member-02/_history"}`: true,
		`{"reference":"Patient/member-020"}`:         false,
		`{"id":"member-021"}`:                        false,
		`{"reference":"Patient/member-01"}`:          false,
	} {
		if got := r.leaks([]byte(body), "member-02") != ""; got != want {
			t.Errorf("leaks(%s) = %v, want %v", body, got, want)
		}
	}
}

// FuzzLeaksFindsAnInsertedReference: whatever the body and the (valid) id, leaks never panics, and a body
// with a reference to the id inserted is always caught.
func FuzzLeaksFindsAnInsertedReference(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle"}`), "member-02", 10)
	f.Add([]byte(`Patient/member-020`), "member-02", 0)
	f.Add([]byte{}, "a.b", 0)
	f.Fuzz(func(t *testing.T, body []byte, id string, at int) {
		if !validID(id) {
			return
		}
		r := &runner{}
		r.leaks(body, id)
		if at < 0 {
			at = -at
		}
		at %= len(body) + 1
		with := append(append(append([]byte{}, body[:at]...), `"Patient/`+id+`"`...), body[at:]...)
		if r.leaks(with, id) == "" {
			t.Fatalf("missed the reference in %q", with)
		}
	})
}

func TestAnUnreachableDeploymentFailsWithoutQuotingTheURLsToken(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "member.token"), []byte(fakeToken), 0o600)
	cfgFile := filepath.Join(dir, "selftest.yaml")
	os.WriteFile(cfgFile, []byte("apis: {patient_access: /pa}\nmember: {token_file: member.token, patient: member-01, other_patient: member-02}\n"), 0o600)
	cfg, err := LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	base, _ := url.Parse(srv.URL)
	srv.Close() // nothing listens there any more
	res, err := Run(context.Background(), Options{Base: base, Config: cfg, Only: []string{"adversarial/token-in-query-string"}})
	if err != nil || len(res) != 1 {
		t.Fatal(res, err)
	}
	if res[0].Outcome != Fail || strings.Contains(res[0].Detail, fakeToken) {
		t.Errorf("%s %q, want a failure without the token", res[0].Outcome, res[0].Detail)
	}
}

// A client the config names whose token cannot be had fails the checks that need it: a skip would turn a
// broken test setup into a gap nobody reads.
func TestAConfiguredClientWithoutItsTokenFailsRatherThanSkips(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "selftest.yaml")
	os.WriteFile(cfgFile, []byte("apis: {patient_access: /pa, provider_access: /pr}\nmember: {token_file: missing.token, patient: member-01, other_patient: member-02}\n"), 0o600)
	cfg, err := LoadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fakeDeployment{})
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	res, err := Run(context.Background(), Options{Base: base, HTTP: srv.Client(), Config: cfg,
		Only: []string{"scopes/member-reads-own-data", "scopes/client-on-another-api-refused", "refusal/not-yours-answers-like-not-found"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != Fail || !strings.Contains(r.Detail, "missing.token") {
			t.Errorf("%s: %s %q, want a failure naming the token file", r.Name, r.Outcome, r.Detail)
		}
	}
}

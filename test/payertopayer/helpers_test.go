//go:build e2e

// Package payertopayer_test drives the Payer-to-Payer API (CMS-0057-F; HRex 1.0.0 $member-match, PDex 2.1.0
// $bulk-member-match and $davinci-data-export) on the real stack started by test/stack/up.sh, in both modes:
// through Envoy and through the standalone proxy. The members are testdata/members.json (see its README),
// loaded into HAPI with PUTs before the first test, so a second run changes nothing; every Consent the tests
// make fhirwall store is deleted before and after each case, so the cases are independent and re-runnable.
package payertopayer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/test/membermatch"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
	"github.com/fhirwall/fhirwall/test/stackhttp"
)

const (
	api = "payer-to-payer"
	// consentTag marks the Consents fhirwall stored after a match (adapters/payerexchange TagSystem).
	consentTag    = "https://fhirwall.dev/CodeSystem/payer-to-payer-consent-from"
	policyRegular = membermatch.PolicyRegular
	memberIDSys   = "https://payer-a.example.org/member-id"
	markerPrefix  = "p2p-marker-"
	payerB        = "Organization/payer-b"
	payerC        = "Organization/payer-c"
)

var modes = []struct{ name, base string }{
	{"envoy", stackenv.EnvoyURL() + "/payer-to-payer/fhir"},
	{"standalone", stackenv.StandaloneURL + "/payer-to-payer/fhir"},
}

// fixtureMembers are every Patient of members.json: the Consents stored for them are this suite's alone.
var fixtureMembers = []string{"p2p-exact", "p2p-twin-1", "p2p-twin-2", "p2p-notopted", "p2p-expired", "p2p-ended"}

// neverShared are the fixtures that no Payer-to-Payer answer may carry, whoever asks (README table): dates of
// service older than five years, denied and drug prior auths, a sensitive-labelled Observation under a
// #regular Consent, and every member who is not a unique, opted-in match.
var neverShared = []string{
	"p2p-eob-exact-2019", "p2p-encounter-exact-2018", "p2p-condition-exact-2017",
	"p2p-pa-exact-denied-2025", "p2p-pa-exact-drug-2025", "p2p-obs-exact-psy-2024",
	"p2p-twin-1", "p2p-twin-2", "p2p-coverage-twin-1", "p2p-coverage-twin-2",
	"p2p-notopted", "p2p-coverage-notopted", "p2p-eob-notopted-2024",
	"p2p-expired", "p2p-coverage-expired", "p2p-eob-expired-2024",
	"p2p-ended", "p2p-coverage-ended",
}

var httpClient = func() *http.Client {
	c, err := stackenv.Client(2 * time.Minute)
	if err != nil {
		panic(err)
	}
	return c
}()

var testStart = time.Now()

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// --- the stack and its fixtures ---------------------------------------------------------------------------

var (
	fixturesOnce sync.Once
	fixturesErr  error
	fixtures     map[string]map[string]any // "Type/id" → resource, as in members.json
)

// stackReady stops t unless the stack answers, then loads the fixtures (once per run).
func stackReady(t *testing.T) {
	t.Helper()
	if _, err := httpClient.Get(stackenv.EnvoyAdminURL + "/ready"); err != nil {
		require.Missing(t, "the stack is not up: run `make stack-up`")
	}
	if _, err := httpClient.Get(stackenv.StandaloneURL + "/payer-to-payer/fhir/metadata"); err != nil {
		require.Missing(t, "fhirwall-proxy is not up: run `make stack-up`")
	}
	fixturesOnce.Do(func() { fixturesErr = loadFixtures() })
	if fixturesErr != nil {
		t.Fatalf("loading testdata/members.json into HAPI: %v", fixturesErr)
	}
}

// loadFixtures POSTs the members.json transaction (PUTs with client ids: idempotent) to HAPI directly.
func loadFixtures() error {
	raw, err := os.ReadFile(filepath.Join("testdata", "members.json"))
	if err != nil {
		return err
	}
	var b struct {
		Entry []struct{ Resource map[string]any }
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return err
	}
	fixtures = map[string]map[string]any{}
	for _, e := range b.Entry {
		fixtures[fmt.Sprint(e.Resource["resourceType"])+"/"+fmt.Sprint(e.Resource["id"])] = e.Resource
	}
	resp, err := httpClient.Post(stackenv.HAPIURL, "application/fhir+json", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("HAPI answered %d: %.500s", resp.StatusCode, body)
	}
	return nil
}

// hapi sends one request to HAPI directly (setup and checks, never through fhirwall).
func hapi(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, stackenv.HAPIURL+"/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Cache-Control", "no-cache")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("HAPI %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// storedConsents are the Consents fhirwall stored for patient for payer-b or payer-c (the tag's code is the
// client; HAPI wants a code in a _tag search), read from HAPI.
func storedConsents(t *testing.T, patient string) []map[string]any {
	t.Helper()
	q := url.Values{"patient": {"Patient/" + patient}, "_tag": {consentTag + "|payer-b," + consentTag + "|payer-c"}, "_count": {"500"}}
	st, b := hapi(t, "GET", "Consent?"+q.Encode(), nil)
	if st != 200 {
		t.Fatalf("HAPI Consent search: %d %.300s", st, b)
	}
	return entries(t, b)
}

// forgetConsents deletes every Consent fhirwall stored for the fixture members (a previous run's too), so a
// case starts with nobody opted in. It registers itself to run again when t ends.
func forgetConsents(t *testing.T) {
	t.Helper()
	sweep := func() {
		for _, p := range fixtureMembers {
			for _, c := range storedConsents(t, p) {
				if st, b := hapi(t, "DELETE", "Consent/"+fmt.Sprint(c["id"]), nil); st >= 300 {
					t.Errorf("HAPI DELETE Consent/%v: %d %.300s", c["id"], st, b)
				}
			}
		}
	}
	sweep()
	t.Cleanup(sweep)
}

// --- tokens -----------------------------------------------------------------------------------------------

func backend(t *testing.T, client string) string {
	t.Helper()
	tok, err := stackauth.Backend(ctx(t), client, "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// --- requests ---------------------------------------------------------------------------------------------

type answer struct {
	method, url string
	status      int
	body        []byte
	header      http.Header
	decisionID  string
}

func (a answer) String() string {
	return fmt.Sprintf("%s %s → %d %.600s", a.method, a.url, a.status, a.body)
}

// client sends as a well-behaved client does: a 429 or 503 is waited out a few times (the API's rate limit
// is lower than the suite's burst). 503 is fhirwall failing closed while the FHIR server is slow (its opt-in
// read timed out): retried, and logged, since the shared stack also runs other suites (faults pause HAPI and
// Kafka).
var client = stackhttp.Client{HTTP: httpClient, RetryOn: []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}, Retries: 5, Wait: 2 * time.Second}

// send makes one request as a client would.
func send(t *testing.T, method, u, token string, header map[string]string, body []byte) answer {
	t.Helper()
	a, err := client.Send(ctx(t), t, stackhttp.Request{Method: method, URL: u, Token: token, Header: header, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return answer{a.Method, a.URL, a.Status, a.Body, a.Header, a.DecisionID}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func entries(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var bu struct {
		ResourceType string
		Entry        []struct{ Resource map[string]any }
	}
	if err := json.Unmarshal(b, &bu); err != nil || bu.ResourceType != "Bundle" {
		t.Fatalf("want a Bundle, got %.300s", b)
	}
	var out []map[string]any
	for _, e := range bu.Entry {
		out = append(out, e.Resource)
	}
	return out
}

func ids(rs []map[string]any) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprint(r["id"]))
	}
	sort.Strings(out)
	return out
}

// --- what may not leave -----------------------------------------------------------------------------------

// checkNothingForbidden fails when an answer carries the leak marker of a fixture that never leaves, or Money
// (cost-sharing or payment: the Provider Access rule Payer-to-Payer follows). A prior authorization keeps the
// amounts that are neither (what was submitted, what the plan found eligible, the provider's unit price and
// net per line), which PDex pdex-priorauthorization requires (internal/datascope priorauth.go).
func checkNothingForbidden(t *testing.T, what string, body []byte) {
	t.Helper()
	for _, id := range neverShared {
		if bytes.Contains(body, []byte(`"`+markerPrefix+id+`"`)) {
			t.Errorf("%s carries %s%s, which must never leave", what, markerPrefix, id)
		}
	}
	var v any
	if json.Unmarshal(body, &v) == nil {
		dropPermittedPriorAuthAmounts(v)
		for _, p := range moneyPaths(v, "") {
			t.Errorf("%s carries Money at %s", what, p)
		}
	}
}

// moneyPaths finds Money: an object with a currency, or a "value" under an amount key (the shape the fixtures'
// total.amount, payment.amount and item.adjudication.amount have; e2e's datascope test looks for the same).
func moneyPaths(v any, path string) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["currency"]; ok {
			out = append(out, path)
		}
		for k, e := range x {
			if m, ok := e.(map[string]any); ok && slices.Contains([]string{"amount", "net", "unitPrice"}, k) {
				if _, ok := m["value"]; ok {
					out = append(out, path+"."+k)
					continue
				}
			}
			out = append(out, moneyPaths(e, path+"."+k)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, moneyPaths(e, path+"[]")...)
		}
	}
	return out
}

// dropPermittedPriorAuthAmounts removes, from the prior-auth ExplanationOfBenefits of an answer (a resource,
// or a Bundle's entries), the amounts a prior auth may keep: adjudications and totals whose category is
// submitted or eligible and nothing else, and the lines' unitPrice and net. Everything else stays for
// moneyPaths to find.
func dropPermittedPriorAuthAmounts(v any) {
	r, ok := v.(map[string]any)
	if !ok {
		return
	}
	if r["resourceType"] == "Bundle" {
		entries, _ := r["entry"].([]any)
		for _, e := range entries {
			if em, ok := e.(map[string]any); ok {
				dropPermittedPriorAuthAmounts(em["resource"])
			}
		}
		return
	}
	if r["resourceType"] != "ExplanationOfBenefit" || (r["use"] != "preauthorization" && r["use"] != "predetermination") {
		return
	}
	permitted := func(category any) bool {
		cc, _ := category.(map[string]any)
		codings, _ := cc["coding"].([]any)
		for _, c := range codings {
			code, _ := c.(map[string]any)["code"].(string)
			if code != "submitted" && code != "eligible" {
				return false
			}
		}
		return len(codings) > 0
	}
	dropAmounts := func(list any) {
		l, _ := list.([]any)
		for _, a := range l {
			if am, ok := a.(map[string]any); ok && permitted(am["category"]) {
				delete(am, "amount")
			}
		}
	}
	dropAmounts(r["total"])
	var lines func(list any)
	lines = func(list any) {
		l, _ := list.([]any)
		for _, it := range l {
			im, ok := it.(map[string]any)
			if !ok {
				continue
			}
			delete(im, "unitPrice")
			delete(im, "net")
			dropAmounts(im["adjudication"])
			lines(im["detail"])
			lines(im["subDetail"])
		}
	}
	lines(r["item"])
}

// patientRefs is every Patient/<id> reference anywhere in a resource.
func patientRefs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" && strings.HasPrefix(s, "Patient/") {
				out = append(out, strings.TrimPrefix(s, "Patient/"))
			} else {
				out = append(out, patientRefs(e)...)
			}
		}
	case []any:
		for _, e := range x {
			out = append(out, patientRefs(e)...)
		}
	}
	return out
}

func isOperationOutcome(b []byte) bool {
	var r struct{ ResourceType string }
	return json.Unmarshal(b, &r) == nil && r.ResourceType == "OperationOutcome"
}

//go:build e2e

// Package priorauth_test drives the Prior Authorization API (CMS-0057-F; Da Vinci PAS 2.0.1 $submit and
// $inquire, Subscriptions Backport R4) on the real stack started by test/stack/up.sh, in both modes: through
// Envoy (TLS :10000) and through the standalone proxy (:8080). Every case sends requests with Claim
// identifiers unique to the run (priorauth.NewRunID), so reruns never meet an earlier run's requests; every
// Subscription a case creates is deleted when it ends. Every request Bundle sent and every response or
// inquiry response Bundle fhirwall answers (and every PAS Bundle a full-resource notification carries) is
// validated against its PAS 2.0.1 profile by the stack's validator service (test/stack/validator.sh, :8095),
// with zero errors.
//
//	make stack-up && go test -tags e2e -count=1 ./test/priorauth/
//
// The UM case listens on the UM system's address of the stack's config (127.0.0.1:8096) with a fake: run the
// package alone (make e2e runs packages one at a time, -p 1).
package priorauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/profilevalidator"
	pa "github.com/fhirwall/fhirwall/test/priorauth"
	"github.com/fhirwall/fhirwall/test/require"
	"github.com/fhirwall/fhirwall/test/stackaudit"
	"github.com/fhirwall/fhirwall/test/stackauth"
	"github.com/fhirwall/fhirwall/test/stackenv"
	"github.com/fhirwall/fhirwall/test/stackhttp"
)

const (
	api = "prior-auth"
	// validatorURL is the stack's profile validator service (config prior_auth.validator.url).
	validatorURL = "http://127.0.0.1:8095"
)

// mode is one way into fhirwall: the Prior Authorization API's base, and the bases of the other APIs the
// decisions show through.
type mode struct{ name, base, patientAccess, payerToPayer string }

var modes = []mode{
	{"envoy", stackenv.EnvoyURL() + "/prior-auth/fhir", stackenv.EnvoyURL() + "/patient-access/fhir", stackenv.EnvoyURL() + "/payer-to-payer/fhir"},
	{"standalone", stackenv.StandaloneURL + "/prior-auth/fhir", stackenv.StandaloneURL + "/patient-access/fhir", stackenv.StandaloneURL + "/payer-to-payer/fhir"},
}

// The scopes each kind of caller asks for (config/fhirwall.yaml prior-auth smart.scopes, the realm's client
// scopes): $submit needs c on Claim, $inquire r, a Subscription c, r and d.
var (
	providerScopes  = []string{"system/Claim.c", "system/Claim.r", "system/Subscription.crd"}
	clinicianScopes = []string{"openid", "fhirUser", "user/Claim.c", "user/Claim.r"}
	memberScopes    = []string{"openid", "fhirUser", "launch/patient", "patient/*.rs"}
)

var (
	runID      = pa.NewRunID()
	testStart  = time.Now()
	httpClient = func() *http.Client {
		c, err := stackenv.Client(2 * time.Minute)
		if err != nil {
			panic(err)
		}
		return c
	}()
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// id is a Claim identifier value unique to this run, this case and this mode.
func id(m mode, what string) string { return fmt.Sprintf("pa-e2e-%s-%s-%s", runID, m.name, what) }

// --- the stack --------------------------------------------------------------------------------------------

var (
	validatorOnce sync.Once
	validator     *profilevalidator.Client
	validatorErr  error
)

// stackReady stops t unless Envoy, fhirwall-proxy's prior-auth API and the validator service answer.
func stackReady(t *testing.T) {
	t.Helper()
	if _, err := httpClient.Get(stackenv.EnvoyAdminURL + "/ready"); err != nil {
		require.Missing(t, "the stack is not up: run `make stack-up`")
	}
	if resp, err := httpClient.Get(stackenv.StandaloneURL + "/prior-auth/fhir/metadata"); err != nil {
		require.Missing(t, "fhirwall-proxy is not up: run `make stack-up`")
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the prior-auth API's CapabilityStatement: %d (is the prior-auth API configured?)", resp.StatusCode)
		}
	}
	if resp, err := httpClient.Get(validatorURL + "/healthz"); err != nil {
		require.Missing(t, "the profile validator service is not up: bash test/stack/validator.sh start")
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the profile validator service is not ready: %d", resp.StatusCode)
		}
	}
	validatorOnce.Do(func() {
		validator, validatorErr = profilevalidator.New(profilevalidator.Settings{URL: validatorURL, Timeout: 60 * time.Second})
	})
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
}

// --- tokens -----------------------------------------------------------------------------------------------

func provider(t *testing.T, client string) string {
	t.Helper()
	tok, err := stackauth.Backend(ctx(t), client, providerScopes...)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func clinician(t *testing.T) string {
	t.Helper()
	tok, err := stackauth.Practitioner(ctx(t), "dr-smith", clinicianScopes...)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func member(t *testing.T) string {
	t.Helper()
	tok, err := stackauth.Member(ctx(t), "member05", memberScopes...)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Patient != pa.Member05.ID {
		t.Fatalf("member05's token names patient %q, want %s", tok.Patient, pa.Member05.ID)
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
	return fmt.Sprintf("%s %s → %d %.800s", a.method, a.url, a.status, a.body)
}

// client sends as a well-behaved client does: a 429 is waited out a few times.
var client = stackhttp.Client{HTTP: httpClient, RetryOn: []int{http.StatusTooManyRequests}, Retries: 5, Wait: 2 * time.Second}

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

// validate fails t unless body validates against profile with zero errors; the failure lists every issue.
func validate(t *testing.T, what, profile string, body []byte) {
	t.Helper()
	res, err := validator.Validate(ctx(t), profile, body)
	if err != nil {
		t.Errorf("validating %s against %s: %v", what, profile, err)
		return
	}
	if !res.Valid || res.Errors > 0 {
		t.Errorf("%s does not validate against %s: %d errors\n%s", what, profile, res.Errors, issueTexts(res.Outcome))
	}
}

// invalid fails t unless body has errors against profile (the malformed inputs are malformed).
func invalid(t *testing.T, what, profile string, body []byte) {
	t.Helper()
	res, err := validator.Validate(ctx(t), profile, body)
	if err != nil {
		t.Errorf("validating %s against %s: %v", what, profile, err)
		return
	}
	if res.Valid {
		t.Errorf("%s validates against %s, but the case needs a non-conformant Bundle", what, profile)
	}
}

// issueTexts is one line per issue of an OperationOutcome: severity, location, text.
func issueTexts(outcome []byte) string {
	var oo struct {
		Issue []struct {
			Severity, Code, Diagnostics string
			Expression, Location        []string
			Details                     struct{ Text string }
		}
	}
	if err := json.Unmarshal(outcome, &oo); err != nil {
		return string(outcome)
	}
	var b strings.Builder
	for _, i := range oo.Issue {
		text := i.Diagnostics
		if text == "" {
			text = i.Details.Text
		}
		fmt.Fprintf(&b, "    %s %s %v: %s\n", strings.ToUpper(i.Severity), i.Code, append(i.Expression, i.Location...), text)
	}
	return b.String()
}

// submission is a $submit that answered 200: the answer and its decision.
type submission struct {
	req      pa.Request
	a        answer
	decision pa.Decision
}

// submit validates r's request Bundle, POSTs it to Claim/$submit and, on 200, checks the PAS response Bundle:
// valid against profile-pas-response-bundle, a ClaimResponse first and only once, every entry with fullUrl
// and resource, every reference resolved inside the Bundle.
func submit(t *testing.T, m mode, token string, r pa.Request) submission {
	t.Helper()
	body, err := r.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	validate(t, "request Bundle "+r.Identifier, pa.ProfileRequestBundle, body)
	a := send(t, "POST", m.base+"/Claim/$submit", token, nil, body)
	s := submission{req: r, a: a}
	if a.status != http.StatusOK {
		return s
	}
	s.decision = checkResponse(t, "$submit answer "+r.Identifier, pa.ProfileResponseBundle, a.body, true)
	return s
}

// mustSubmit is submit that stops t unless the answer is 200 and every item carries code.
func mustSubmit(t *testing.T, m mode, token string, r pa.Request, code string) submission {
	t.Helper()
	s := submit(t, m, token, r)
	if s.a.status != http.StatusOK {
		t.Fatalf("$submit %s: %s", r.Identifier, s.a)
	}
	if !s.decision.All(code) {
		t.Fatalf("$submit %s: review actions %v, want %s on every item: %s", r.Identifier, s.decision.Codes(), code, s.a.body)
	}
	return s
}

// checkResponse validates and reads a PAS response (or inquiry response) Bundle; one says whether exactly one
// ClaimResponse is wanted (the response Bundle) or at least one (an inquiry's answer here).
func checkResponse(t *testing.T, what, profile string, body []byte, one bool) pa.Decision {
	t.Helper()
	validate(t, what, profile, body)
	ans, err := pa.ReadAnswer(body)
	if err != nil {
		t.Fatalf("%s: %v: %.500s", what, err, body)
	}
	if ans.FirstType != "ClaimResponse" {
		t.Errorf("%s: the first entry is a %s, PAS wants the ClaimResponse first", what, ans.FirstType)
	}
	if one && len(ans.Decisions) != 1 {
		t.Errorf("%s: %d ClaimResponses, want 1", what, len(ans.Decisions))
	}
	for _, p := range ans.EntryProblem {
		t.Errorf("%s: %s", what, p)
	}
	if refs := pa.UnresolvedReferences(ans.Bundle); len(refs) > 0 {
		t.Errorf("%s: references not resolved inside the Bundle: %v", what, refs)
	}
	d, ok := ans.First()
	if !ok {
		t.Fatalf("%s: no ClaimResponse: %.500s", what, body)
	}
	if d.Resource["use"] != "preauthorization" || d.Resource["status"] != "active" {
		t.Errorf("%s: ClaimResponse use %v status %v, want preauthorization active", what, d.Resource["use"], d.Resource["status"])
	}
	return d
}

// inquire validates r's inquiry Bundle and POSTs it to Claim/$inquire.
func inquire(t *testing.T, m mode, token string, r pa.Request) answer {
	t.Helper()
	body, err := r.Inquiry()
	if err != nil {
		t.Fatal(err)
	}
	validate(t, "inquiry Bundle "+r.Identifier, pa.ProfileInquiryRequestBundle, body)
	return send(t, "POST", m.base+"/Claim/$inquire", token, nil, body)
}

// --- the FHIR server and the admin API --------------------------------------------------------------------

// hapi sends one request to HAPI directly (checks, never through fhirwall).
func hapi(t *testing.T, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, stackenv.HAPIURL+"/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("HAPI %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// hapiCount is the total of a HAPI search.
func hapiCount(t *testing.T, typ string, q url.Values) int {
	t.Helper()
	q.Set("_summary", "count")
	st, b := hapi(t, "GET", typ+"?"+q.Encode())
	var r struct{ Total int }
	if st != http.StatusOK || json.Unmarshal(b, &r) != nil {
		t.Fatalf("HAPI %s?%s: %d %.300s", typ, q.Encode(), st, b)
	}
	return r.Total
}

// storedClaims counts the Claims on the FHIR server with the request's identifier.
func storedClaims(t *testing.T, r pa.Request) int {
	return hapiCount(t, "Claim", url.Values{"identifier": {r.ClaimIdentifier()}})
}

var (
	adminOnce sync.Once
	adminAPI  *pa.Admin
	adminErr  error
)

func admin(t *testing.T) *pa.Admin {
	t.Helper()
	adminOnce.Do(func() { adminAPI, adminErr = pa.NewAdmin() })
	if adminErr != nil {
		t.Fatal(adminErr)
	}
	return adminAPI
}

// queued finds the request in the admin API's list (status "" lists every request), waiting up to 30 s.
func queued(t *testing.T, status string, r pa.Request) pa.QueueItem {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		it, ok, err := admin(t).Find(ctx(t), status, r.Identifier)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return it
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admin API does not list %s with status %q", r.Identifier, status)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// decideLeftovers approves, when t ends, whichever of these requests is still pended, so a failed run leaves
// no request of its own in the review queue.
func decideLeftovers(t *testing.T, rs ...*pa.Request) {
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, r := range rs {
			it, ok, err := admin(t).Find(c, "pended", r.Identifier)
			if err != nil || !ok {
				continue
			}
			if st, b, err := admin(t).Decide(c, it.ID, pa.Review{Reviewer: "e2e-cleanup", Verdict: pa.ReviewApproved}); err != nil || st >= 300 {
				t.Logf("cleanup: deciding %s: %d %v %.200s", it.ID, st, err, b)
			}
		}
	})
}

// --- audit ------------------------------------------------------------------------------------------------

const (
	// notificationInteraction is the interaction of the audit record of a notification delivery
	// (internal/decision InteractionNotification: kind access, path Subscription/<id>, outcome delivered).
	notificationInteraction = "notification"
)

// isDelivery reports whether an audit record is the delivered event notification to the subscription.
func isDelivery(rec map[string]any, subscriptionID string) bool {
	reasons, _ := rec["reasons"].([]any)
	return rec["interaction"] == notificationInteraction && rec["path"] == "Subscription/"+subscriptionID &&
		rec["outcome"] == "delivered" && slices.Contains(reasons, any("subscription_event-notification"))
}

// The audit outcomes of refusals the adapter answers (adapters/priorauth priorauth.go); a decision's outcome
// is its status: approved, denied, pended, partial.
const (
	outcomeInvalid      = "invalid_request"
	outcomeNotSubmitter = "not_submitter"
	outcomeNotFound     = "not_found"
)

// expectation is an answer the audit trail must hold, with the outcome when one is wanted.
type expectation struct {
	mode    string
	a       answer
	outcome string
	client  string
}

// auditSince is where the suite reads the audit topic from: just before it started.
func auditSince() time.Time { return testStart.Add(-10 * time.Second) }

// scanAudit reads the audit topic from just before the suite started, calling visit on every record until
// it returns true or a minute passes (false).
func scanAudit(t *testing.T, visit func(rec map[string]any) bool) bool {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	found, err := stackaudit.Scan(c, auditSince(), visit)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// checkAudit waits until every expected answer has its record: api prior-auth, the status the client got,
// the client, and the outcome (approved, denied, pended) where one is expected.
func checkAudit(t *testing.T, want []expectation) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stackaudit.Expect(c, t, auditSince(), api, auditExpectations(want))
}

func auditExpectations(want []expectation) []stackaudit.Expectation {
	out := make([]stackaudit.Expectation, 0, len(want))
	for _, w := range want {
		out = append(out, stackaudit.Expectation{What: w.mode + " " + w.a.String(), DecisionID: w.a.decisionID,
			Status: w.a.status, Client: w.client, Outcome: w.outcome})
	}
	return out
}

// checkDeliveriesAudited waits until every subscription has at least one delivery record in the audit topic.
func checkDeliveriesAudited(t *testing.T, subscriptionIDs []string) {
	t.Helper()
	missing := map[string]bool{}
	for _, s := range subscriptionIDs {
		missing[s] = true
	}
	if len(missing) == 0 {
		return
	}
	scanAudit(t, func(rec map[string]any) bool {
		for s := range missing {
			if isDelivery(rec, s) {
				delete(missing, s)
			}
		}
		return len(missing) == 0
	})
	for s := range missing {
		t.Errorf("no audit record of a delivered event notification (interaction %s) to Subscription/%s", notificationInteraction, s)
	}
}

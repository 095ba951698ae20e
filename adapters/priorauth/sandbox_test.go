package priorauth

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/synthetic"
	"github.com/fhirwall/fhirwall/internal/datascope"
	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/token"
)

// The sandbox's callers and data, as the seed holds them: sandbox-org (NPI 1999999992) and its clinician
// sandbox-pract, and the synthetic member sandbox-01 (FWSB0001), all tagged sandbox; org-a and member-01 are
// the rig's real ones.
var (
	sandboxOrgCaller = &token.Identity{ClientID: "sandbox-provider", Org: "Organization/sandbox-org"}
	sandboxPractUser = &token.Identity{ClientID: "sandbox-ehr", FHIRUser: "Practitioner/sandbox-pract"}
)

const sandboxNPI = "1999999992"

func sandboxRig(t testing.TB) *rig {
	g := newRig(t)
	for _, r := range []map[string]any{
		{"resourceType": "Patient", "id": "sandbox-01", "name": []any{map[string]any{"family": "Sandbox", "given": []any{"Sam"}}},
			"identifier": []any{map[string]any{"system": "https://fhirwall.example/member-id", "value": "FWSB0001"}}},
		{"resourceType": "Organization", "id": "sandbox-org", "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": sandboxNPI}}},
		{"resourceType": "Practitioner", "id": "sandbox-pract", "active": true,
			"identifier": []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1888888884"}}},
		{"resourceType": "PractitionerRole", "id": "sandbox-pract-role", "active": true,
			"practitioner": map[string]any{"reference": "Practitioner/sandbox-pract"}, "organization": map[string]any{"reference": "Organization/sandbox-org"}},
		// A real organisation's role for the sandbox clinician: a mistake in the data the sandbox must not trust.
		{"resourceType": "PractitionerRole", "id": "sandbox-pract-at-org-a", "active": true,
			"practitioner": map[string]any{"reference": "Practitioner/sandbox-pract"}, "organization": map[string]any{"reference": "Organization/org-a"}},
	} {
		if r["id"] != "sandbox-pract-at-org-a" {
			synthetic.Tag(r)
		}
		g.fhir.resources[r["resourceType"].(string)+"/"+r["id"].(string)] = r
	}
	return g
}

// asSandbox is a change to a testdata Bundle: the provider is sandbox-org and the member number, family
// name, as given (a synthetic member's, or a real one's).
func asSandbox(number, family string) func(claim, b map[string]any) {
	return func(_, b map[string]any) {
		for _, e := range asList(b["entry"]) {
			r := asObj(asObj(e)["resource"])
			switch {
			case asStr(r["resourceType"]) == "Organization" && asStr(r["id"]) == "UMOExample":
				r["identifier"] = []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": sandboxNPI}}
			case asStr(r["resourceType"]) == "Patient":
				r["identifier"] = []any{map[string]any{"system": "https://fhirwall.example/member-id", "value": number}}
				r["name"] = []any{map[string]any{"family": family}}
			}
		}
	}
}

func (g *rig) sandboxCall(t testing.TB, who *token.Identity, path string, body []byte) decision.Answer {
	t.Helper()
	d := decided(t, who, path, body)
	d.Input.API = "prior-auth-sandbox"
	ans, err := g.a.Serve(context.Background(), d, "https://gw.example/prior-auth-sandbox/fhir")
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return ans
}

func syntheticBody(t testing.TB, body []byte) bool {
	t.Helper()
	var res map[string]any
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("not JSON: %s", body)
	}
	return datascope.Synthetic(res)
}

func TestSandboxSubmitIsFiledUnderTheSyntheticMemberAndTaggedEverywhere(t *testing.T) {
	g := sandboxRig(t)
	ans := g.sandboxCall(t, sandboxOrgCaller, "/Claim/$submit", input(t, "submit-medical.json", asSandbox("FWSB0001", "SANDBOX")))
	if ans.Status != 200 || ans.Outcome != "approved" || !slices.Equal(ans.Patients, []string{"sandbox-01"}) {
		t.Fatalf("answer %d %s %v: %s", ans.Status, ans.Outcome, ans.Patients, ans.Body)
	}
	if !syntheticBody(t, ans.Body) {
		t.Fatalf("the PAS response is not synthetic: %s", ans.Body)
	}
	if len(g.decider.asked) != 1 || !g.decider.asked[0].Sandbox {
		t.Fatalf("the Decider was not told the request is a sandbox one (the UM system must never see it): %+v", g.decider.asked)
	}
	stored, err := g.store.FindByClaimIdentifier(context.Background(), "Organization/sandbox-org", "http://example.org/PATIENT_EVENT_TRACE_NUMBER|111099")
	if err != nil || !stored.Sandbox || stored.Patient != "Patient/sandbox-01" {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	for _, ref := range []string{"Claim/" + stored.ClaimID, "ClaimResponse/" + stored.ClaimResponseID, "ExplanationOfBenefit/" + stored.EOBID} {
		res := g.fhir.get(ref)
		if res == nil || !datascope.Synthetic(res) {
			t.Errorf("%s on the FHIR server is not synthetic: %v", ref, res)
		}
		if tags := asList(asObj(res["meta"])["tag"]); !slices.ContainsFunc(tags, func(t any) bool { return asStr(asObj(t)["system"]) == TagSystem }) {
			t.Errorf("%s lost fhirwall's own tag: %v", ref, tags)
		}
	}
	inq := g.sandboxCall(t, sandboxOrgCaller, "/Claim/$inquire", input(t, "inquire-medical.json", asSandbox("FWSB0001", "Sandbox")))
	if inq.Status != 200 || !syntheticBody(t, inq.Body) {
		t.Fatalf("sandbox inquiry %d: %s", inq.Status, inq.Body)
	}
}

func TestSandboxSubmitNeverTouchesARealMember(t *testing.T) {
	g := sandboxRig(t)
	ans := g.sandboxCall(t, sandboxOrgCaller, "/Claim/$submit", input(t, "submit-medical.json", asSandbox("FWM0001", "THOMPSON")))
	if ans.Status != 200 || ans.Outcome != string(StatusError) || len(ans.Patients) != 0 || !syntheticBody(t, ans.Body) {
		t.Fatalf("a real member's number on the sandbox: %d %s %v: %s", ans.Status, ans.Outcome, ans.Patients, ans.Body)
	}
	if g.fhir.transactions != 0 || len(g.fhir.of("Claim")) != 0 {
		t.Fatalf("the sandbox wrote %d transactions for a real member", g.fhir.transactions)
	}
	// The same Bundle from the real org on the production API is filed under member-01: the sandbox refused it.
	if ans := g.submit(t, orgA, input(t, "submit-medical.json")); ans.Outcome != "approved" || !slices.Equal(ans.Patients, []string{"member-01"}) {
		t.Fatalf("production submit %s %v", ans.Outcome, ans.Patients)
	}
}

func TestARealProviderActsForNobodyInTheSandbox(t *testing.T) {
	g := sandboxRig(t)
	// org-a is real: on the sandbox it is nobody, whatever Bundle it sends.
	for _, body := range [][]byte{input(t, "submit-medical.json"), input(t, "submit-medical.json", asSandbox("FWSB0001", "Sandbox"))} {
		if ans := g.sandboxCall(t, orgA, "/Claim/$submit", body); ans.Status != 403 {
			t.Fatalf("a real provider on the sandbox: %d %s", ans.Status, ans.Body)
		}
	}
	// The sandbox clinician acts for sandbox-org only, not for the real org a stray role names.
	ans := g.sandboxCall(t, sandboxPractUser, "/Claim/$submit", input(t, "submit-medical.json", func(_, b map[string]any) {
		asSandbox("FWSB0001", "Sandbox")(nil, b)
		for _, e := range asList(b["entry"]) {
			if r := asObj(asObj(e)["resource"]); asStr(r["id"]) == "UMOExample" {
				r["identifier"] = []any{map[string]any{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}}
			}
		}
	}))
	if ans.Status != 403 {
		t.Fatalf("the sandbox clinician submitting for org-a: %d %s", ans.Status, ans.Body)
	}
	if ans := g.sandboxCall(t, sandboxPractUser, "/Claim/$submit", input(t, "submit-medical.json", asSandbox("FWSB0001", "Sandbox"))); ans.Status != 200 {
		t.Fatalf("the sandbox clinician submitting for sandbox-org: %d %s", ans.Status, ans.Body)
	}
}

func TestSandboxRequestsAreNoReviewersAndCrossNoBoundary(t *testing.T) {
	g := sandboxRig(t)
	ans := g.sandboxCall(t, sandboxOrgCaller, "/Claim/$submit", input(t, "submit-medical.json", asSandbox("FWSB0001", "Sandbox"), withCodes(cpt+"33510")))
	if ans.Outcome != string(StatusPended) {
		t.Fatalf("outcome %s: %s", ans.Outcome, ans.Body)
	}
	stored, err := g.store.FindByClaimIdentifier(context.Background(), "Organization/sandbox-org", "http://example.org/PATIENT_EVENT_TRACE_NUMBER|111099")
	if err != nil {
		t.Fatal(err)
	}
	if pended, _ := g.store.Pended(context.Background()); len(pended) != 0 {
		t.Fatalf("the review queue lists a sandbox request: %+v", pended)
	}
	if _, err := g.a.Review(context.Background(), stored.ID, ReviewInput{Reviewer: "dr-x", Verdict: VerdictApproved}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a reviewer decided a sandbox request: %v", err)
	}
	if len(g.notifier.events) != 0 {
		t.Fatalf("a sandbox request was announced: %+v", g.notifier.events)
	}
	// sandbox-org on the production API does not find its sandbox request, nor org-a's real one on the sandbox.
	if inq := g.call(t, sandboxOrgCaller, "/Claim/$inquire", input(t, "inquire-medical.json", asSandbox("FWSB0001", "Sandbox"))); inq.Status != 404 {
		t.Fatalf("a production inquiry found a sandbox request: %d %s", inq.Status, inq.Body)
	}
	g.submit(t, orgA, input(t, "submit-medical.json", func(c, _ map[string]any) {
		asObj(asList(c["identifier"])[0])["value"] = "real-1"
	}))
	if inq := g.sandboxCall(t, orgA, "/Claim/$inquire", input(t, "inquire-medical.json", func(c, _ map[string]any) {
		asObj(asList(c["identifier"])[0])["value"] = "real-1"
	})); inq.Status != 404 {
		t.Fatalf("a sandbox inquiry found a real request: %d %s", inq.Status, inq.Body)
	}
}

func TestASandboxSubscriptionIsStoredTagged(t *testing.T) {
	g := sandboxRig(t)
	body, _ := json.Marshal(map[string]any{"resourceType": "Subscription", "meta": map[string]any{"profile": []any{"p"}}})
	ans := g.sandboxCall(t, sandboxOrgCaller, "/Subscription", body)
	if ans.Status != 201 || !syntheticBody(t, g.subs.body) || !syntheticBody(t, ans.Body) {
		t.Fatalf("%d, handed %s", ans.Status, g.subs.body)
	}
	if o := g.subs.owner; !slices.Equal(o.OrgIdentifiers, []string{"http://hl7.org/fhir/sid/us-npi|" + sandboxNPI}) || !slices.Equal(o.NotifyHosts, []string{"127.0.0.1:9999"}) {
		t.Fatalf("owner %+v", o)
	}
	g.call(t, sandboxOrgCaller, "/Subscription", body)
	if syntheticBody(t, g.subs.body) {
		t.Fatal("a production Subscription was tagged sandbox")
	}
}

func TestTheAdminAPINeitherListsNorShowsASandboxRequest(t *testing.T) {
	f := newAdminFixture(t)
	sandbox := Request{ID: "pa-sandbox", Provider: "Organization/sandbox-org", Patient: "Patient/sandbox-01", ClientID: "sandbox-provider",
		ClaimIdentifier: "urn:ietf:rfc:3986|urn:uuid:9", Received: adminNow.Add(-time.Hour), Deadline: adminNow.Add(-time.Minute),
		Status: StatusPended, Version: 1, Sandbox: true,
		Items: []ItemDecision{{Sequence: 1, Product: Code{System: "http://www.ama-assn.org/go/cpt", Code: "33510"}, Verdict: VerdictPended, Rule: "cabg-review"}}}
	if err := f.store.Insert(context.Background(), sandbox); err != nil {
		t.Fatal(err)
	}
	if rec := f.do("GET", "/admin/prior-auth/requests?status=pended", ""); rec.Code != 200 || strings.Contains(rec.Body.String(), "pa-sandbox") {
		t.Fatalf("queue %d: %s", rec.Code, rec.Body)
	}
	if rec := f.do("GET", "/admin/prior-auth/requests/pa-sandbox", ""); rec.Code != 404 {
		t.Fatalf("a sandbox request shown to a reviewer: %d %s", rec.Code, rec.Body)
	}
	if pended, _, _, err := QueueStats(context.Background(), f.store, adminNow); err != nil || pended != 2 {
		t.Fatalf("the queue's figures count %d pended (%v), want the 2 real ones", pended, err)
	}
}

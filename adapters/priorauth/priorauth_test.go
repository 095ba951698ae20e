package priorauth

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/adapters/profilevalidator"
)

func TestSubmitApprovesAnMRIAndStoresClaimClaimResponseAndPriorAuth(t *testing.T) {
	g := newRig(t)
	ans := g.submit(t, orgA, input(t, "submit-medical.json"))
	if ans.Status != 200 || ans.Outcome != "approved" || !slices.Equal(ans.Patients, []string{"member-01"}) {
		t.Fatalf("answer %d %s %v: %s", ans.Status, ans.Outcome, ans.Patients, ans.Body)
	}
	b, cr := responseOf(t, ans.Body)
	if got := actions(cr); !slices.Equal(got, []string{"A1"}) {
		t.Fatalf("review actions %v", got)
	}
	if asStr(asObj(b["identifier"])["value"]) == "" || asStr(b["type"]) != "collection" || cr["request"] == nil || cr["preAuthPeriod"] == nil {
		t.Fatalf("bundle identifier, type, ClaimResponse.request or preAuthPeriod missing: %s", ans.Body)
	}
	if !strings.Contains(string(ans.Body), `"number"`) {
		t.Fatal("an approval carries its certification number")
	}
	// Every reference of the ClaimResponse resolves inside the Bundle.
	s, err := parseResponseBundle(ans.Body)
	if err != nil {
		t.Fatalf("the response Bundle does not parse back: %v", err)
	}
	if req := asObj(cr["request"]); asStr(asObj(req["identifier"])["value"]) != "111099" || req["type"] != "Claim" {
		t.Errorf("ClaimResponse.request names the Claim by its identifier: %v", req)
	}
	for _, k := range []string{"patient", "insurer", "requestor"} {
		if s.Resolve(nil, asStr(asObj(cr[k])["reference"])) == nil {
			t.Errorf("ClaimResponse.%s does not resolve in the Bundle", k)
		}
	}
	stored, err := g.store.FindByClaimIdentifier(context.Background(), "Organization/org-a", "http://example.org/PATIENT_EVENT_TRACE_NUMBER|111099")
	if err != nil || stored.Status != StatusApproved || stored.Patient != "Patient/member-01" || stored.DecidedBy != "rules" {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	claim := g.fhir.get("Claim/" + stored.ClaimID)
	if claim == nil || asStr(asObj(claim["patient"])["reference"]) != "Patient/member-01" ||
		asStr(asObj(claim["insurer"])["reference"]) != "Organization/payer-a" ||
		asStr(asObj(claim["provider"])["reference"]) != "Organization/org-a" || claim["text"] != nil {
		t.Fatalf("stored Claim %v", claim)
	}
	cov := asObj(asObj(asList(claim["insurance"])[0])["coverage"])
	if cov["reference"] != nil || asStr(cov["type"]) != "Coverage" {
		t.Fatalf("a reference into the Bundle is kept without reference: %v", cov)
	}
	if tags := asList(asObj(claim["meta"])["tag"]); len(tags) != 1 || asStr(asObj(tags[0])["system"]) != TagSystem {
		t.Fatalf("Claim not tagged: %v", claim["meta"])
	}
	eob := g.fhir.get("ExplanationOfBenefit/" + stored.EOBID)
	if eob == nil || eob["use"] != "preauthorization" || eob["outcome"] != "complete" || !slices.Equal(actions(eob), []string{"A1"}) ||
		asList(eob["preAuthRef"])[0] != AuthNumber(stored.ID) {
		t.Fatalf("prior authorization %v", eob)
	}
	if crStored := g.fhir.get("ClaimResponse/" + stored.ClaimResponseID); asStr(asObj(crStored["patient"])["reference"]) != "Patient/member-01" {
		t.Fatalf("stored ClaimResponse %v", crStored)
	}
	if g.fhir.transactions != 1 || !slices.Equal(g.observer.statuses, []string{"approved"}) {
		t.Fatalf("%d transactions, observed %v", g.fhir.transactions, g.observer.statuses)
	}
}

func TestSubmitDeniesWithASpecificReason(t *testing.T) {
	g := newRig(t)
	ans := g.submit(t, orgA, input(t, "submit-medical.json", withCodes(hcpcs+"B4185")))
	_, cr := responseOf(t, ans.Body)
	if ans.Outcome != "denied" || !slices.Equal(actions(cr), []string{"A3"}) {
		t.Fatalf("%s %v", ans.Outcome, actions(cr))
	}
	if !strings.Contains(string(ans.Body), `"reasonCode"`) || !strings.Contains(string(ans.Body), SystemX12Reason) {
		t.Fatalf("a denial carries its X12 886 reason: %s", ans.Body)
	}
	eob := g.fhir.of("ExplanationOfBenefit")[0]
	if !slices.Equal(actions(eob), []string{"A3"}) || eob["preAuthRef"] != nil {
		t.Fatalf("denied prior authorization %v", eob)
	}
}

func TestPendedRequestIsReviewedAndNotifiedOnceAfterTheStore(t *testing.T) {
	g := newRig(t)
	ans := g.submit(t, orgA, input(t, "submit-medical.json", withCodes(cpt+"33510", cpt+"70551")))
	_, cr := responseOf(t, ans.Body)
	if ans.Outcome != "pended" || !slices.Equal(actions(cr), []string{"A4", "A1"}) {
		t.Fatalf("%s %v", ans.Outcome, actions(cr))
	}
	if eob := g.fhir.of("ExplanationOfBenefit")[0]; eob["outcome"] != "queued" {
		t.Fatalf("a pended prior authorization reads as pending: %v", eob["outcome"])
	}
	pended, _ := g.store.Pended(context.Background())
	if len(pended) != 1 || len(g.notifier.events) != 0 {
		t.Fatalf("%d pended, %d notifications before review", len(pended), len(g.notifier.events))
	}
	id := pended[0].ID

	if _, err := g.a.Review(context.Background(), id, ReviewInput{Reviewer: "dr-review", Verdict: VerdictDenied}); !errors.Is(err, ErrReasonRequired) {
		t.Fatalf("denial without reason: %v", err)
	}
	if _, err := g.a.Review(context.Background(), id, ReviewInput{Reviewer: "dr-review", Verdict: VerdictPended}); !errors.Is(err, ErrInvalidReview) {
		t.Fatalf("A4 is no review: %v", err)
	}
	later := now.Add(3 * time.Hour)
	g.a.now = func() time.Time { return later }
	r, err := g.a.Review(context.Background(), id, ReviewInput{Reviewer: "dr-review", Verdict: VerdictApproved})
	if err != nil || r.Status != StatusApproved || r.Version != 2 || r.DecidedBy != "dr-review" || !r.DecidedAt.Equal(later) {
		t.Fatalf("review %+v %v", r, err)
	}
	if len(g.notifier.events) != 1 || g.notifier.stored[0] != StatusApproved {
		t.Fatalf("notifications %d, store said %v when notified", len(g.notifier.events), g.notifier.stored)
	}
	ev := g.notifier.events[0]
	if ev.RequestID != id || ev.Version != 2 || ev.ClaimResponseID != r.ClaimResponseID || !slices.Contains(ev.OrgIdentifiers, "http://hl7.org/fhir/sid/us-npi|1234567893") {
		t.Fatalf("event %+v", ev)
	}
	_, cr = responseOf(t, ev.ResponseBundle)
	if !slices.Equal(actions(cr), []string{"A1", "A1"}) {
		t.Fatalf("notified decision %v", actions(cr))
	}
	if eob := g.fhir.get("ExplanationOfBenefit/" + r.EOBID); eob["outcome"] != "complete" || !slices.Equal(actions(eob), []string{"A1", "A1"}) {
		t.Fatalf("prior authorization after review %v %v", eob["outcome"], actions(eob))
	}
	if _, err := g.a.Review(context.Background(), id, ReviewInput{Reviewer: "other", Verdict: VerdictApproved}); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("second review: %v", err)
	}
	if _, err := g.a.Review(context.Background(), "pa-unknown", ReviewInput{Reviewer: "x", Verdict: VerdictApproved}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
	if len(g.notifier.events) != 1 {
		t.Fatalf("%d notifications", len(g.notifier.events))
	}
}

func TestUMFailurePendsTheRequestNeverApprovesIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"the decider fails", errors.New("um down"), cpt + "70551"},
		{"the decider pends what UM could not decide", nil, cpt + "81162"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.decider.err = tc.err
			ans := g.submit(t, orgA, input(t, "submit-medical.json", withCodes(tc.code)))
			_, cr := responseOf(t, ans.Body)
			if ans.Status != 200 || ans.Outcome != "pended" || !slices.Equal(actions(cr), []string{"A4"}) {
				t.Fatalf("%d %s %v", ans.Status, ans.Outcome, actions(cr))
			}
			if p, _ := g.store.Pended(context.Background()); len(p) != 1 {
				t.Fatal("the request is not in the review queue")
			}
		})
	}
}

func TestNonConformantBundleIsRefusedAndNothingStored(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      []byte
		validator profilevalidator.Result
	}{
		{"no entries (Inferno's nonconformant bundle)", []byte(`{"resourceType":"Bundle","type":"collection","entry":[]}`), profilevalidator.Result{Valid: true}},
		{"the validator finds errors", input(t, "submit-medical.json"),
			profilevalidator.Result{Valid: false, Errors: 1, Outcome: []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Bundle.identifier: minimum required = 1"}]}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.valid.res = tc.validator
			ans := g.submit(t, orgA, tc.body)
			if ans.Status != 400 || ans.Outcome != "invalid_request" || !strings.Contains(string(ans.Body), `"OperationOutcome"`) {
				t.Fatalf("%d %s %s", ans.Status, ans.Outcome, ans.Body)
			}
			if g.fhir.transactions != 0 || len(g.observer.statuses) != 0 || g.decider.calls != 0 {
				t.Fatal("something was decided or stored")
			}
			if p, _ := g.store.Received(context.Background(), now.Add(-time.Hour), now.Add(time.Hour)); len(p) != 0 {
				t.Fatal("a request was stored")
			}
		})
	}
}

func TestValidatorDownStoresNothingAndFails(t *testing.T) {
	g := newRig(t)
	g.valid.err = errors.New("connection refused")
	body := input(t, "submit-medical.json")
	d := decided(t, orgA, "/Claim/$submit", body)
	if _, err := g.a.Serve(context.Background(), d, ""); err == nil {
		t.Fatal("a request the validator could not judge was answered (want an error: 503)")
	}
	if g.fhir.transactions != 0 || g.decider.calls != 0 {
		t.Fatal("something was decided or stored")
	}
}

func TestFHIRServerDownStoresNothingAndFails(t *testing.T) {
	g := newRig(t)
	g.fhir.down = true
	if _, err := g.a.Serve(context.Background(), decided(t, orgA, "/Claim/$submit", input(t, "submit-medical.json")), ""); err == nil {
		t.Fatal("answered without the FHIR server")
	}
	if p, _ := g.store.Received(context.Background(), now.Add(-time.Hour), now.Add(time.Hour)); len(p) != 0 {
		t.Fatal("a request was stored")
	}
}

func TestAnotherProvidersClaimIsRefused(t *testing.T) {
	g := newRig(t)
	ans := g.submit(t, orgB, input(t, "submit-medical.json"))
	if ans.Status != 403 || ans.Outcome != "not_submitter" {
		t.Fatalf("%d %s", ans.Status, ans.Outcome)
	}
	if g.fhir.transactions != 0 || g.decider.calls != 0 {
		t.Fatal("something was decided or stored")
	}
}

func TestClinicianSubmitsForTheirOrganisationThroughAPractitionerRole(t *testing.T) {
	g := newRig(t)
	// pract-09 is not named in the Claim, but an active PractitionerRole makes them act for org-a, which is.
	ans := g.submit(t, clinic09, input(t, "submit-medical.json"))
	if ans.Status != 200 || ans.Outcome != "approved" {
		t.Fatalf("%d %s %s", ans.Status, ans.Outcome, ans.Body)
	}
	// pract-01 has no role at org-a on the FHIR server and is not the Claim's provider.
	if ans := g.submit(t, clinic01, input(t, "submit-medical.json")); ans.Status != 403 {
		t.Fatalf("a clinician of no organisation named in the Claim: %d", ans.Status)
	}
}

func TestInquiryAnswersTheSubmitterAndNotFoundToAnotherProvider(t *testing.T) {
	g := newRig(t)
	if ans := g.submit(t, orgA, input(t, "submit-medical.json")); ans.Outcome != "approved" {
		t.Fatal(ans.Outcome)
	}
	ans := g.call(t, orgA, "/Claim/$inquire", input(t, "inquire-medical.json"))
	b, cr := responseOf(t, ans.Body)
	if ans.Status != 200 || !slices.Equal(actions(cr), []string{"A1"}) ||
		asList(asObj(b["meta"])["profile"])[0] != ProfileInquiryResponseBundle ||
		asList(asObj(cr["meta"])["profile"])[0] != profileClaimInquiryResponse {
		t.Fatalf("%d %s", ans.Status, ans.Body)
	}
	if g.valid.profiles[len(g.valid.profiles)-1] != ProfileInquiryRequestBundle {
		t.Fatalf("the inquiry was validated against %v", g.valid.profiles)
	}
	other := g.call(t, orgB, "/Claim/$inquire", input(t, "inquire-medical.json"))
	unknown := g.call(t, orgA, "/Claim/$inquire", input(t, "inquire-medical.json", func(c, _ map[string]any) {
		asObj(asList(c["identifier"])[0])["value"] = "no-such-claim"
	}))
	if other.Status != 404 || unknown.Status != 404 || string(other.Body) != string(unknown.Body) {
		t.Fatalf("another provider %d, unknown %d: the two must look alike\n%s\n%s", other.Status, unknown.Status, other.Body, unknown.Body)
	}
}

func TestExpeditedRequestsAreDueIn72HoursOthersIn7Days(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c, b map[string]any)
		want   time.Duration
		basis  string
	}{
		{"standard", func(c, b map[string]any) {}, 7 * 24 * time.Hour, "standard"},
		{"urgent level of service", func(c, b map[string]any) {
			c["extension"] = []any{map[string]any{"url": extLevelOfService,
				"valueCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": systemLevelOfSvc, "code": "U"}}}}}
		}, 72 * time.Hour, "levelOfServiceCode"},
		{"priority stat", func(c, b map[string]any) {
			c["priority"] = map[string]any{"coding": []any{map[string]any{"system": systemProcPriority, "code": "stat"}}}
		}, 72 * time.Hour, "priority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.submit(t, orgA, input(t, "submit-medical.json", withCodes(cpt+"33510"), tc.change))
			p, _ := g.store.Pended(context.Background())
			if len(p) != 1 || p[0].Deadline.Sub(p[0].Received) != tc.want || p[0].DeadlineBasis != tc.basis || p[0].Expedited != (tc.want == 72*time.Hour) {
				t.Fatalf("%+v", p)
			}
		})
	}
}

func TestDrugRequestIsFlaggedAndKeepsItsDrugCode(t *testing.T) {
	g := newRig(t)
	ans := g.submit(t, orgA, input(t, "submit-medical.json", withCodes(hcpcs+"J1745")))
	if ans.Outcome != "approved" {
		t.Fatal(ans.Outcome)
	}
	r, _ := g.store.FindByClaimIdentifier(context.Background(), "Organization/org-a", "http://example.org/PATIENT_EVENT_TRACE_NUMBER|111099")
	if !r.Drug {
		t.Fatal("a J-code request is a drug prior authorization")
	}
	eob := g.fhir.get("ExplanationOfBenefit/" + r.EOBID)
	if c := codingsOf(asObj(asList(eob["item"])[0])["productOrService"]); len(c) == 0 || c[0].Code != "J1745" || c[0].System != "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets" {
		t.Fatalf("the prior authorization lost its drug code: %v", c)
	}
}

func TestBusinessErrorsAnswerAClaimResponseWithTheX12Reason(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c, b map[string]any)
		code   string
	}{
		{"member unknown", patientWith("FWM9999", "THOMPSON"), "75"},
		{"family name differs", patientWith("FWM0001", "SMITH"), "73"},
		{"no member id", patientWith("", "THOMPSON"), "72"},
		{"insurer not ours", func(c, b map[string]any) {
			for _, e := range asList(b["entry"]) {
				if r := asObj(asObj(e)["resource"]); r["id"] == "InsurerExample" {
					r["identifier"] = []any{map[string]any{"system": "https://fhirwall.example/payer-id", "value": "OTHER"}}
				}
			}
		}, "79"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			ans := g.submit(t, orgA, input(t, "submit-medical.json", tc.change))
			_, cr := responseOf(t, ans.Body)
			errs := asList(cr["error"])
			if ans.Status != 200 || ans.Outcome != "error" || cr["outcome"] != "error" || len(errs) != 1 ||
				codingsOf(asObj(errs[0])["code"])[0] != (Code{System: SystemX12Reject, Code: tc.code, Display: codingsOf(asObj(errs[0])["code"])[0].Display}) {
				t.Fatalf("%d %s %v", ans.Status, ans.Outcome, cr["error"])
			}
			if g.fhir.transactions != 0 || g.decider.calls != 0 {
				t.Fatal("a rejected request was decided or put on the FHIR server")
			}
		})
	}
}

func patientWith(number, family string) func(c, b map[string]any) {
	return func(c, b map[string]any) {
		for _, e := range asList(b["entry"]) {
			if r := asObj(asObj(e)["resource"]); r["resourceType"] == "Patient" {
				r["identifier"] = []any{map[string]any{"system": "https://fhirwall.example/member-id", "value": number}}
				if number == "" {
					r["identifier"] = []any{map[string]any{"system": "http://example.org/MIN", "value": "1"}}
				}
				r["name"] = []any{map[string]any{"family": family}}
			}
		}
	}
}

func TestSubscriptionsGoToTheSubscriptionServerWithTheCallersIdentity(t *testing.T) {
	g := newRig(t)
	body, _ := json.Marshal(map[string]any{"resourceType": "Subscription"})
	ans := g.call(t, clinic09, "/Subscription", body)
	o := g.subs.owner
	if ans.Status != 201 || o.Provider != "Practitioner/pract-09" || o.ClientID != "provider-app" ||
		!slices.Contains(o.OrgIdentifiers, "http://hl7.org/fhir/sid/us-npi|1234567893") || !slices.Equal(o.NotifyHosts, []string{"127.0.0.1:9999"}) {
		t.Fatalf("%d %+v", ans.Status, o)
	}
}

func TestNewRefusesMissingDependencies(t *testing.T) {
	if _, err := New(Ports{}, Settings{}); err == nil || !strings.Contains(err.Error(), "validator") || !strings.Contains(err.Error(), "insurer") {
		t.Fatalf("%v", err)
	}
}

func TestPriorAuthClaimsPDexOnlyWhenItConforms(t *testing.T) {
	g := newRig(t)
	g.submit(t, orgA, input(t, "submit-medical.json"))
	g.submit(t, orgA, input(t, "submit-medical.json", func(c, _ map[string]any) {
		asObj(asList(c["identifier"])[0])["value"] = "with-net"
		asObj(asList(c["item"])[0])["net"] = map[string]any{"value": json.Number("250.00"), "currency": "USD"}
	}))
	claims := map[bool]int{}
	for _, eob := range g.fhir.of("ExplanationOfBenefit") {
		_, withNet := asObj(asList(asObj(asList(eob["item"])[0])["adjudication"])[0])["amount"].(map[string]any)
		profiled := len(asList(asObj(eob["meta"])["profile"])) == 1
		if withNet != profiled {
			t.Errorf("amount %v, claims PDex %v", withNet, profiled)
		}
		claims[profiled]++
	}
	if claims[true] != 1 || claims[false] != 1 {
		t.Fatalf("%v", claims)
	}
}

func TestReviewDecidesItemByItemAndInquiryAnswersTheNewDecision(t *testing.T) {
	g := newRig(t)
	g.submit(t, orgA, input(t, "submit-medical.json", withCodes(cpt+"33510", hcpcs+"B4184", cpt+"70551")))
	p, _ := g.store.Pended(context.Background())
	id := p[0].ID
	reason := &Code{System: SystemX12Reason, Code: "0U", Display: "Not medically necessary"}
	for _, bad := range []ReviewInput{
		{Reviewer: "r", Items: []ItemDecision{{Sequence: 1, Verdict: VerdictApproved}}},                // item 2 left pended
		{Reviewer: "r", Items: []ItemDecision{{Sequence: 3, Verdict: VerdictApproved}}, Verdict: "A1"}, // 3 is not pended
		{Reviewer: "r", Items: []ItemDecision{{Sequence: 1, Verdict: VerdictDenied}}, Verdict: "A1"},   // no reason
		{Verdict: VerdictApproved}, // no reviewer
		{Reviewer: "r", Items: []ItemDecision{{Sequence: 9, Verdict: VerdictApproved}}, Verdict: "A1"}, // no item 9
	} {
		if _, err := g.a.Review(context.Background(), id, bad); !errors.Is(err, ErrInvalidReview) && !errors.Is(err, ErrReasonRequired) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
	if g.fhir.transactions != 1 || len(g.notifier.events) != 0 {
		t.Fatal("a refused review changed something")
	}
	r, err := g.a.Review(context.Background(), id, ReviewInput{Reviewer: "r", Verdict: VerdictApproved, Reason: reason,
		Items: []ItemDecision{{Sequence: 2, Verdict: VerdictDenied}}})
	if err != nil || r.Status != StatusPartial {
		t.Fatalf("%+v %v", r.Status, err)
	}
	if r.Items[1].Reason == nil || *r.Items[1].Reason != *reason || r.Items[0].Rule != "review" || r.Items[2].Rule != "mri-brain" {
		t.Fatalf("%+v", r.Items)
	}
	ans := g.call(t, orgA, "/Claim/$inquire", input(t, "inquire-medical.json"))
	if _, cr := responseOf(t, ans.Body); !slices.Equal(actions(cr), []string{"A1", "A3", "A1"}) || ans.Outcome != "partial" {
		t.Fatalf("inquiry after review: %s %v", ans.Outcome, actions(cr))
	}
}

// failingStore is a Store whose Insert fails: the FHIR server's copies must not outlive it.
type failingStore struct{ *MemoryStore }

func (failingStore) Insert(context.Context, Request) error { return errors.New("postgres down") }

func TestAStoreThatFailsLeavesNoCopyOnTheFHIRServer(t *testing.T) {
	g := newRig(t)
	g.a.store = failingStore{g.store}
	if _, err := g.a.Serve(context.Background(), decided(t, orgA, "/Claim/$submit", input(t, "submit-medical.json")), ""); err == nil {
		t.Fatal("answered though nothing was stored")
	}
	if n := len(g.fhir.of("Claim")) + len(g.fhir.of("ClaimResponse")) + len(g.fhir.of("ExplanationOfBenefit")); g.fhir.transactions != 1 || n != 0 {
		t.Fatalf("%d copies left", n)
	}
}

func TestSubmitAcceptsTheBundleInParameters(t *testing.T) {
	g := newRig(t)
	var b map[string]any
	_ = json.Unmarshal(input(t, "submit-medical.json"), &b)
	body, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "resource", "resource": b}}})
	if ans := g.submit(t, orgA, body); ans.Status != 200 || ans.Outcome != "approved" {
		t.Fatalf("%d %s %s", ans.Status, ans.Outcome, ans.Body)
	}
}

func TestItemAskingForACodeRangeGoesToAReviewer(t *testing.T) {
	g := newRig(t)
	codeRange := func(claim, _ map[string]any) {
		it := claim["item"].([]any)[0].(map[string]any)
		ext, _ := it["extension"].([]any)
		it["extension"] = append(ext, map[string]any{"url": extCodeEnd, "valueCodeableConcept": map[string]any{
			"coding": []any{map[string]any{"system": "http://www.ama-assn.org/go/cpt", "code": "70559"}}}})
	}
	ans := g.submit(t, orgA, input(t, "submit-medical.json", codeRange)) // 70551 alone is approved at once
	if ans.Status != 200 || ans.Outcome != "pended" {
		t.Fatalf("a range starting at an auto-approved code: %d %s, want pended", ans.Status, ans.Outcome)
	}
	r, err := g.store.FindByClaimIdentifier(context.Background(), "Organization/org-a", "http://example.org/PATIENT_EVENT_TRACE_NUMBER|111099")
	if err != nil || r.Items[0].Verdict != VerdictPended || r.Items[0].Rule != "code-range" {
		t.Fatalf("stored %+v, %v", r.Items, err)
	}
}

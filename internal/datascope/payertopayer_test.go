package datascope

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// decisionTime is 2026-11-27: five years back is 2021-11-27.

func TestPayerToPayerReturnsSeedClaimsAsCMSAllows(t *testing.T) {
	eobs := seedEOBs(t)
	for _, tc := range []struct {
		id   string
		keep bool
		why  string
	}{
		{"eob-member-01-1", false, "served 2013"},
		{"eob-member-01-2", false, "served 2018: kept for providers, more than 5 years old"},
		{"eob-member-02-1", false, "served 2014"},
		{"eob-member-02-2", false, "served 2019"},
		{"eob-member-01-3", true, "pharmacy claim 2024"},
		{"eob-member-02-3", true, "inpatient claim 2025"},
		{"eob-member-02-4", true, "outpatient claim 2026"},
		{"priorauth-member-01-1", true, "approved (A1) MRI prior auth 2025"},
		{"priorauth-member-05-1", true, "approved (A1) 2025"},
		{"priorauth-member-02-1", true, "pended (A4, queued)"},
		{"priorauth-member-02-2", false, "denied (A3, denialreason)"},
		{"priorauth-member-01-2", false, "approved drug prior auth"},
		{"priorauth-member-03-1", false, "pended drug prior auth"},
		{"priorauth-member-04-1", false, "approved, 2015"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			eob, ok := eobs[tc.id]
			if !ok {
				t.Fatalf("%s not in testdata", tc.id)
			}
			if keep, _ := Apply(PayerToPayer, eob, decisionTime); keep != tc.keep {
				t.Errorf("%s (%s): keep = %v, want %v", tc.id, tc.why, keep, tc.keep)
			}
		})
	}
}

// The pdex-priorauthorization shape: item.adjudication.extension:reviewAction holding reviewActionCode.
func priorAuthEOB(outcome string, codes ...string) map[string]any {
	var adj []any
	for _, c := range codes {
		adj = append(adj, map[string]any{
			"category":  cc2("http://terminology.hl7.org/CodeSystem/adjudication", "submitted"),
			"amount":    money(100),
			"extension": []any{reviewAction(pdexReviewAction, pdexReviewCode, x12ActionCodeSystem, c)},
		})
	}
	eob := map[string]any{
		"resourceType": "ExplanationOfBenefit", "id": "pa", "status": "active", "use": "preauthorization",
		"type":           cc2(claimTypeSystem, "professional"),
		"created":        "2026-09-01T00:00:00Z",
		"billablePeriod": map[string]any{"start": "2026-09-15", "end": "2026-12-15"},
		"item": []any{map[string]any{"sequence": 1, "productOrService": cc2("http://www.ama-assn.org/go/cpt", "70551"),
			"servicedPeriod": map[string]any{"start": "2026-09-15", "end": "2026-12-15"}, "adjudication": adj}},
	}
	if outcome != "" {
		eob["outcome"] = outcome
	}
	if adj == nil {
		delete(eob["item"].([]any)[0].(map[string]any), "adjudication")
	}
	return eob
}

func reviewAction(url, codeURL, system, code string) map[string]any {
	return map[string]any{"url": url, "extension": []any{
		map[string]any{"url": "number", "valueString": "AUTH1"},
		map[string]any{"url": codeURL, "valueCodeableConcept": cc2(system, code)},
	}}
}

// The PAS profile-claimresponse shape (testdata: A1, outcome complete, created 2026-05-02).
func priorAuthResponse(outcome string, codes ...string) func(t *testing.T) map[string]any {
	return func(t *testing.T) map[string]any {
		r := fixture("pas-claimresponse.json")(t)
		r["outcome"] = outcome
		it := r["item"].([]any)[0].(map[string]any)
		var adj []any
		for _, c := range codes {
			adj = append(adj, map[string]any{
				"category":  cc2("http://terminology.hl7.org/CodeSystem/adjudication", "submitted"),
				"extension": []any{reviewAction(pasReviewAction, pasReviewCode+"|2.0.1", x12ActionCodeSystem, c)},
			})
		}
		it["adjudication"] = adj
		return r
	}
}

func with(f func() map[string]any, change func(map[string]any)) func(t *testing.T) map[string]any {
	return func(*testing.T) map[string]any {
		r := f()
		change(r)
		return r
	}
}

func eobOf(outcome string, codes ...string) func() map[string]any {
	return func() map[string]any { return priorAuthEOB(outcome, codes...) }
}

func TestPayerToPayerWithholdsDeniedPriorAuths(t *testing.T) {
	firstAdj := func(r map[string]any) map[string]any {
		return r["item"].([]any)[0].(map[string]any)["adjudication"].([]any)[0].(map[string]any)
	}
	for _, tc := range []struct {
		name string
		res  func(t *testing.T) map[string]any
		keep bool
	}{
		// ExplanationOfBenefit (PDex pdex-priorauthorization)
		{"EOB approved in total (A1) kept", with(eobOf("complete", "A1"), nil2), true},
		{"EOB certified partial (A2) kept: an authorization in effect", with(eobOf("complete", "A2"), nil2), true},
		{"EOB modified (A6) kept: the authorized item differs from the request", with(eobOf("complete", "A6"), nil2), true},
		{"EOB pended (A4) kept", with(eobOf("queued", "A4"), nil2), true},
		{"EOB queued with no review yet kept: pending", with(eobOf("queued"), nil2), true},
		{"EOB queued but approved (the PDex example) kept", with(eobOf("queued", "A1"), nil2), true},
		{"EOB one line approved, one pended kept", with(eobOf("complete", "A1", "A4"), nil2), true},
		{"EOB denied (A3) withheld", with(eobOf("complete", "A3"), nil2), false},
		{"EOB one line approved, one denied withheld", with(eobOf("complete", "A1", "A3"), nil2), false},
		{"EOB denied while queued withheld", with(eobOf("queued", "A3"), nil2), false},
		{"EOB approved with a denialreason adjudication withheld", with(eobOf("complete", "A1"), func(r map[string]any) {
			it := r["item"].([]any)[0].(map[string]any)
			it["adjudication"] = append(it["adjudication"].([]any), map[string]any{
				"category": cc2("http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PDexAdjudicationDiscriminator", "denialreason"),
				"reason":   cc2("https://x12.org/codes/claim-adjustment-reason-codes", "50")})
		}), false},
		{"EOB with a denied adjudication status withheld", with(eobOf("complete", "A1"), func(r map[string]any) {
			r["adjudication"] = []any{map[string]any{"category": cc2("http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PDexAdjudicationDiscriminator", "x"),
				"reason": cc2("http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PDexPayerAdjudicationStatus", "denied")}}
		}), false},
		{"EOB outcome error withheld", with(eobOf("error"), nil2), false},
		{"EOB complete without a review action withheld: no decision to read", with(eobOf("complete"), nil2), false},
		{"EOB without outcome withheld", with(eobOf("", "A1"), nil2), false},
		{"EOB cancelled (C) withheld", with(eobOf("complete", "C"), nil2), false},
		{"EOB contact payer (CT) withheld", with(eobOf("complete", "CT"), nil2), false},
		{"EOB A1 in another code system withheld", with(eobOf("complete", "A1"), func(r map[string]any) {
			firstAdj(r)["extension"] = []any{reviewAction(pdexReviewAction, pdexReviewCode, "https://example.org/306", "A1")}
		}), false},
		{"EOB review action without a code withheld", with(eobOf("complete", "A1"), func(r map[string]any) {
			firstAdj(r)["extension"] = []any{map[string]any{"url": pdexReviewAction, "extension": []any{
				map[string]any{"url": "number", "valueString": "AUTH1"}}}}
		}), false},
		{"EOB review code of the wrong JSON type withheld", with(eobOf("complete", "A1"), func(r map[string]any) {
			firstAdj(r)["extension"] = []any{map[string]any{"url": pdexReviewAction, "extension": []any{
				map[string]any{"url": pdexReviewCode, "valueCodeableConcept": "A1"}}}}
		}), false},
		{"EOB review action inside money withheld (the money removal would take it)", with(eobOf("complete", "A1"), func(r map[string]any) {
			firstAdj(r)["extension"].([]any)[0].(map[string]any)["currency"] = "USD"
		}), false},
		{"EOB status cancelled withheld", with(eobOf("complete", "A1"), func(r map[string]any) { r["status"] = "cancelled" }), false},
		{"EOB status entered-in-error withheld", with(eobOf("complete", "A1"), func(r map[string]any) { r["status"] = "entered-in-error" }), false},
		{"EOB status draft withheld", with(eobOf("queued", "A4"), func(r map[string]any) { r["status"] = "draft" }), false},
		{"EOB without status withheld", with(eobOf("complete", "A1"), func(r map[string]any) { delete(r, "status") }), false},
		{"EOB approved drug prior auth withheld", with(eobOf("complete", "A1"), func(r map[string]any) {
			r["item"].([]any)[0].(map[string]any)["productOrService"] = cc2(ndcSystem, "0777-3105-02")
		}), false},
		{"EOB pended drug prior auth withheld", with(eobOf("queued", "A4"), func(r map[string]any) { r["type"] = cc2(claimTypeSystem, "pharmacy") }), false},
		{"EOB predetermination denied withheld", with(eobOf("complete", "A3"), func(r map[string]any) { r["use"] = "predetermination" }), false},
		{"claim (not a prior auth) needs no decision", with(eobOf(""), func(r map[string]any) {
			r["use"], r["status"], r["outcome"] = "claim", "cancelled", "complete"
		}), true},

		// ClaimResponse (PAS profile-claimresponse)
		{"ClaimResponse approved (testdata) kept", fixture("pas-claimresponse.json"), true},
		{"ClaimResponse pended kept", priorAuthResponse("complete", "A4"), true},
		{"ClaimResponse partially certified kept", priorAuthResponse("partial", "A2"), true},
		{"ClaimResponse denied withheld", priorAuthResponse("complete", "A3"), false},
		{"ClaimResponse approved and denied lines withheld", priorAuthResponse("complete", "A1", "A3"), false},
		{"ClaimResponse deferred (D) withheld", priorAuthResponse("complete", "D"), false},
		{"ClaimResponse rejected (outcome error) withheld", priorAuthResponse("error"), false},
		{"ClaimResponse error even with an A1 withheld", priorAuthResponse("error", "A1"), false},
		{"ClaimResponse queued kept", priorAuthResponse("queued"), true},
		{"ClaimResponse cancelled withheld", func(t *testing.T) map[string]any {
			r := fixture("pas-claimresponse.json")(t)
			r["status"] = "cancelled"
			return r
		}, false},
		{"ClaimResponse drug decision withheld", func(t *testing.T) map[string]any {
			r := fixture("pas-claimresponse.json")(t)
			r["type"] = cc2(claimTypeSystem, "pharmacy")
			return r
		}, false},

		// Claim (PAS profile-claim): the request carries no decision.
		{"PAS Claim withheld: no decision on the request", fixture("pas-claim.json"), false},
		{"Claim with use claim kept", func(t *testing.T) map[string]any {
			c := fixture("pas-claim.json")(t)
			c["use"] = "claim"
			return c
		}, true},
		{"contained denied prior auth withholds its container", func(t *testing.T) map[string]any {
			return map[string]any{"resourceType": "Parameters", "parameter": []any{
				map[string]any{"name": "x", "resource": priorAuthEOB("complete", "A3")}}}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.res(t)
			if keep, _ := Apply(PayerToPayer, res, decisionTime); keep != tc.keep {
				t.Errorf("keep = %v, want %v", keep, tc.keep)
			}
		})
	}
}

func nil2(map[string]any) {}

// dated builds a resource of type rt with one date of service set through set.
type dated struct {
	rt      string
	element string
	set     func(r map[string]any, date string)
}

func field(k string) func(map[string]any, string) {
	return func(r map[string]any, d string) { r[k] = d }
}

func periodField(k, end string) func(map[string]any, string) {
	return func(r map[string]any, d string) { r[k] = map[string]any{end: d} }
}

var datedElements = []dated{
	{"ExplanationOfBenefit", "billablePeriod.start", func(r map[string]any, d string) { r["billablePeriod"] = map[string]any{"start": d} }},
	{"ExplanationOfBenefit", "item.servicedDate", func(r map[string]any, d string) { r["item"] = []any{map[string]any{"servicedDate": d}} }},
	// Provider Access's rule needs every period's start from 2016 on: the periods start early.
	{"ExplanationOfBenefit", "addItem.servicedPeriod.end", func(r map[string]any, d string) {
		r["addItem"] = []any{map[string]any{"servicedPeriod": map[string]any{"start": "2016-01-01", "end": d}}}
	}},
	{"ExplanationOfBenefit", "created (no date of service)", field("created")},
	{"Claim", "billablePeriod.end", func(r map[string]any, d string) {
		r["billablePeriod"] = map[string]any{"start": "2016-01-01", "end": d}
	}},
	{"Claim", "item.servicedPeriod.start", func(r map[string]any, d string) {
		r["item"] = []any{map[string]any{"servicedPeriod": map[string]any{"start": d}}}
	}},
	{"ClaimResponse", "preAuthPeriod.start", periodField("preAuthPeriod", "start")},
	{"ClaimResponse", "created (no date of service)", field("created")},
	{"Encounter", "period.start", periodField("period", "start")},
	{"Encounter", "period.end", periodField("period", "end")},
	{"Condition", "onsetDateTime", field("onsetDateTime")},
	{"Condition", "onsetPeriod.end", periodField("onsetPeriod", "end")},
	{"Condition", "recordedDate", field("recordedDate")},
	{"Condition", "abatementDateTime", field("abatementDateTime")},
	{"Observation", "effectiveDateTime", field("effectiveDateTime")},
	{"Observation", "effectivePeriod.start", periodField("effectivePeriod", "start")},
	{"Observation", "effectiveInstant", field("effectiveInstant")},
	{"Observation", "effectiveTiming.event", func(r map[string]any, d string) { r["effectiveTiming"] = map[string]any{"event": []any{d}} }},
	{"Observation", "issued", field("issued")},
	{"Procedure", "performedDateTime", field("performedDateTime")},
	{"Procedure", "performedPeriod.end", periodField("performedPeriod", "end")},
	{"Immunization", "occurrenceDateTime", field("occurrenceDateTime")},
	{"MedicationRequest", "authoredOn", field("authoredOn")},
	{"MedicationDispense", "whenHandedOver", field("whenHandedOver")},
	{"DiagnosticReport", "effectiveDateTime", field("effectiveDateTime")},
	{"DiagnosticReport", "issued", field("issued")},
	{"DocumentReference", "date", field("date")},
	{"DocumentReference", "context.period.start", func(r map[string]any, d string) {
		r["context"] = map[string]any{"period": map[string]any{"start": d}}
	}},
	{"AllergyIntolerance", "recordedDate", field("recordedDate")},
	{"AllergyIntolerance", "onsetDateTime", field("onsetDateTime")},
	{"AllergyIntolerance", "lastOccurrence", field("lastOccurrence")},
	{"CarePlan", "period.start", periodField("period", "start")},
	{"CareTeam", "period.end", periodField("period", "end")},
	{"Goal", "startDate", field("startDate")},
	{"Goal", "target.dueDate", func(r map[string]any, d string) { r["target"] = []any{map[string]any{"dueDate": d}} }},
}

func TestPayerToPayerFiveYearWindowPerType(t *testing.T) {
	for _, el := range datedElements {
		for _, tc := range []struct {
			date string
			keep bool
		}{
			{"2021-11-27", true},  // exactly five years before 2026-11-27
			{"2021-11-26", false}, // one day before
			{"2026-11-27", true},
			{"2027-03-01", true}, // pending prior auths and planned care lie ahead
			{"2021", true},       // a year counts when any of it is inside
			{"2020", false},
			{"2021-11", true},
			{"2021-10", false},
			{"2021-11-27T00:30:00+01:00", true},  // 26 Nov in UTC, 27 Nov as written
			{"2021-11-26T23:30:00-05:00", false}, // 27 Nov in UTC, 26 Nov as written
			{"2021-11-26T23:59:59Z", false},
			{"2021-13-01", false}, // unreadable
			{"2021-11-27T10:00", false},
			{"", false},
		} {
			t.Run(el.rt+"/"+el.element+"/"+tc.date, func(t *testing.T) {
				r := map[string]any{"resourceType": el.rt, "status": "active", "use": "claim"}
				el.set(r, tc.date)
				if keep, _ := Apply(PayerToPayer, r, decisionTime); keep != tc.keep {
					t.Errorf("keep = %v, want %v", keep, tc.keep)
				}
			})
		}
		t.Run(el.rt+"/"+el.element+"/wrong JSON type", func(t *testing.T) {
			r := map[string]any{"resourceType": el.rt, "status": "active", "use": "claim"}
			el.set(r, "2026-01-01")
			breakDates(r)
			if keep, _ := Apply(PayerToPayer, r, decisionTime); keep {
				t.Errorf("kept %v", r)
			}
		})
	}
}

// breakDates replaces every date string in r with a number.
func breakDates(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok && len(s) >= 4 && s[0] == '2' {
				t[k] = 2026
			} else {
				breakDates(e)
			}
		}
	case []any:
		for i, e := range t {
			if s, ok := e.(string); ok && len(s) >= 4 && s[0] == '2' {
				t[i] = 2026
			} else {
				breakDates(e)
			}
		}
	}
}

func TestPayerToPayerCountsTheLatestDateOfService(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  map[string]any
		keep bool
	}{
		{"condition with an old onset, recorded recently", map[string]any{"resourceType": "Condition",
			"onsetDateTime": "2010-05-01", "recordedDate": "2024-02-01"}, true},
		{"condition that abated within the window", map[string]any{"resourceType": "Condition",
			"onsetDateTime": "2010-05-01", "abatementDateTime": "2022-01-01"}, true},
		{"condition with only an age and a string: no date", map[string]any{"resourceType": "Condition",
			"onsetAge": map[string]any{"value": 40}, "abatementString": "childhood"}, false},
		{"open encounter from long ago: the start is the only date it gives", map[string]any{"resourceType": "Encounter",
			"period": map[string]any{"start": "2019-01-01"}}, false},
		{"encounter that ended within the window", map[string]any{"resourceType": "Encounter",
			"period": map[string]any{"start": "2019-01-01", "end": "2022-01-01"}}, true},
		{"one unreadable date withholds, however recent the others", map[string]any{"resourceType": "Observation",
			"effectiveDateTime": "2026-01-01", "issued": "yesterday"}, false},
		{"procedure performed as a string only", map[string]any{"resourceType": "Procedure", "performedString": "last spring"}, false},
		{"goal due within the window, started long ago", map[string]any{"resourceType": "Goal", "startDate": "2015-01-01",
			"target": []any{map[string]any{"dueDate": "2015-06-01"}, map[string]any{"dueDate": "2023-06-01"}}}, true},
		{"goal target of the wrong JSON type", map[string]any{"resourceType": "Goal", "startDate": "2025-01-01",
			"target": "2025-06-01"}, false},
		{"claim: an old billable period, a recent line", map[string]any{"resourceType": "ExplanationOfBenefit", "use": "claim",
			"billablePeriod": map[string]any{"start": "2021-01-01"}, "item": []any{map[string]any{"servicedDate": "2022-01-01"}}}, true},
		{"claim: created ignored when a date of service exists", map[string]any{"resourceType": "ExplanationOfBenefit", "use": "claim",
			"created": "2026-01-01", "billablePeriod": map[string]any{"start": "2020-01-01", "end": "2020-02-01"}}, false},
		{"claim: no date at all", map[string]any{"resourceType": "Claim", "use": "claim"}, false},
		{"a period carrying a currency goes with the money: no date", map[string]any{"resourceType": "Encounter",
			"period": map[string]any{"start": "2025-01-01", "currency": "USD"}}, false},
		{"contained old encounter withholds its container", map[string]any{"resourceType": "Observation",
			"effectiveDateTime": "2026-01-01",
			"contained":         []any{map[string]any{"resourceType": "Encounter", "id": "e", "period": map[string]any{"start": "2001-01-01", "end": "2001-01-02"}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if keep, _ := Apply(PayerToPayer, tc.res, decisionTime); keep != tc.keep {
				t.Errorf("keep = %v, want %v", keep, tc.keep)
			}
		})
	}
}

func TestPayerToPayerWindowCountsCalendarYears(t *testing.T) {
	leap := time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC) // five years back: 2023-03-01 (no 29 Feb in 2023)
	for date, keep := range map[string]bool{"2023-02-28": false, "2023-03-01": true} {
		r := map[string]any{"resourceType": "Encounter", "period": map[string]any{"start": date}}
		if got, _ := Apply(PayerToPayer, r, leap); got != keep {
			t.Errorf("%s at %s: keep = %v, want %v", date, leap, got, keep)
		}
	}
	// The decision time's UTC date: late on 27 Nov in New York is 28 Nov in UTC.
	ny := time.Date(2026, 11, 27, 22, 0, 0, 0, time.FixedZone("EST", -5*3600))
	r := map[string]any{"resourceType": "Encounter", "period": map[string]any{"start": "2021-11-27"}}
	if keep, _ := Apply(PayerToPayer, r, ny); keep {
		t.Error("2021-11-27 kept at 2026-11-28 UTC")
	}
}

func TestPayerToPayerTypesWithoutDatesOfServicePass(t *testing.T) {
	for _, rt := range []string{"Patient", "Practitioner", "PractitionerRole", "Organization", "Location", "Coverage"} {
		r := map[string]any{"resourceType": rt, "id": "x"}
		if keep, changed := Apply(PayerToPayer, r, decisionTime); !keep || changed {
			t.Errorf("%s: keep, changed = %v, %v", rt, keep, changed)
		}
	}
	c := coverage(t)
	if keep, _ := Apply(PayerToPayer, c, decisionTime); !keep || c["costToBeneficiary"] != nil || c["text"] != nil {
		t.Errorf("Coverage: keep %v, %v", keep, c)
	}
	for _, rt := range []string{"Invoice", "PaymentNotice", "PaymentReconciliation"} {
		if keep, _ := Apply(PayerToPayer, map[string]any{"resourceType": rt, "status": "active"}, decisionTime); keep {
			t.Errorf("%s kept", rt)
		}
	}
}

// Payer-to-Payer withholds more than Provider Access and changes what it keeps exactly as Provider Access
// does: non-financial claims, no money but a prior auth's submitted and eligible amounts, no payment, no
// narrative on what changed.
func TestPayerToPayerStripsMoneyAsProviderAccess(t *testing.T) {
	all := map[string]func(t *testing.T) map[string]any{
		"pas-claimresponse": fixture("pas-claimresponse.json"),
		"approved EOB":      func(*testing.T) map[string]any { return priorAuthEOB("complete", "A1") },
		"coverage":          coverage,
	}
	for id := range seedEOBs(t) {
		all[id] = seedEOB(id)
	}
	kept := 0
	for _, name := range slices.Sorted(maps.Keys(all)) {
		t.Run(name, func(t *testing.T) {
			p2p, pa := all[name](t), all[name](t)
			keep, changed := Apply(PayerToPayer, p2p, decisionTime)
			paKeep, paChanged := Apply(ProviderAccess, pa, decisionTime)
			if !keep {
				return
			}
			kept++
			if !paKeep || changed != paChanged || !reflect.DeepEqual(p2p, pa) {
				t.Errorf("payer-to-payer kept %v (changed %v), provider access %v (changed %v)",
					mustMarshal(t, p2p), changed, mustMarshal(t, pa), paChanged)
			}
			if paths := leakedMoney(p2p); len(paths) > 0 {
				t.Errorf("money left at %v", paths)
			}
			// A prior auth keeps its submitted and eligible totals (leakedMoney), a claim none.
			if (p2p["total"] != nil && !isPriorAuthEOB(p2p)) || ((p2p["resourceType"] == "ClaimResponse" || isPriorAuthEOB(p2p)) && p2p["payment"] != nil) || (changed && p2p["text"] != nil) {
				t.Errorf("total, remittance or narrative left: %s", mustMarshal(t, p2p))
			}
		})
	}
	if kept < 6 {
		t.Errorf("only %d resources kept: the comparison proves little", kept)
	}
}

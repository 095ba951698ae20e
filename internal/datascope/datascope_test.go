package datascope

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testdata/seed-eobs.json: the ExplanationOfBenefits of member-01 and member-02 and every prior auth, as
// `go run ./test/seed -dry-run -out DIR` writes them (entries of fhirwall-seed-4.json, one per line).
func seedEOBs(t testing.TB) map[string]map[string]any {
	t.Helper()
	raw, err := os.ReadFile("testdata/seed-eobs.json")
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, e := range b.Entry {
		out[e.Resource["id"].(string)] = e.Resource
	}
	return out
}

var decisionTime = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func TestProviderAccessWithholdsWhatCMSExcludes(t *testing.T) {
	eobs := seedEOBs(t)
	for _, tc := range []struct {
		id   string
		keep bool
		why  string
	}{
		{"eob-member-01-1", false, "outpatient claim served 2013-02-10"},
		{"eob-member-02-1", false, "professional claim served 2014-03-10"},
		{"priorauth-member-04-1", false, "prior auth for 2015-04-10"},
		{"priorauth-member-01-2", false, "drug prior auth (pharmacy, NDC)"},
		{"priorauth-member-03-1", false, "pended drug prior auth"},
		{"priorauth-member-01-1", true, "approved MRI prior auth"},
		{"priorauth-member-02-1", true, "pended prior auth"},
		{"priorauth-member-02-2", true, "denied prior auth"},
		{"eob-member-01-2", true, "professional claim 2018"},
		{"eob-member-01-3", true, "pharmacy claim 2024"},
		{"eob-member-02-2", true, "pharmacy claim 2019"},
		{"eob-member-02-3", true, "inpatient claim 2025"},
		{"eob-member-02-4", true, "outpatient claim 2026"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			eob, ok := eobs[tc.id]
			if !ok {
				t.Fatalf("%s not in testdata", tc.id)
			}
			if keep, _ := Apply(ProviderAccess, eob, decisionTime); keep != tc.keep {
				t.Errorf("%s (%s): keep = %v, want %v", tc.id, tc.why, keep, tc.keep)
			}
		})
	}
}

func TestProviderAccessClaimsLoseEveryAmount(t *testing.T) {
	for id, eob := range seedEOBs(t) {
		if !strings.HasPrefix(id, "eob-") {
			continue
		}
		t.Run(id, func(t *testing.T) {
			keep, changed := Apply(ProviderAccess, eob, decisionTime)
			if !keep {
				return
			}
			if !changed {
				t.Fatal("a claim with cost-sharing was not changed")
			}
			if paths := moneyPaths(eob, "ExplanationOfBenefit"); len(paths) > 0 {
				t.Errorf("money left at %v", paths)
			}
			for _, k := range []string{"total", "payment.amount", "item.adjudication.amount", "adjudication.amount"} {
				if present(eob, strings.Split(k, ".")) {
					t.Errorf("%s still present", k)
				}
			}
		})
	}
}

// moneyPaths finds every money element anywhere in v, told by its own rules rather than the package's: an
// object with a currency or an ISO 4217 system, an element named *Money.
func moneyPaths(v any, path string) []string {
	var out []string
	switch t := v.(type) {
	case map[string]any:
		if _, ok := t["currency"]; ok || t["system"] == "urn:iso:std:iso:4217" {
			return []string{path}
		}
		for k, e := range t {
			if len(k) > 5 && strings.HasSuffix(k, "Money") {
				out = append(out, path+"."+k)
				continue
			}
			out = append(out, moneyPaths(e, path+"."+k)...)
		}
	case []any:
		for _, e := range t {
			out = append(out, moneyPaths(e, path)...)
		}
	}
	return out
}

func present(v any, path []string) bool {
	if len(path) == 0 {
		return v != nil
	}
	switch t := v.(type) {
	case map[string]any:
		return present(t[path[0]], path[1:])
	case []any:
		for _, e := range t {
			if present(e, path) {
				return true
			}
		}
	}
	return false
}

func TestProviderAccessClaimsKeepTheirNonFinancialContent(t *testing.T) {
	eobs := seedEOBs(t)
	for _, tc := range []struct {
		id      string
		profile string
	}{
		{"eob-member-01-2", ProfessionalNonClinician},
		{"eob-member-01-3", Pharmacy},
		{"eob-member-02-3", InpatientInstitutional},
		{"eob-member-02-4", OutpatientInstitutional},
	} {
		t.Run(tc.id, func(t *testing.T) {
			eob := eobs[tc.id]
			before := clone(t, eob)
			Apply(ProviderAccess, eob, decisionTime)

			meta := eob["meta"].(map[string]any)
			if got := meta["profile"]; !reflect.DeepEqual(got, []any{tc.profile}) {
				t.Errorf("meta.profile = %v, want [%s]", got, tc.profile)
			}
			if !reflect.DeepEqual(meta["tag"], before["meta"].(map[string]any)["tag"]) {
				t.Error("meta.tag changed")
			}
			for _, k := range []string{"identifier", "status", "type", "subType", "use", "patient", "billablePeriod",
				"created", "insurer", "provider", "outcome", "careTeam", "supportingInfo", "diagnosis", "procedure",
				"insurance", "id", "resourceType"} {
				if !reflect.DeepEqual(eob[k], before[k]) {
					t.Errorf("%s changed: %v → %v", k, before[k], eob[k])
				}
			}
			// payment.date is mustSupport in the non-financial profiles.
			p, _ := eob["payment"].(map[string]any)
			bp, _ := before["payment"].(map[string]any)
			if p["date"] != bp["date"] || !reflect.DeepEqual(p["type"], bp["type"]) {
				t.Errorf("payment = %v, want date and type of %v", p, bp)
			}
			// The claim-level network and payment status (billingnetworkstatus, benefitpaymentstatus slices)
			// carry a reason, not an amount: they stay.
			// (institutional claims also carry the amounts at claim level: those go.)
			var withReason []any
			for _, a := range before["adjudication"].([]any) {
				if a.(map[string]any)["reason"] != nil {
					withReason = append(withReason, a)
				}
			}
			if len(withReason) == 0 || !reflect.DeepEqual(eob["adjudication"], withReason) {
				t.Errorf("adjudication = %v, want %v", eob["adjudication"], withReason)
			}
			items, befores := eob["item"].([]any), before["item"].([]any)
			if len(items) != len(befores) {
				t.Fatalf("%d items, want %d", len(items), len(befores))
			}
			for i := range items {
				it, bi := items[i].(map[string]any), befores[i].(map[string]any)
				for k, v := range bi {
					if k == "adjudication" {
						continue
					}
					if !reflect.DeepEqual(it[k], v) {
						t.Errorf("item[%d].%s changed", i, k)
					}
				}
			}
		})
	}
}

func TestProviderAccessKeepsAdjudicationReasonsAndValues(t *testing.T) {
	eob := map[string]any{
		"resourceType": "ExplanationOfBenefit", "use": "claim", "created": "2024-01-01",
		"type": map[string]any{"coding": []any{map[string]any{"system": claimTypeSystem, "code": "oral"}}},
		"item": []any{map[string]any{
			"servicedDate": "2024-01-01",
			"unitPrice":    money(10), "net": money(10),
			"adjudication": []any{
				map[string]any{"category": cc("adjustmentreason"), "reason": cc("45"), "amount": money(3)},
				map[string]any{"category": cc("allowedunits"), "value": json.Number("2")},
				map[string]any{"category": cc("copay"), "amount": money(5)},
			},
			"detail": []any{map[string]any{"net": money(4), "subDetail": []any{map[string]any{"unitPrice": money(1)}}}},
		}},
		"addItem":        []any{map[string]any{"net": money(2)}},
		"benefitBalance": []any{map[string]any{"category": cc("medical"), "financial": []any{map[string]any{"usedMoney": money(7)}}}},
		"payment":        map[string]any{"adjustment": money(1), "amount": money(9)},
	}
	keep, changed := Apply(ProviderAccess, eob, decisionTime)
	if !keep || !changed {
		t.Fatalf("keep, changed = %v, %v", keep, changed)
	}
	if paths := moneyPaths(eob, "ExplanationOfBenefit"); len(paths) > 0 {
		t.Errorf("money left at %v", paths)
	}
	adj := eob["item"].([]any)[0].(map[string]any)["adjudication"].([]any)
	if len(adj) != 2 {
		t.Fatalf("item.adjudication = %v, want adjustmentreason and allowedunits without amounts", adj)
	}
	if _, ok := eob["payment"]; ok {
		t.Errorf("payment = %v, want it gone (nothing but money in it)", eob["payment"])
	}
	if got := eob["meta"].(map[string]any)["profile"]; !reflect.DeepEqual(got, []any{Oral}) {
		t.Errorf("meta.profile = %v", got)
	}
	if bb := eob["benefitBalance"].([]any)[0].(map[string]any); bb["category"] == nil {
		t.Error("benefitBalance.category removed")
	}
}

func TestServiceDatesDecide(t *testing.T) {
	for _, tc := range []struct {
		name string
		eob  map[string]any
		keep bool
	}{
		{"billable period before 2016", map[string]any{"billablePeriod": map[string]any{"start": "2015-12-31"}}, false},
		{"billable period from 2016", map[string]any{"billablePeriod": map[string]any{"start": "2016-01-01"}}, true},
		{"year only 2016", map[string]any{"billablePeriod": map[string]any{"start": "2016"}}, true},
		{"month 2015-12", map[string]any{"billablePeriod": map[string]any{"start": "2015-12"}}, false},
		{"dateTime", map[string]any{"billablePeriod": map[string]any{"start": "2016-01-01T00:30:00+01:00"}}, true},
		{"an item served earlier", map[string]any{"billablePeriod": map[string]any{"start": "2016-02-01"},
			"item": []any{map[string]any{"servicedDate": "2015-11-30"}}}, false},
		{"an item period earlier", map[string]any{"item": []any{map[string]any{"servicedPeriod": map[string]any{"start": "2015-11-30"}}}}, false},
		{"only created, old", map[string]any{"created": "2015-06-01T00:00:00Z"}, false},
		{"only created, new", map[string]any{"created": "2020-06-01T00:00:00Z"}, true},
		{"created ignored when a service date exists", map[string]any{"created": "2015-06-01",
			"billablePeriod": map[string]any{"start": "2016-03-01"}}, true},
		{"no date at all", map[string]any{}, false},
		{"unreadable date", map[string]any{"billablePeriod": map[string]any{"start": "soon"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.eob["resourceType"] = "ExplanationOfBenefit"
			tc.eob["use"] = "claim"
			if keep, _ := Apply(ProviderAccess, tc.eob, decisionTime); keep != tc.keep {
				t.Errorf("keep = %v, want %v", keep, tc.keep)
			}
		})
	}
}

func TestDrugPriorAuthByCodeAlone(t *testing.T) {
	eob := map[string]any{"resourceType": "ExplanationOfBenefit", "use": "preauthorization", "created": "2025-01-01",
		"type": map[string]any{"coding": []any{map[string]any{"system": claimTypeSystem, "code": "professional"}}},
		"item": []any{map[string]any{"productOrService": map[string]any{"coding": []any{
			map[string]any{"system": ndcSystem, "code": "0777-3105-02"}}}}}}
	if keep, _ := Apply(ProviderAccess, eob, decisionTime); keep {
		t.Error("a professional prior auth for an NDC-coded product was kept")
	}
}

func TestPatientAccessSeesEverythingButDrugPriorAuths(t *testing.T) {
	for id, eob := range seedEOBs(t) {
		before := clone(t, eob)
		drug := isPriorAuth(eob) && isDrug(eob)
		if keep, changed := Apply("", eob, decisionTime); !keep || changed {
			t.Errorf("%s under the empty scope: keep, changed = %v, %v", id, keep, changed)
		}
		if keep, changed := Apply(PatientAccess, eob, decisionTime); keep == drug || changed {
			t.Errorf("%s (drug prior auth %v) under patient-access: keep, changed = %v, %v", id, drug, keep, changed)
		}
		if !reflect.DeepEqual(eob, before) {
			t.Errorf("%s modified under patient-access", id)
		}
	}
}

func TestOtherTypesPassAndUnknownScopesWithholdClaims(t *testing.T) {
	pat := map[string]any{"resourceType": "Patient", "id": "member-01"}
	if keep, changed := Apply(ProviderAccess, pat, decisionTime); !keep || changed {
		t.Errorf("Patient: keep, changed = %v, %v", keep, changed)
	}
	eob := seedEOBs(t)["eob-member-01-3"]
	if keep, _ := Apply("payer-exchange", eob, decisionTime); keep {
		t.Error("a scope without rules returned a claim")
	}
}

func TestApplyTwiceChangesNothingMore(t *testing.T) {
	eob := seedEOBs(t)["eob-member-02-3"]
	Apply(ProviderAccess, eob, decisionTime)
	if keep, changed := Apply(ProviderAccess, eob, decisionTime); !keep || changed {
		t.Errorf("second pass: keep, changed = %v, %v", keep, changed)
	}
}

func money(v int) map[string]any { return map[string]any{"value": v, "currency": "USD"} }

func cc(code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"code": code}}}
}

func clone(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

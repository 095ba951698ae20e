package datascope

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// One case per API and type: what leaves, and what it no longer carries.
type tableCase struct {
	name  string
	scope string
	res   func(t *testing.T) map[string]any
	keep  bool
	// check looks at the resource after Apply (only when kept); before is its state before.
	check func(t *testing.T, before, after map[string]any)
}

func TestDataScopeTable(t *testing.T) {
	var cases []tableCase
	cases = append(cases, patientAccessCases...)
	cases = append(cases, providerAccessEOBCases...)
	cases = append(cases, providerAccessClaimCases...)
	cases = append(cases, providerAccessOtherCases...)
	cases = append(cases, unknownScopeCases...)
	for _, tc := range cases {
		t.Run(tc.scope+"/"+tc.name, func(t *testing.T) {
			res := tc.res(t)
			before := clone(t, res)
			keep, changed := Apply(tc.scope, res, decisionTime)
			if keep != tc.keep {
				t.Fatalf("keep = %v, want %v", keep, tc.keep)
			}
			if !keep {
				return
			}
			if changed != !reflect.DeepEqual(before, clone(t, res)) {
				t.Errorf("changed = %v, but the resource %s", changed, map[bool]string{true: "did not change", false: "changed"}[changed])
			}
			if tc.scope == ProviderAccess || tc.scope == PayerToPayer {
				if paths := leakedMoney(res); len(paths) > 0 {
					t.Errorf("money left at %v", paths)
				}
				if changed && res["text"] != nil {
					t.Error("a changed resource kept its narrative")
				}
			}
			if tc.check != nil {
				tc.check(t, before, res)
			}
		})
	}
}

var patientAccessCases = []tableCase{
	{"claim with cost-sharing leaves as it is", PatientAccess, seedEOB("eob-member-01-2"), true, unchanged},
	{"pre-2016 claim too", PatientAccess, seedEOB("eob-member-01-1"), true, unchanged},
	{"drug prior auth withheld (CMS-0057-F: not drugs)", PatientAccess, seedEOB("priorauth-member-01-2"), false, unchanged},
	{"other prior auth leaves as it is", PatientAccess, seedEOB("priorauth-member-01-1"), true, unchanged},
	{"coverage keeps costToBeneficiary", PatientAccess, coverage, true, unchanged},
	{"PAS claim keeps its amounts", PatientAccess, fixture("pas-claim.json"), true, unchanged},
	{"invoice", PatientAccess, invoice, true, unchanged},
	{"empty scope is patient access", "", coverage, true, unchanged},
}

var providerAccessEOBCases = []tableCase{
	{"claim before 2016 withheld", ProviderAccess, seedEOB("eob-member-01-1"), false, nil},
	{"prior auth before 2016 withheld", ProviderAccess, seedEOB("priorauth-member-04-1"), false, nil},
	{"drug prior auth withheld", ProviderAccess, seedEOB("priorauth-member-01-2"), false, nil},
	{"pended drug prior auth withheld", ProviderAccess, seedEOB("priorauth-member-03-1"), false, nil},
	{"claim is non-financial", ProviderAccess, seedEOB("eob-member-01-2"), true, func(t *testing.T, _, after map[string]any) {
		if got := after["meta"].(map[string]any)["profile"]; !reflect.DeepEqual(got, []any{ProfessionalNonClinician}) {
			t.Errorf("meta.profile = %v", got)
		}
	}},
	{"approved prior auth keeps its decision, its submitted and eligible amounts and its PDex claim", ProviderAccess,
		seedEOB("priorauth-member-01-1"), true,
		func(t *testing.T, before, after map[string]any) {
			// Neither enrollee cost-sharing nor provider remittance (CMS-0057-F); PDex requires them.
			if !reflect.DeepEqual(after["total"], before["total"]) || !reflect.DeepEqual(after["item"], before["item"]) {
				t.Errorf("total or item changed: %v, %v", after["total"], after["item"])
			}
			adj := after["item"].([]any)[0].(map[string]any)["adjudication"].([]any)[0].(map[string]any)
			if !strings.Contains(mustMarshal(t, adj["extension"]), `"A1"`) {
				t.Errorf("reviewAction lost: %v", adj)
			}
			if !reflect.DeepEqual(after["meta"], before["meta"]) {
				t.Errorf("meta = %v, want the tags and the PDex profile", after["meta"])
			}
		}},
	{"denied prior auth keeps its reason", ProviderAccess, seedEOB("priorauth-member-02-2"), true,
		func(t *testing.T, _, after map[string]any) {
			if !strings.Contains(mustMarshal(t, after["item"]), `"denialreason"`) {
				t.Error("denial reason lost")
			}
		}},
	{"contained Coverage loses its cost-sharing", ProviderAccess, func(t *testing.T) map[string]any {
		eob := seedEOB("eob-member-01-2")(t)
		eob["contained"] = []any{coverage(t)}
		return eob
	}, true, func(t *testing.T, _, after map[string]any) {
		c := after["contained"].([]any)[0].(map[string]any)
		if c["costToBeneficiary"] != nil || c["text"] != nil {
			t.Errorf("contained Coverage = %v", c)
		}
	}},
	{"contained drug prior auth withholds its container", ProviderAccess, func(t *testing.T) map[string]any {
		eob := seedEOB("eob-member-01-2")(t)
		eob["contained"] = []any{drugClaim(t)}
		return eob
	}, false, nil},
}

var providerAccessClaimCases = []tableCase{
	{"PAS prior auth loses total, unitPrice, net, narrative", ProviderAccess, fixture("pas-claim.json"), true,
		func(t *testing.T, before, after map[string]any) {
			for _, k := range []string{"total", "text"} {
				if after[k] != nil {
					t.Errorf("%s left", k)
				}
			}
			it := after["item"].([]any)[0].(map[string]any)
			if it["quantity"] == nil || it["productOrService"] == nil || it["extension"] == nil {
				t.Errorf("item lost more than money: %v", it)
			}
			if !reflect.DeepEqual(after["meta"], before["meta"]) {
				t.Error("meta.profile changed: the PAS profile allows no total, unitPrice or net")
			}
		}},
	{"drug prior auth by NDC withheld", ProviderAccess, drugClaim, false, nil},
	{"drug prior auth by HCPCS J code withheld", ProviderAccess, claimWithLine(map[string]any{
		"productOrService": cc2("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "J1745")}), false, nil},
	{"drug prior auth by pharmacy service type withheld", ProviderAccess, claimWithLine(map[string]any{
		"category": cc2("https://codesystem.x12.org/005010/1365", "88")}), false, nil},
	{"drug prior auth by requested MedicationRequest withheld", ProviderAccess, claimWithLine(map[string]any{
		"extension": []any{map[string]any{"url": requestedServiceExt,
			"valueReference": map[string]any{"reference": "MedicationRequest/mr1"}}}}), false, nil},
	{"drug prior auth with a contained Medication withheld", ProviderAccess, func(t *testing.T) map[string]any {
		c := fixture("pas-claim.json")(t)
		c["contained"] = []any{map[string]any{"resourceType": "Medication", "id": "m"}}
		return c
	}, false, nil},
	{"non-drug HCPCS code kept", ProviderAccess, claimWithLine(map[string]any{
		"productOrService": cc2("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "G0154")}), true, nil},
	{"pharmacy claim (not a prior auth) kept", ProviderAccess, func(t *testing.T) map[string]any {
		c := drugClaim(t)
		c["use"] = "claim"
		return c
	}, true, nil},
	{"claim served before 2016 withheld", ProviderAccess, claimWithLine(map[string]any{"servicedDate": "2015-12-31"}), false, nil},
	{"claim with a service date nobody can read withheld", ProviderAccess, claimWithLine(map[string]any{"servicedDate": "2016-13-01"}), false, nil},
	{"claim with no date at all withheld", ProviderAccess, func(t *testing.T) map[string]any {
		c := fixture("pas-claim.json")(t)
		delete(c, "created")
		delete(c["item"].([]any)[0].(map[string]any), "servicedDate")
		return c
	}, false, nil},
	{"PAS decision loses payment, total, amounts and the money in its extensions", ProviderAccess, fixture("pas-claimresponse.json"), true,
		func(t *testing.T, _, after map[string]any) {
			for _, k := range []string{"payment", "total", "text"} {
				if after[k] != nil {
					t.Errorf("%s left", k)
				}
			}
			it := after["item"].([]any)[0].(map[string]any)
			adj := it["adjudication"].([]any)
			if len(adj) != 1 || adj[0].(map[string]any)["extension"] == nil {
				t.Errorf("adjudication = %v, want the reviewAction kept", adj)
			}
			s := mustMarshal(t, it["extension"])
			if strings.Contains(s, `"unitPrice"`) || !strings.Contains(s, `"productOrServiceCode"`) || !strings.Contains(s, `"quantity"`) {
				t.Errorf("itemAuthorizedDetail = %s, want only its unitPrice gone", s)
			}
		}},
	{"decision line with only an amount keeps its category", ProviderAccess, func(t *testing.T) map[string]any {
		r := fixture("pas-claimresponse.json")(t)
		delete(r["item"].([]any)[0].(map[string]any)["adjudication"].([]any)[0].(map[string]any), "extension")
		return r
	}, true, func(t *testing.T, _, after map[string]any) {
		adj := after["item"].([]any)[0].(map[string]any)["adjudication"].([]any)
		if len(adj) != 1 || adj[0].(map[string]any)["category"] == nil {
			t.Errorf("adjudication = %v, want one category (ClaimResponse.item.adjudication is 1..*)", adj)
		}
	}},
	{"pharmacy prior-auth decision withheld", ProviderAccess, func(t *testing.T) map[string]any {
		r := fixture("pas-claimresponse.json")(t)
		r["type"] = cc2(claimTypeSystem, "pharmacy")
		return r
	}, false, nil},
	{"decision from before 2016 withheld", ProviderAccess, func(t *testing.T) map[string]any {
		r := fixture("pas-claimresponse.json")(t)
		r["created"] = "2015-12-31T23:00:00-05:00"
		return r
	}, false, nil},
}

var providerAccessOtherCases = []tableCase{
	{"coverage loses costToBeneficiary, money extensions, narrative", ProviderAccess, coverage, true,
		func(t *testing.T, before, after map[string]any) {
			for k, v := range before {
				switch k {
				case "costToBeneficiary", "text", "extension":
					if after[k] != nil {
						t.Errorf("%s left", k)
					}
				default:
					if !reflect.DeepEqual(after[k], v) {
						t.Errorf("%s changed", k)
					}
				}
			}
		}},
	{"coverage without money unchanged, narrative kept", ProviderAccess, func(t *testing.T) map[string]any {
		c := coverage(t)
		delete(c, "costToBeneficiary")
		delete(c, "extension")
		return c
	}, true, unchanged},
	{"invoice withheld", ProviderAccess, invoice, false, nil},
	{"payment notice withheld", ProviderAccess, resource(`{"resourceType":"PaymentNotice","status":"active"}`), false, nil},
	{"payment reconciliation withheld", ProviderAccess, resource(`{"resourceType":"PaymentReconciliation","status":"active"}`), false, nil},
	{"patient loses a money extension at depth", ProviderAccess, resource(`{"resourceType":"Patient","id":"p",
		"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">income $52,000</div>"},
		"extension":[{"url":"https://x/household","extension":[{"url":"income","valueMoney":{"value":52000,"currency":"USD"}},
		{"url":"size","valueInteger":3}]},{"url":"https://x/balance","valueMoney":{"value":12,"currency":"USD"}}],
		"name":[{"family":"Doe"}]}`), true,
		func(t *testing.T, _, after map[string]any) {
			if got := mustMarshal(t, after["extension"]); got != `[{"extension":[{"url":"size","valueInteger":3}],"url":"https://x/household"}]` {
				t.Errorf("extension = %s", got)
			}
		}},
	{"money in a modifierExtension withholds", ProviderAccess, resource(`{"resourceType":"Observation","status":"final",
		"modifierExtension":[{"url":"https://x/m","valueMoney":{"value":1,"currency":"USD"}}]}`), false, nil},
	{"observation without money unchanged", ProviderAccess, resource(`{"resourceType":"Observation","status":"final",
		"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">ok</div>"},
		"valueQuantity":{"value":7,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}`), true, unchanged},
	{"Medication.amount is a Ratio, not money", ProviderAccess, resource(`{"resourceType":"Medication",
		"amount":{"numerator":{"value":100,"unit":"mg"},"denominator":{"value":1,"unit":"tablet"}}}`), true, unchanged},
	{"MoneyQuantity and a currency-less Money by name go", ProviderAccess, resource(`{"resourceType":"ChargeItem","status":"billed",
		"quantity":{"value":2},"priceOverride":{"value":10},"extension":[{"url":"https://x/q","valueQuantity":{"value":5,"system":"urn:iso:std:iso:4217","code":"USD"}}]}`), true,
		func(t *testing.T, _, after map[string]any) {
			if after["priceOverride"] != nil || after["extension"] != nil || after["quantity"] == nil {
				t.Errorf("ChargeItem = %v", after)
			}
		}},
	{"a drug prior auth inside Parameters withholds them", ProviderAccess, func(t *testing.T) map[string]any {
		return map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "x", "resource": drugClaim(t)}}}
	}, false, nil},
	{"nested deeper than can be checked withheld", ProviderAccess, func(t *testing.T) map[string]any {
		r := map[string]any{"resourceType": "Basic"}
		cur := r
		for range maxDepth + 1 {
			next := map[string]any{}
			cur["extension"] = []any{next}
			cur = next
		}
		return r
	}, false, nil},
}

var unknownScopeCases = []tableCase{
	{"patient withheld", "payer-exchange", resource(`{"resourceType":"Patient","id":"p"}`), false, nil},
	{"claim withheld", "no-such-api", seedEOB("eob-member-01-3"), false, nil},
}

func unchanged(t *testing.T, before, after map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		t.Errorf("changed:\n%s\n→\n%s", mustMarshal(t, before), mustMarshal(t, after))
	}
}

func seedEOB(id string) func(t *testing.T) map[string]any {
	return func(t *testing.T) map[string]any {
		eob, ok := seedEOBs(t)[id]
		if !ok {
			t.Fatalf("%s not in testdata", id)
		}
		return eob
	}
}

func fixture(name string) func(t *testing.T) map[string]any {
	return func(t *testing.T) map[string]any {
		raw, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, raw)
	}
}

func resource(s string) func(t *testing.T) map[string]any {
	return func(t *testing.T) map[string]any { return decode(t, []byte(s)) }
}

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// claimWithLine: the PAS prior auth with line fields replaced (dated 2026 unless line says otherwise).
func claimWithLine(line map[string]any) func(t *testing.T) map[string]any {
	return func(t *testing.T) map[string]any {
		c := fixture("pas-claim.json")(t)
		it := c["item"].([]any)[0].(map[string]any)
		it["servicedDate"] = "2026-05-10"
		for k, v := range line {
			it[k] = v
		}
		return c
	}
}

func drugClaim(t *testing.T) map[string]any {
	c := claimWithLine(map[string]any{"productOrService": cc2(ndcSystem, "0777-3105-02")})(t)
	c["id"] = "drug"
	return c
}

func coverage(t *testing.T) map[string]any {
	return decode(t, []byte(`{"resourceType":"Coverage","id":"coverage-member-01","status":"active",
		"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Copay $25</div>"},
		"extension":[{"url":"https://x/premium","valueMoney":{"value":410,"currency":"USD"}}],
		"beneficiary":{"reference":"Patient/member-01"},"payor":[{"reference":"Organization/payer-a"}],
		"class":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/coverage-class","code":"plan"}]},"value":"FW-HMO-GOLD"}],
		"costToBeneficiary":[
			{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/coverage-copay-type","code":"gpvisit"}]},"valueMoney":{"value":25,"currency":"USD"},
			 "exception":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/ex-coverage-financial-exception","code":"retired"}]}}]},
			{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/coverage-copay-type","code":"copaypct"}]},"valueQuantity":{"value":20,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}]}`))
}

func invoice(t *testing.T) map[string]any {
	return decode(t, []byte(`{"resourceType":"Invoice","status":"issued","subject":{"reference":"Patient/member-01"},
		"totalNet":{"value":40,"currency":"USD"},"paymentTerms":"Pay $40 within 30 days"}`))
}

func cc2(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

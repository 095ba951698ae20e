package datascope

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// leakedMoney is the "no money" invariant of Provider Access and Payer-to-Payer, told by its own rules rather
// than the package's: every money element of res (moneyPaths), except, when res itself is a prior auth
// (ExplanationOfBenefit, use preauthorization or predetermination), the amounts CMS-0057-F lets leave because
// they are neither enrollee cost-sharing nor provider remittance: the amount of an item, detail or subDetail
// adjudication, a header adjudication or a total whose category codings are all THO adjudication or PDex
// PriorAuthorizationValueCodes submitted or eligible, and unitPrice and net of item, detail and subDetail.
// Inside those amounts no more money may sit (an extension of the Money). A prior auth nested in another
// resource keeps no money at all.
func leakedMoney(res map[string]any) []string {
	var out []string
	pa := res["resourceType"] == "ExplanationOfBenefit" && (res["use"] == "preauthorization" || res["use"] == "predetermination")
	for k, v := range res {
		p := "$." + k
		switch {
		case pa && k == "item":
			out = append(out, paLines(v, p, "detail")...)
		case pa && (k == "adjudication" || k == "total"):
			out = append(out, paEntries(v, p)...)
		default:
			out = append(out, elementMoney(k, v, p)...)
		}
	}
	return out
}

var keptCategoriesOracle = []string{
	"http://terminology.hl7.org/CodeSystem/adjudication#submitted",
	"http://terminology.hl7.org/CodeSystem/adjudication#eligible",
	"http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PriorAuthorizationValueCodes#submitted",
	"http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PriorAuthorizationValueCodes#eligible",
}

func elementMoney(k string, v any, path string) []string {
	if len(k) > 5 && strings.HasSuffix(k, "Money") {
		return []string{path}
	}
	return moneyPaths(v, path)
}

// insideMoney: money below a kept Money, not the Money itself.
func insideMoney(v any, path string) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return moneyPaths(v, path)
	}
	var out []string
	for k, e := range m {
		out = append(out, elementMoney(k, e, path+"."+k)...)
	}
	return out
}

func paLines(v any, path, child string) []string {
	arr, ok := v.([]any)
	if !ok {
		return moneyPaths(v, path)
	}
	var out []string
	for _, e := range arr {
		line, ok := e.(map[string]any)
		if !ok {
			out = append(out, moneyPaths(e, path)...)
			continue
		}
		if _, c := line["currency"]; c {
			out = append(out, path)
		}
		for k, x := range line {
			p := path + "." + k
			switch {
			case k == "unitPrice" || k == "net":
				out = append(out, insideMoney(x, p)...)
			case k == "adjudication":
				out = append(out, paEntries(x, p)...)
			case k == child && child != "":
				out = append(out, paLines(x, p, map[string]string{"detail": "subDetail"}[child])...)
			default:
				out = append(out, elementMoney(k, x, p)...)
			}
		}
	}
	return out
}

func paEntries(v any, path string) []string {
	arr, ok := v.([]any)
	if !ok {
		return moneyPaths(v, path)
	}
	var out []string
	for _, e := range arr {
		entry, ok := e.(map[string]any)
		if !ok {
			out = append(out, moneyPaths(e, path)...)
			continue
		}
		if _, c := entry["currency"]; c {
			out = append(out, path)
		}
		kept := false
		if cc, ok := entry["category"].(map[string]any); ok {
			cs, _ := cc["coding"].([]any)
			kept = len(cs) > 0
			for _, c := range cs {
				cm, _ := c.(map[string]any)
				kept = kept && cm != nil && slices.Contains(keptCategoriesOracle, strings.Join([]string{str(cm["system"]), str(cm["code"])}, "#"))
			}
		}
		for k, x := range entry {
			if k == "amount" && kept {
				out = append(out, insideMoney(x, path+".amount")...)
			} else {
				out = append(out, elementMoney(k, x, path+"."+k)...)
			}
		}
	}
	return out
}

func str(v any) string { s, _ := v.(string); return s }

// A prior auth with one item adjudication of the given category and amount, plus the decision on a submitted
// adjudication, as PDex 2.x writes it.
func priorAuthWith(system, code string) map[string]any {
	eob := priorAuthEOB("complete", "A1")
	eob["meta"] = map[string]any{"profile": []any{pdexPriorAuth}}
	it := eob["item"].([]any)[0].(map[string]any)
	it["adjudication"] = append(it["adjudication"].([]any), map[string]any{"category": cc2(system, code), "amount": money(40)})
	return eob
}

const (
	thoAdjudication = "http://terminology.hl7.org/CodeSystem/adjudication"
	pdexAdjCS       = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PDexAdjudicationCS"
	pdexPAValues    = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PriorAuthorizationValueCodes"
)

// TestPriorAuthKeepsOnlyAmountsThatAreNeitherCostSharingNorRemittance: per adjudication category of PDex's
// PDexAdjudication (and a few outside it), whether the amount of a prior auth leaves for a provider or
// another payer. A removed category that is nothing but its amount goes whole; the PDex claim stays.
func TestPriorAuthKeepsOnlyAmountsThatAreNeitherCostSharingNorRemittance(t *testing.T) {
	for _, tc := range []struct {
		system, code string
		kept         bool
		why          string
	}{
		{thoAdjudication, "submitted", true, "what the provider asked for"},
		{thoAdjudication, "eligible", true, "the plan's determination of the eligible amount"},
		{thoAdjudication, "copay", false, "enrollee cost-sharing"},
		{thoAdjudication, "deductible", false, "enrollee cost-sharing"},
		{thoAdjudication, "benefit", false, "the amount payable: remittance"},
		{thoAdjudication, "tax", false, "not classified: fail closed"},
		{pdexAdjCS, "coinsurance", false, "enrollee cost-sharing"},
		{pdexAdjCS, "memberliability", false, "enrollee cost-sharing"},
		{pdexAdjCS, "paidbypatient", false, "enrollee cost-sharing"},
		{pdexAdjCS, "noncovered", false, "the member's share of what is not covered"},
		{pdexAdjCS, "paidtoprovider", false, "provider remittance"},
		{pdexAdjCS, "paidtopatient", false, "a payment (to the member)"},
		{pdexAdjCS, "priorpayerpaid", false, "a payment (by another payer)"},
		{pdexAdjCS, "discount", false, "not classified: fail closed"},
		{pdexAdjCS, "drugcost", false, "not classified: fail closed"},
		{pdexPAValues, "submitted", true, "the total's code for submitted, also in an adjudication"},
		{"http://example.org/adjudication", "submitted", false, "an unknown system: fail closed"},
	} {
		for _, scope := range []string{ProviderAccess, PayerToPayer} {
			t.Run(scope+"/"+tc.code+"/"+tc.system, func(t *testing.T) {
				eob := priorAuthWith(tc.system, tc.code)
				if keep, _ := Apply(scope, eob, decisionTime); !keep {
					t.Fatal("withheld")
				}
				if paths := leakedMoney(eob); len(paths) > 0 {
					t.Fatalf("money left at %v", paths)
				}
				adj := eob["item"].([]any)[0].(map[string]any)["adjudication"].([]any)
				if got := len(adj) == 2; got != tc.kept {
					t.Errorf("%s (%s): entry kept = %v, want %v: %s", tc.code, tc.why, got, tc.kept, mustMarshal(t, adj))
				}
				if tc.kept && adj[1].(map[string]any)["amount"] == nil {
					t.Errorf("%s: amount removed", tc.code)
				}
				if adj[0].(map[string]any)["amount"] == nil || !strings.Contains(mustMarshal(t, adj[0]), `"A1"`) {
					t.Errorf("the submitted amount or the decision went: %s", mustMarshal(t, adj[0]))
				}
				if !claimsPDex(eob) {
					t.Errorf("meta = %v: the PDex claim went", eob["meta"])
				}
			})
		}
	}
}

// TestPriorAuthTotalsPaymentAndLines: total keeps submitted and eligible, loses utilized and anything else;
// payment goes whole; item unitPrice and net stay, addItem's go; money in a kept amount's extension goes.
func TestPriorAuthTotalsPaymentAndLines(t *testing.T) {
	eob := priorAuthEOB("complete", "A1")
	eob["meta"] = map[string]any{"profile": []any{pdexPriorAuth + "|2.1.0"}}
	eob["total"] = []any{
		map[string]any{"category": cc2(pdexPAValues, "submitted"), "amount": money(100)},
		map[string]any{"category": cc2(pdexPAValues, "eligible"), "amount": money(80)},
		map[string]any{"category": cc2(pdexPAValues, "utilized"), "amount": money(20)},
		map[string]any{"category": cc2(thoAdjudication, "benefit"), "amount": money(60)},
		map[string]any{"category": map[string]any{"coding": []any{
			map[string]any{"system": pdexPAValues, "code": "eligible"},
			map[string]any{"system": pdexAdjCS, "code": "memberliability"}}}, "amount": money(5)},
	}
	eob["payment"] = map[string]any{"type": cc2("http://terminology.hl7.org/CodeSystem/ex-paymenttype", "complete"),
		"date": "2026-10-01", "amount": money(60)}
	it := eob["item"].([]any)[0].(map[string]any)
	it["unitPrice"] = money(100)
	net := money(100)
	net["extension"] = []any{map[string]any{"url": "http://example.org/copay", "valueMoney": money(10)}}
	it["net"] = net
	it["detail"] = []any{map[string]any{"sequence": 1, "net": money(50), "adjudication": []any{
		map[string]any{"category": cc2(thoAdjudication, "submitted"), "amount": money(50)},
		map[string]any{"category": cc2(thoAdjudication, "copay"), "amount": money(5)}}}}
	eob["addItem"] = []any{map[string]any{"productOrService": cc2("http://www.ama-assn.org/go/cpt", "70552"), "net": money(30)}}
	eob["benefitBalance"] = []any{map[string]any{"category": cc2("http://terminology.hl7.org/CodeSystem/ex-benefitcategory", "1"),
		"financial": []any{map[string]any{"type": cc2("http://terminology.hl7.org/CodeSystem/benefit-type", "deductible"), "usedMoney": money(500)}}}}

	if keep, changed := Apply(ProviderAccess, eob, decisionTime); !keep || !changed {
		t.Fatalf("keep %v, changed %v", keep, changed)
	}
	if paths := leakedMoney(eob); len(paths) > 0 {
		t.Fatalf("money left at %v", paths)
	}
	var totals []string
	for _, tot := range objects(eob["total"]) {
		totals = append(totals, codings(tot["category"])[0]["code"].(string))
	}
	if !slices.Equal(totals, []string{"submitted", "eligible"}) {
		t.Errorf("totals = %v, want submitted and eligible", totals)
	}
	if eob["payment"] != nil || strings.Contains(mustMarshal(t, eob["benefitBalance"]), "financial") {
		t.Errorf("payment or benefitBalance.financial left: %v, %v", eob["payment"], eob["benefitBalance"])
	}
	it = eob["item"].([]any)[0].(map[string]any)
	if it["unitPrice"] == nil || it["net"] == nil || it["net"].(map[string]any)["extension"] != nil {
		t.Errorf("item = %v: unitPrice and net stay, without the money in their extensions", it)
	}
	d := it["detail"].([]any)[0].(map[string]any)
	if d["net"] == nil || len(d["adjudication"].([]any)) != 1 {
		t.Errorf("detail = %v: net and the submitted adjudication stay, the copay goes", d)
	}
	if strings.Contains(mustMarshal(t, eob["addItem"]), "value") {
		t.Errorf("addItem kept its net: %v", eob["addItem"])
	}
	if !claimsPDex(eob) {
		t.Errorf("meta = %v: the PDex claim went", eob["meta"])
	}
}

// TestPriorAuthDropsPDexClaimOnlyWhenItCannotHold: a removed amount whose entry stays for the decision it
// carries leaves PDex's adjudicationamounttype slice without its amount (1..1): the claim goes, as before.
// A prior auth nested in another resource loses every amount and its claim.
func TestPriorAuthDropsPDexClaimOnlyWhenItCannotHold(t *testing.T) {
	eob := priorAuthEOB("complete", "A1")
	eob["meta"] = map[string]any{"profile": []any{pdexPriorAuth}}
	adj := eob["item"].([]any)[0].(map[string]any)["adjudication"].([]any)[0].(map[string]any)
	adj["category"] = cc2(pdexAdjCS, "memberliability")
	if keep, _ := Apply(ProviderAccess, eob, decisionTime); !keep {
		t.Fatal("withheld")
	}
	if claimsPDex(eob) || leakedMoney(eob) != nil || !strings.Contains(mustMarshal(t, eob), `"A1"`) {
		t.Errorf("decision on a member-liability entry: want the decision, no amount, no PDex claim: %s", mustMarshal(t, eob))
	}

	nested := priorAuthEOB("complete", "A1")
	nested["meta"] = map[string]any{"profile": []any{pdexPriorAuth}}
	b := map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{"name": "x", "resource": nested}}}
	if keep, _ := Apply(ProviderAccess, b, decisionTime); !keep {
		t.Fatal("withheld")
	}
	if paths := moneyPaths(b, "$"); len(paths) > 0 || claimsPDex(nested) {
		t.Errorf("nested prior auth: money at %v, meta %v", paths, nested["meta"])
	}
}

// TestFixturePriorAuthsStillClaimPDex: the Payer-to-Payer fixtures (test/payertopayer/testdata/members.json)
// and the seed's prior auths keep their pdex-priorauthorization claim, their submitted and eligible amounts
// and their decision under Provider Access and Payer-to-Payer.
func TestFixturePriorAuthsStillClaimPDex(t *testing.T) {
	raw, err := os.ReadFile("../../test/payertopayer/testdata/members.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	all := map[string]map[string]any{}
	var find func(v any)
	find = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if id, _ := x["id"].(string); id == "p2p-pa-exact-approved-2025" || id == "p2p-pa-exact-pended-2026" {
				all[id] = x
				return
			}
			for _, e := range x {
				find(e)
			}
		case []any:
			for _, e := range x {
				find(e)
			}
		}
	}
	find(doc)
	if len(all) != 2 {
		t.Fatalf("members.json: found %d of the 2 prior auths", len(all))
	}
	for _, id := range []string{"priorauth-member-01-1", "priorauth-member-02-1", "priorauth-member-05-1"} {
		all[id] = seedEOB(id)(t)
	}
	for id, src := range all {
		for _, scope := range []string{ProviderAccess, PayerToPayer} {
			t.Run(scope+"/"+id, func(t *testing.T) {
				res := clone(t, src)
				keep, _ := Apply(scope, res, decisionTime)
				if !keep {
					t.Fatal("withheld")
				}
				if !claimsPDex(res) {
					t.Errorf("meta = %v: no longer claims pdex-priorauthorization", res["meta"])
				}
				if paths := leakedMoney(res); len(paths) > 0 {
					t.Errorf("money left at %v", paths)
				}
				if !reflect.DeepEqual(res["total"], src["total"]) || !reflect.DeepEqual(res["item"], src["item"]) {
					t.Errorf("submitted/eligible amounts or the decision changed:\n%s\n→\n%s", mustMarshal(t, src), mustMarshal(t, res))
				}
			})
		}
	}
}

func claimsPDex(res map[string]any) bool {
	meta, _ := res["meta"].(map[string]any)
	ps, _ := meta["profile"].([]any)
	for _, p := range ps {
		if s, _ := p.(string); strings.Split(s, "|")[0] == pdexPriorAuth {
			return true
		}
	}
	return false
}

package datascope

import "strings"

// Prior authorizations (PDex pdex-priorauthorization, an ExplanationOfBenefit with use preauthorization or
// predetermination) for Provider Access and Payer-to-Payer. CMS-0057-F keeps "provider remittances and
// enrollee cost-sharing information" from providers and other payers, and nothing else of a prior
// authorization: its status, dates, the items and services approved and their quantity leave (FHIR-NOTES).
// PDex 2.0.0 and 2.1.0 require item.adjudication:adjudicationamounttype.amount and
// adjudication:adjudicationamounttype.amount (1..1) on every adjudication whose category is in PDexAdjudication,
// and total.amount (1..1): a prior auth keeps the amounts that are neither cost-sharing nor remittance, so
// that it still conforms and keeps its meta.profile claim. The rule per category is in the table at the top
// of table.go; the code keeps an amount only for a category in priorAuthKeptCategories (fail closed).

const (
	adjudicationSystem = "http://terminology.hl7.org/CodeSystem/adjudication"
	pdexAdjudicationCS = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PDexAdjudicationCS"
	pdexPAValueCodes   = "http://hl7.org/fhir/us/davinci-pdex/CodeSystem/PriorAuthorizationValueCodes"
)

// priorAuthKeptCategories: the (system, code) pairs whose amount a prior auth keeps. submitted is what the
// provider asked for (the request, as PAS Claim.item.net carried it); eligible is the plan's determination of
// the eligible (allowed) amount for what it approved. Neither is paid by the enrollee nor paid to anyone.
// PriorAuthorizationValueCodes (PDex total.category) names the same two; its third, utilized ("consumed to
// date"), is what claims against the authorization drew, i.e. what was paid: removed.
var priorAuthKeptCategories = map[string][]string{
	adjudicationSystem: {"submitted", "eligible"},
	pdexPAValueCodes:   {"submitted", "eligible"},
}

// pdexAmountCategories: PDex ValueSet PDexAdjudication (2.0.0 and 2.1.0), the categories of the slice
// adjudicationamounttype, whose amount is 1..1.
var pdexAmountCategories = map[string][]string{
	adjudicationSystem: {"submitted", "copay", "eligible", "deductible", "benefit"},
	pdexAdjudicationCS: {"coinsurance", "noncovered", "priorpayerpaid", "paidbypatient", "paidtopatient",
		"paidtoprovider", "memberliability", "discount", "drugcost"},
}

func isPriorAuthEOB(res map[string]any) bool {
	rt, _ := res["resourceType"].(string)
	return rt == "ExplanationOfBenefit" && isPriorAuth(res)
}

// priorAuthWithoutFinance removes from a prior authorization (ExplanationOfBenefit) the enrollee
// cost-sharing and the provider remittance: payment whole (the payment to the provider), and every amount
// stripPriorAuth does not keep. When what is left breaks PDex's amount slices (an adjudication of a
// PDexAdjudication category kept without its amount, because it carries a reviewAction, a reason or a
// value), the claim to pdex-priorauthorization goes, as it did for every prior auth before.
func priorAuthWithoutFinance(eob map[string]any) bool {
	changed := del(eob, "payment")
	changed = stripPriorAuth(eob) || changed
	if changed && !pdexAmountSlicesHold(eob) {
		dropPDexClaim(eob)
	}
	return changed
}

// stripPriorAuth is stripMoney for a prior auth: item (and its detail and subDetail) keeps unitPrice and net
// (the provider's charge as requested: a submitted amount), their adjudication, adjudication and total keep
// the amount of an entry whose category is kept (priorAuthKeptCategories); money anywhere else goes as
// stripMoney takes it, inside kept amounts too (an extension of a Money), and so do entries left with nothing
// to say. It reports whether eob changed.
func stripPriorAuth(eob map[string]any) bool {
	changed := false
	for k := range eob {
		switch k {
		case "item":
			changed = stripPriorAuthLines(eob, k, 1) || changed
		case "adjudication", "total":
			changed = stripPriorAuthEntries(eob, k, 1) || changed
		default:
			changed = stripKey(eob, k, 0) || changed
		}
	}
	return changed
}

var lineChild = map[string]string{"item": "detail", "detail": "subDetail"}

func stripPriorAuthLines(parent map[string]any, key string, depth int) bool {
	arr, ok := parent[key].([]any)
	if !ok {
		return stripKey(parent, key, depth)
	}
	changed := false
	kept := arr[:0:0]
	for _, e := range arr {
		line, ok := e.(map[string]any)
		if !ok {
			kept = append(kept, e)
			continue
		}
		if moneyShaped(line) {
			changed = true
			continue
		}
		lc := false
		for k, v := range line {
			switch {
			case k == "unitPrice" || k == "net":
				if m, ok := v.(map[string]any); ok {
					lc = stripMoney(m, depth+1) || lc
				} else {
					lc = stripKey(line, k, depth+1) || lc
				}
			case k == "adjudication":
				lc = stripPriorAuthEntries(line, k, depth+1) || lc
			case k == lineChild[key]:
				lc = stripPriorAuthLines(line, k, depth+1) || lc
			default:
				lc = stripKey(line, k, depth+1) || lc
			}
		}
		changed = changed || lc
		if lc && emptied(key, line) {
			continue
		}
		kept = append(kept, line)
	}
	return replaceArray(parent, key, kept, changed)
}

// stripPriorAuthEntries: adjudication or total entries. An entry of a kept category keeps its amount; any
// other loses it, and goes when nothing else is left to say (emptied: an adjudication keeps a reason, a
// value or a reviewAction; a total without its amount goes). Unlike stripArray, no entry is kept for its
// category alone: EOB's item.adjudication is 0..* and PDex's amount slice needs the amount.
func stripPriorAuthEntries(parent map[string]any, key string, depth int) bool {
	arr, ok := parent[key].([]any)
	if !ok {
		return stripKey(parent, key, depth)
	}
	changed := false
	kept := arr[:0:0]
	for _, e := range arr {
		entry, ok := e.(map[string]any)
		if !ok {
			kept = append(kept, e)
			continue
		}
		if moneyShaped(entry) {
			changed = true
			continue
		}
		ec := false
		keepAmount := hasOnlyCodings(entry["category"], priorAuthKeptCategories)
		for k, v := range entry {
			if m, ok := v.(map[string]any); ok && k == "amount" && keepAmount {
				ec = stripMoney(m, depth+1) || ec
			} else {
				ec = stripKey(entry, k, depth+1) || ec
			}
		}
		changed = changed || ec
		if ec && emptied(key, entry) {
			continue
		}
		kept = append(kept, entry)
	}
	return replaceArray(parent, key, kept, changed)
}

func replaceArray(parent map[string]any, key string, kept []any, changed bool) bool {
	switch {
	case !changed:
	case len(kept) == 0:
		delete(parent, key)
	default:
		parent[key] = kept
	}
	return changed
}

// hasOnlyCodings: cc has at least one coding, and every one is in set (a coding that also says copay makes
// the amount cost-sharing, whatever else it says).
func hasOnlyCodings(cc any, set map[string][]string) bool {
	cs := codings(cc)
	if len(cs) == 0 {
		return false
	}
	for _, c := range cs {
		if !inSet(c, set) {
			return false
		}
	}
	return true
}

func inSet(c map[string]any, set map[string][]string) bool {
	sys, _ := c["system"].(string)
	code, _ := c["code"].(string)
	for _, k := range set[sys] {
		if k == code {
			return true
		}
	}
	return false
}

// pdexAmountSlicesHold: no adjudication (header or item) whose category is in PDexAdjudication lacks its
// amount (pdex-priorauthorization item.adjudication:adjudicationamounttype.amount and
// adjudication:adjudicationamounttype.amount, 1..1).
func pdexAmountSlicesHold(eob map[string]any) bool {
	entries := objects(eob["adjudication"])
	for _, it := range objects(eob["item"]) {
		entries = append(entries, objects(it["adjudication"])...)
	}
	for _, a := range entries {
		inSlice := false
		for _, c := range codings(a["category"]) {
			inSlice = inSlice || inSet(c, pdexAmountCategories)
		}
		if _, ok := a["amount"].(map[string]any); inSlice && !ok {
			return false
		}
	}
	return true
}

// dropPDexClaim removes pdex-priorauthorization (any version) from meta.profile.
func dropPDexClaim(eob map[string]any) {
	meta, _ := eob["meta"].(map[string]any)
	profiles, _ := meta["profile"].([]any)
	kept := profiles[:0:0]
	for _, p := range profiles {
		if s, _ := p.(string); s == pdexPriorAuth || strings.HasPrefix(s, pdexPriorAuth+"|") {
			continue
		}
		kept = append(kept, p)
	}
	switch {
	case len(kept) == len(profiles):
	case len(kept) > 0:
		meta["profile"] = kept
	default:
		delete(meta, "profile")
		if len(meta) == 0 {
			delete(eob, "meta")
		}
	}
}

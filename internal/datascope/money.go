package datascope

import "strings"

// Money in R4 JSON, found by shape rather than by path, so that it is found wherever it sits: in any
// resource type, a contained resource, an extension at any depth, an element the profiles never mention.
//
//   - an object with a currency (Money, R4 §2.24.0.x: value + currency);
//   - a Quantity whose system is ISO 4217 (the MoneyQuantity profile);
//   - any element whose name ends in "Money": a choice of type Money (valueMoney in extensions and
//     Parameters, allowedMoney/usedMoney in benefits, …), whatever it holds;
//   - an element of type Money by name (amount, net, unitPrice, …) holding only what a Money may hold
//     (value, id, extension): a Money written without its currency. The shape test keeps Medication.amount
//     (a Ratio) and MedicationKnowledge.amount (a Quantity with a unit).
const iso4217 = "urn:iso:std:iso:4217"

// moneyNames: R4 elements of type Money.
var moneyNames = map[string]bool{
	"amount": true, "net": true, "unitPrice": true, "total": true, "totalNet": true, "totalGross": true,
	"priceOverride": true, "paymentAmount": true, "adjustment": true, "cost": true,
}

// isMoney says whether the element key: v is money.
func isMoney(key string, v any) bool {
	if len(key) > len("Money") && strings.HasSuffix(key, "Money") {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	if moneyShaped(m) {
		return true
	}
	if !moneyNames[key] {
		return false
	}
	for k := range m {
		if k != "value" && k != "_value" && k != "id" && k != "extension" {
			return false
		}
	}
	return true
}

// moneyShaped: a Money or a MoneyQuantity, whatever element holds it.
func moneyShaped(m map[string]any) bool {
	_, c := m["currency"]
	_, ce := m["_currency"]
	return c || ce || m["system"] == iso4217
}

// stripMoney removes every money element below m, at any depth, and then the entries money removal left
// with nothing to say (emptied). It reports whether m changed.
func stripMoney(m map[string]any, depth int) bool {
	changed := false
	for k := range m {
		changed = stripKey(m, k, depth) || changed
	}
	return changed
}

// stripKey is stripMoney for the one element m[k].
func stripKey(m map[string]any, k string, depth int) bool {
	v := m[k]
	if isMoney(k, v) {
		delete(m, k)
		return true
	}
	switch t := v.(type) {
	case map[string]any:
		if stripMoney(t, depth+1) {
			if emptied(k, t) {
				delete(m, k)
			}
			return true
		}
	case []any:
		kept, ch := stripArray(k, t, depth)
		if !ch {
			return false
		}
		if len(kept) == 0 {
			delete(m, k)
		} else {
			m[k] = kept
		}
		return true
	}
	return false
}

func stripArray(key string, arr []any, depth int) ([]any, bool) {
	changed := false
	kept := arr[:0:0]
	var lastEmptied map[string]any
	for _, e := range arr {
		em, ok := e.(map[string]any)
		if !ok {
			kept = append(kept, e)
			continue
		}
		if moneyShaped(em) {
			changed = true
			continue
		}
		if stripMoney(em, depth+1) {
			changed = true
			if emptied(key, em) {
				lastEmptied = em
				continue
			}
		}
		kept = append(kept, em)
	}
	if len(kept) == 0 && key == "adjudication" && lastEmptied != nil && lastEmptied["category"] != nil {
		// ClaimResponse.item.adjudication and .addItem.adjudication are 1..*: a line keeps one adjudication
		// category (without its amount) rather than become invalid. It says only that the line was judged.
		kept = append(kept, lastEmptied)
	}
	return kept, changed
}

// emptied says whether an element (under key) that lost money has nothing left to say, so it goes too.
func emptied(key string, m map[string]any) bool {
	switch key {
	case "extension", "modifierExtension":
		// ext-1: an extension has a value or extensions; one whose valueMoney went is gone.
		return !hasKeyPrefix(m, "value") && m["extension"] == nil
	case "adjudication":
		// Kept for what it says besides an amount: a reason (denial, adjustment), a value (allowed units), a
		// decision in an extension (PAS/PDex reviewAction). An amount category with its amount gone would
		// only tell that such an amount exists.
		return m["reason"] == nil && m["value"] == nil && m["extension"] == nil && m["modifierExtension"] == nil
	case "total":
		// ExplanationOfBenefit.total and ClaimResponse.total: category + amount (1..1).
		return m["amount"] == nil
	case "financial", "benefit":
		// EOB.benefitBalance.financial, CoverageEligibilityResponse.insurance.item.benefit: type + allowed[x]
		// and used[x]; left with counts they stay.
		return !hasKeyPrefix(m, "allowed") && !hasKeyPrefix(m, "used")
	case "costToBeneficiary":
		return !hasKeyPrefix(m, "value") // value[x] 1..1
	}
	for k := range m {
		if k != "id" {
			return false
		}
	}
	return true
}

func hasKeyPrefix(m map[string]any, prefix string) bool {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// modifierMoney reports whether money sits anywhere inside a modifierExtension below v.
func modifierMoney(v any, inModifier bool) bool {
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			if modifierMoney(e, inModifier) {
				return true
			}
		}
	case map[string]any:
		if inModifier && moneyShaped(t) {
			return true
		}
		for k, e := range t {
			if inModifier && isMoney(k, e) {
				return true
			}
			if modifierMoney(e, inModifier || k == "modifierExtension") {
				return true
			}
		}
	}
	return false
}

// depthOver reports whether v nests deeper than max objects and arrays.
func depthOver(v any, max int) bool {
	if max < 0 {
		return true
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			if depthOver(e, max-1) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if depthOver(e, max-1) {
				return true
			}
		}
	}
	return false
}

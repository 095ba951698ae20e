//go:build e2e

package adversarial

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// check returns what is wrong with an answer to p whatever the case expected: a 2xx answer that is not FHIR
// JSON or that leaks (leaks), or a refusal that is not an OperationOutcome. p must be prepared.
func check(p *principal, a answer) []string {
	switch {
	case a.method == http.MethodHead || a.status == http.StatusNotModified || a.status == http.StatusNoContent:
		return leaks(p, a)
	case a.status >= 200 && a.status < 300 && strings.Contains(a.header.Get("Content-Type"), "ndjson"):
		// A bulk export file (Binary read): every line a resource, each checked like an answer of its own.
		out := leaks(p, a)
		for i, line := range bytes.Split(a.body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if resourceType(line) == "" {
				out = append(out, fmt.Sprintf("NDJSON line %d is not a FHIR resource: %.200s", i+1, line))
				continue
			}
			out = append(out, leaks(p, answer{mode: a.mode, method: a.method, status: a.status, header: http.Header{}, body: line})...)
		}
		return out
	case a.status >= 200 && a.status < 300:
		if !strings.Contains(a.header.Get("Content-Type"), "json") || resourceType(a.body) == "" {
			return []string{fmt.Sprintf("2xx answer is not FHIR JSON (Content-Type %q): %.200s", a.header.Get("Content-Type"), a.body)}
		}
		return leaks(p, a)
	default:
		if !isOutcome(a.body) {
			return []string{fmt.Sprintf("%d answer is not an OperationOutcome (Content-Type %q): %.200s", a.status, a.header.Get("Content-Type"), a.body)}
		}
	}
	return nil
}

// leaks lists what an answer to p carries that p may never receive:
//   - a marker (buildMarkers) anywhere in the headers or the body; the searchset's self link is left out,
//     as it only repeats the request;
//   - a resource of a type p's scopes do not grant, or one the API does not serve (Provenance, Task,
//     PaymentReconciliation, Group, Consent, …), at any level: entry, nested Bundle, contained;
//   - a resource outside a granular scope's category;
//   - for providers and other payers, money anywhere (money).
func leaks(p *principal, a answer) []string {
	var out []string
	var hdr strings.Builder
	for k, vs := range a.header {
		for _, v := range vs {
			fmt.Fprintf(&hdr, "%s: %s\n", k, v)
		}
	}
	for _, m := range p.forbid.find(hdr.String()) {
		out = append(out, "header carries "+m)
	}
	if len(bytes.TrimSpace(a.body)) == 0 {
		return out
	}
	for _, m := range p.forbid.find(withoutSelfLink(a.body)) {
		out = append(out, "body carries "+m)
	}
	served := groundTruthSurface(p.api)
	for _, r := range resources(a.body) {
		rt, _ := r["resourceType"].(string)
		name := fmt.Sprintf("%s/%v", rt, r["id"])
		switch {
		case rt == "Bundle" || rt == "OperationOutcome" || rt == "CapabilityStatement" || rt == "Parameters":
			continue
		case served != nil && served[rt] == nil && !publicTypes[rt]:
			out = append(out, fmt.Sprintf("%s: the API does not serve %s", name, rt))
		case p.types != nil && !slices.Contains(p.types, rt) && !publicTypes[rt]:
			out = append(out, fmt.Sprintf("%s: the token grants no %s (%v)", name, rt, p.types))
		}
		if code, ok := p.categories[rt]; ok {
			// What HAPI holds decides, not what the answer shows: _elements may have trimmed the category.
			held := r
			if truthVal != nil && truthVal.byID[name] != nil {
				held = truthVal.byID[name].resource
			}
			if !slices.Contains(categoryCodes(held), code) {
				out = append(out, fmt.Sprintf("%s: category %v is outside the granular scope (%s)", name, categoryCodes(held), code))
			}
		}
		if p.provider || p.payer {
			who := "provider"
			if p.payer {
				who = "payer"
			}
			// Whether it is a prior auth is what HAPI holds: _elements may have trimmed use.
			held := r
			if truthVal != nil && truthVal.byID[name] != nil {
				held = truthVal.byID[name].resource
			}
			priorAuth := isPriorAuth(held)
			kept := priorAuthAmounts(r, rt, priorAuth)
			for _, path := range moneyOf(r, rt, priorAuth) {
				if !kept[path] {
					out = append(out, fmt.Sprintf("%s: money reaches a %s at %s", name, who, path))
				}
			}
		}
	}
	return out
}

// groundTruthSurface is the API's served types (its CapabilityStatement), nil before the truth is loaded.
func groundTruthSurface(api string) map[string][]searchParam {
	if truthVal == nil {
		return nil
	}
	return truthVal.surface[api]
}

// withoutSelfLink is the body as text, without the root Bundle's self link.
func withoutSelfLink(b []byte) string {
	var root map[string]any
	if json.Unmarshal(b, &root) != nil || root["resourceType"] != "Bundle" {
		return string(b)
	}
	var keep []any
	for _, l := range asObjects(root["link"]) {
		if l["relation"] != "self" {
			keep = append(keep, l)
		}
	}
	root["link"] = keep
	s, _ := json.Marshal(root)
	return string(s)
}

// moneyKeys hold money wherever they appear (FHIR R4 Money and the elements the CARIN BB non-financial
// profiles set to max 0).
var moneyKeys = map[string]bool{"valueMoney": true, "costToBeneficiary": true, "unitPrice": true, "net": true,
	"currency": true, "financial": true, "amountMoney": true}

// money returns the paths in r (contained resources and extensions included) that carry money: a Money
// value ("currency"), a money element, an amount under adjudication, payment or total.
func money(r any, path string) []string {
	return moneyOf(r, path, isPriorAuth(r))
}

// moneyOf is money for a resource known to be a prior auth or not (what HAPI holds decides; an answer
// trimmed by _elements may have lost use): a prior auth's totals are judged one by one.
func moneyOf(r any, path string, priorAuth bool) []string {
	var out []string
	var walk func(v any, path string, under string)
	walk = func(v any, path string, under string) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				p := path + "." + k
				switch {
				case moneyKeys[k]:
					out = append(out, p)
					continue
				case k == "amount" && (under == "adjudication" || under == "payment" || under == "total"):
					out = append(out, p)
					continue
				case k == "adjustment" && under == "payment":
					out = append(out, p)
					continue
				case k == "total" && path == r.(map[string]any)["resourceType"] && !priorAuth:
					if _, isArray := x[k].([]any); isArray {
						out = append(out, p)
						continue
					}
				}
				next := under
				if k == "adjudication" || k == "payment" || k == "total" {
					next = k
				}
				walk(x[k], p, next)
			}
		case []any:
			for i, e := range x {
				walk(e, fmt.Sprintf("%s[%d]", path, i), under)
			}
		}
	}
	walk(r, path, "")
	return out
}

// isPriorAuth: r is a prior authorization (an ExplanationOfBenefit whose use is preauthorization or
// predetermination, as PDex pdex-priorauthorization has it).
func isPriorAuth(r any) bool {
	m, _ := r.(map[string]any)
	return m["resourceType"] == "ExplanationOfBenefit" && (m["use"] == "preauthorization" || m["use"] == "predetermination")
}

// priorAuthAmounts are the paths of money (as money names them) that a prior authorization keeps for
// providers and payers: the amounts of adjudications and totals whose category is only submitted or eligible
// (what was asked for, what the plan found eligible: neither enrollee cost-sharing nor provider remittance,
// and required by PDex pdex-priorauthorization), and each line's unitPrice and net. Every other amount on it
// is still money that must not reach them (internal/datascope priorauth.go).
func priorAuthAmounts(r any, rt string, priorAuth bool) map[string]bool {
	kept := map[string]bool{}
	if !priorAuth {
		return kept
	}
	m := r.(map[string]any)
	permitted := func(category any) bool {
		cc, _ := category.(map[string]any)
		codes := 0
		for _, c := range asObjects(cc["coding"]) {
			if c["code"] != "submitted" && c["code"] != "eligible" {
				return false
			}
			codes++
		}
		return codes > 0
	}
	// Raw arrays, not asObjects: an index must be the one money's path names.
	each := func(list any, do func(i int, o map[string]any)) {
		arr, _ := list.([]any)
		for i, x := range arr {
			if o, ok := x.(map[string]any); ok {
				do(i, o)
			}
		}
	}
	each(m["total"], func(i int, t map[string]any) {
		if permitted(t["category"]) {
			kept[fmt.Sprintf("%s.total[%d].amount", rt, i)] = true
		}
	})
	var lines func(list any, path string)
	lines = func(list any, path string) {
		each(list, func(i int, it map[string]any) {
			p := fmt.Sprintf("%s[%d]", path, i)
			kept[p+".unitPrice"], kept[p+".net"] = true, true
			each(it["adjudication"], func(j int, a map[string]any) {
				if permitted(a["category"]) {
					kept[fmt.Sprintf("%s.adjudication[%d].amount", p, j)] = true
				}
			})
			lines(it["detail"], p+".detail")
			lines(it["subDetail"], p+".subDetail")
		})
	}
	lines(m["item"], rt+".item")
	return kept
}

func resourceType(b []byte) string {
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(b, &r) != nil {
		return ""
	}
	return r.ResourceType
}

func isOutcome(b []byte) bool { return resourceType(b) == "OperationOutcome" }

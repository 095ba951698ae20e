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
			for _, path := range money(r, rt) {
				out = append(out, fmt.Sprintf("%s: money reaches a %s at %s", name, who, path))
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
				case k == "total" && path == r.(map[string]any)["resourceType"]:
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

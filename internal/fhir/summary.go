package fhir

import "strings"

//go:generate go run ./gen/summary -out summary_elements_gen.go

// Summary forms of _summary (R4 §3.1.1.5.8) that need the definitions of each type.
const (
	SummaryTrue = "true" // the elements marked isSummary
	SummaryText = "text" // text, id, meta and the mandatory top-level elements
)

// Summarize trims a decoded resource in place to its summary form and reports whether it removed anything.
// resourceType and modifierExtension always stay (a reader must see what changes the meaning of what is
// left). A type R4 does not define keeps only those, id and meta.
func Summarize(res map[string]any, form string) bool {
	rt, _ := res["resourceType"].(string)
	var keep []string
	switch form {
	case SummaryTrue:
		keep = summaryElements[rt]
	case SummaryText:
		keep = append([]string{"text", "id", "meta"}, mandatoryElements[rt]...)
	default:
		return false
	}
	changed := false
	for k := range res {
		if k == "resourceType" || k == "modifierExtension" || k == "id" || k == "meta" || kept(k, keep) {
			continue
		}
		delete(res, k)
		changed = true
	}
	return changed
}

// kept: the JSON member name is one of the element names, a choice "value[x]" matching valueQuantity and
// the like (R4 JSON §1.1.2: the type name follows the element name, capitalised), and a primitive's
// extension member "_name" following its element.
func kept(member string, names []string) bool {
	member = strings.TrimPrefix(member, "_")
	for _, n := range names {
		if n == member {
			return true
		}
		if base, ok := strings.CutSuffix(n, "[x]"); ok && len(member) > len(base) && strings.HasPrefix(member, base) {
			if c := member[len(base)]; c >= 'A' && c <= 'Z' {
				return true
			}
		}
	}
	return false
}

package decision

import (
	"regexp"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/internal/fhir"
	"github.com/fhirwall/fhirwall/internal/policy"
)

// reveals applies Invariant 2 to one resource about to leave under a compartment: the token's scopes must
// grant its own type, and it must match their granular constraints, whatever brought it (the primary result,
// _include, _revinclude, :iterate, a page, a history version, an export line); and a type outside the Patient
// compartment, whose patient linkage fhirwall does not know, leaves only when the API names it public
// reference data.
func (e *enforcer) reveals(resourceType string, res map[string]any, inCompartment bool) bool {
	if !inCompartment && !e.public[resourceType] {
		return false
	}
	c, ok := e.d.Policy.Obligations.Reveals(resourceType)
	return ok && matchesConstraints(res, c)
}

// dropContained removes the contained resources the token may not see (a contained Observation under a
// Patient.rs-only token). Whose they are was already judged with their container (fhir.PatientsOf counts
// them), so only the type is judged here. It reports whether it removed any.
func (e *enforcer) dropContained(res map[string]any) bool {
	contained, ok := res["contained"].([]any)
	if !ok {
		return false
	}
	kept := contained[:0:0]
	for _, v := range contained {
		c, _ := v.(map[string]any)
		rt, _ := c["resourceType"].(string)
		_, inCompartment := fhir.PatientsOf(c)
		if c != nil && rt != "" && e.reveals(rt, c, inCompartment) {
			kept = append(kept, v)
		}
	}
	if len(kept) == len(contained) {
		return false
	}
	e.removed += len(contained) - len(kept)
	if len(kept) == 0 {
		delete(res, "contained")
	} else {
		res["contained"] = kept
	}
	return true
}

// matchesConstraints: the resource matches one granted value of every constrained parameter (SMART 2.x
// §Finer-grained resource constraints). fhirwall knows how to read category, code, type and status from a
// resource; a scope constraining any other parameter lets nothing through rather than guess.
func matchesConstraints(res map[string]any, c policy.Constraints) bool {
	for param, values := range c {
		var ok bool
		switch param {
		case "category", "code", "type":
			ok = codeableMatches(res[param], values)
		case "status":
			s, _ := res["status"].(string)
			ok = s != "" && slices.Contains(values, s)
		}
		if !ok {
			return false
		}
	}
	return true
}

// codeableMatches: one coding of the CodeableConcept (or list of them) matches one token value: "code",
// "system|code" or "|code" (R4 §3.1.1.5.7 token search).
func codeableMatches(v any, values []string) bool {
	var concepts []any
	switch t := v.(type) {
	case []any:
		concepts = t
	case map[string]any:
		concepts = []any{t}
	}
	for _, cc := range concepts {
		m, _ := cc.(map[string]any)
		codings, _ := m["coding"].([]any)
		for _, cd := range codings {
			coding, _ := cd.(map[string]any)
			system, _ := coding["system"].(string)
			code, _ := coding["code"].(string)
			if code == "" {
				continue
			}
			for _, want := range values {
				wantSystem, wantCode, hasSystem := strings.Cut(want, "|")
				if !hasSystem {
					wantCode, wantSystem = want, ""
				}
				if code == wantCode && (!hasSystem || wantSystem == system) {
					return true
				}
			}
		}
	}
	return false
}

// referenceLike finds what looks like a resource reference in free text ("Patient/member-02",
// "Observation/obs-9/_history/2").
var referenceLike = regexp.MustCompile(`\b[A-Z][A-Za-z]{2,63}/[A-Za-z0-9\-.]{1,64}`)

// scrubOutcome removes from an upstream OperationOutcome's issues any free text that names a resource: the
// FHIR server writes ids into diagnostics ("Resource Patient/member-02 has no version 3"), which under a
// compartment could name what the caller may not see. Severity and code stay. It reports whether it changed
// anything.
func scrubOutcome(oo map[string]any) bool {
	issues, _ := oo["issue"].([]any)
	changed := false
	for _, v := range issues {
		issue, _ := v.(map[string]any)
		if issue == nil {
			continue
		}
		for _, k := range []string{"diagnostics", "location", "expression", "details"} {
			if val, ok := issue[k]; ok && mentionsReference(val) {
				delete(issue, k)
				changed = true
			}
		}
	}
	if _, ok := oo["text"]; ok { // a narrative may repeat the diagnostics
		delete(oo, "text")
		changed = true
	}
	return changed
}

func mentionsReference(v any) bool {
	switch t := v.(type) {
	case string:
		return referenceLike.MatchString(t)
	case []any:
		for _, x := range t {
			if mentionsReference(x) {
				return true
			}
		}
	case map[string]any:
		for _, x := range t {
			if mentionsReference(x) {
				return true
			}
		}
	}
	return false
}

// Package datascope applies an API's data scope (CMS-0057-F: which resources an API may return, and with
// which elements) to the resources of an upstream answer.
package datascope

import (
	"time"
)

// Scopes, as the policy names them in its obligations (policies/*.rego "data_scope").
const (
	PatientAccess  = "patient-access"
	ProviderAccess = "provider-access"
	PayerToPayer   = "payer-to-payer"
)

// ServiceCutoff: CMS-0057-F makes claims with dates of service on or after 2016-01-01 available (FHIR-NOTES,
// "time window"); earlier ones are not returned.
const ServiceCutoff = "2016-01-01"

// maxDepth bounds the nesting a scope that rewrites resources will walk; anything deeper is withheld
// (fhir.PatientsOf stops at the same depth).
const maxDepth = 64

// Apply applies the named scope to one decoded resource: keep is false when the resource must not leave,
// changed is true when it was modified in place (the caller re-encodes). now is the time of the decision,
// for windows relative to it (Payer-to-Payer's five years).
//
// The empty scope leaves every resource as it is; PatientAccess too but for drug prior auths: members see
// their own cost-sharing. A
// scope with no column in the table withholds everything: returning data under rules nobody wrote is the
// leak this package exists to stop. Rules are in table.go.
func Apply(scope string, resource map[string]any, now time.Time) (keep, changed bool) {
	s, ok := scopes[scope]
	if !ok {
		return false, false
	}
	if s.passAll {
		return true, false
	}
	withheld, nested := s.withheld(resource, now)
	if withheld {
		return false, false
	}
	return true, s.transform(resource, nested)
}

// withheld: a row of the table, or one of the scope's rules for every resource, withholds resource or a
// resource nested in it (contained, Parameters.parameter.resource, …). A nested resource that may not
// leave withholds its container: cutting it out would leave references ("#id") to nothing. nested reports
// whether the walk found a resource below res, for transform.
func (s *scope) withheld(res map[string]any, now time.Time) (withheld, nested bool) {
	for _, w := range s.everywhere.withhold {
		if w.when(res, now) {
			return true, false
		}
	}
	found := 0
	eachResource(res, func(r map[string]any) {
		found++
		for _, w := range s.row(r).withhold {
			withheld = withheld || w.when(r, now)
		}
	})
	return withheld, found > 1
}

// removes reports whether any row or the scope's every-resource rule removes anything.
func (s *scope) removes() bool {
	if len(s.everywhere.remove) > 0 || len(s.other.remove) > 0 {
		return true
	}
	for _, r := range s.types {
		if len(r.remove) > 0 {
			return true
		}
	}
	return false
}

// transform runs the rows' removals on res and every resource nested in it, then the scope's removals for
// every resource over the whole tree, then drops the narrative of a resource that changed. nested is
// withheld's finding: without a resource below res (the usual claim) the rows' removals and the narrative
// concern res alone, and the tree is not walked again. No removal adds an element holding a resource (they
// delete, filter arrays and set meta.profile), so what withheld found still holds; walk_ref_test.go holds
// this to the walking version (FuzzApplyMatchesWalk).
func (s *scope) transform(res map[string]any, nested bool) bool {
	if !s.removes() {
		return false // only withholds (patient-access): no second walk of every resource that leaves
	}
	changed := false
	if nested {
		top := true // eachResource calls with res first
		eachResource(res, func(r map[string]any) {
			for _, rm := range s.row(r).remove {
				changed = rm.do(r, top) || changed
			}
			top = false
		})
	} else {
		for _, rm := range s.row(res).remove {
			changed = rm.do(res, true) || changed
		}
	}
	for _, rm := range s.everywhere.remove {
		changed = rm.do(res, true) || changed
	}
	if changed && s.dropNarrative {
		if nested {
			eachResource(res, func(r map[string]any) { delete(r, "text") })
		} else {
			delete(res, "text")
		}
	}
	return changed
}

func (s *scope) row(res map[string]any) rule {
	rt, _ := res["resourceType"].(string)
	if r, ok := s.types[rt]; ok {
		return r
	}
	return s.other
}

// eachResource calls fn with res and every resource below it (any object with a resourceType: contained
// resources, Parameters.parameter.resource, Bundle.entry.resource), outermost first. It stops maxDepth
// levels down; the scopes that rewrite withhold anything deeper (tooDeep) before they get here.
func eachResource(res map[string]any, fn func(map[string]any)) { walkResources(res, fn, 0) }

func walkResources(res map[string]any, fn func(map[string]any), depth int) {
	fn(res)
	for k, v := range res {
		if k != "resourceType" {
			nestedResources(v, fn, depth+1)
		}
	}
}

func nestedResources(v any, fn func(map[string]any), depth int) {
	if depth > maxDepth {
		return
	}
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			nestedResources(e, fn, depth+1)
		}
	case map[string]any:
		if _, ok := t["resourceType"].(string); ok {
			walkResources(t, fn, depth)
			return
		}
		for _, e := range t {
			nestedResources(e, fn, depth+1)
		}
	}
}

func objects(v any) []map[string]any {
	arr, _ := v.([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, e := range arr {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func codings(cc any) []map[string]any {
	m, _ := cc.(map[string]any)
	return objects(m["coding"])
}

func hasCoding(cc any, system, code string) bool {
	for _, c := range codings(cc) {
		if c["system"] == system && c["code"] == code {
			return true
		}
	}
	return false
}

func hasSystem(cc any, system string) bool {
	for _, c := range codings(cc) {
		if c["system"] == system {
			return true
		}
	}
	return false
}

func del(m map[string]any, key string) bool {
	if _, ok := m[key]; !ok {
		return false
	}
	delete(m, key)
	return true
}

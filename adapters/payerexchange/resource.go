package payerexchange

import (
	"strings"
)

// Small readers over decoded FHIR JSON: a value of an unexpected type reads as absent.

type object = map[string]any

func obj(v any) object {
	o, _ := v.(map[string]any)
	return o
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// codings are the codings of a CodeableConcept.
func codings(cc any) []object {
	var out []object
	for _, c := range list(obj(cc)["coding"]) {
		if o := obj(c); o != nil {
			out = append(out, o)
		}
	}
	return out
}

// hasCoding: the CodeableConcept has system|code.
func hasCoding(cc any, system, code string) bool {
	for _, c := range codings(cc) {
		if str(c["system"]) == system && str(c["code"]) == code {
			return true
		}
	}
	return false
}

// hasCodingIn: one of the concepts in a list has system|code.
func hasCodingIn(ccs any, system, code string) bool {
	for _, cc := range list(ccs) {
		if hasCoding(cc, system, code) {
			return true
		}
	}
	return false
}

// fold compares names and codes as people type them: case and surrounding space do not matter.
func fold(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

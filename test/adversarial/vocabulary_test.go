//go:build e2e

package adversarial

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fhirwall/fhirwall/test/stackenv"
)

// modifiers are the FHIR R4 search modifiers (§3.1.1.5.5) for each parameter type, plus chains for
// references and a few modifiers R4 does not define for the type: every one must be served without
// crossing patients, or refused with an OperationOutcome.
var modifiers = map[string][]string{
	"token":     {"", ":not", ":missing", ":text", ":in", ":not-in", ":below", ":above", ":of-type", ":code-text", ":exact", ":contains"},
	"string":    {"", ":exact", ":contains", ":missing", ":text", ":not"},
	"date":      {"", ":missing", ":not", ":exact"},
	"reference": {"", ":missing", ":Patient", ":Group", ":identifier", ":text", ":not", ":above", ":below", ".name", ".identifier", ":Patient.family", ":Patient._id", ":Patient.identifier"},
	"uri":       {"", ":missing", ":below", ":above", ":not"},
	"number":    {"", ":missing", ":not"},
	"quantity":  {"", ":missing", ":not"},
	"composite": {"", ":missing"},
	"special":   {"", ":missing"},
}

// vocabulary gives values for a principal's searches: its own patient's and another patient's, read from
// the truth, so that each probe both works for the caller and tries to reach someone else.
type vocabulary struct {
	tr                        *truth
	self, other               string // patient ids
	otherFamily, otherGiven   string
	otherMemberID, selfFamily string
}

func newVocabulary(tr *truth, self, other string) vocabulary {
	v := vocabulary{tr: tr, self: self, other: other}
	name := func(id string) (family, given string) {
		for _, n := range asObjects(tr.byID["Patient/"+id].resource["name"]) {
			family = fmt.Sprint(n["family"])
			if g := asStrings(n["given"]); len(g) > 0 {
				given = g[0]
			}
		}
		return
	}
	v.otherFamily, v.otherGiven = name(other)
	v.selfFamily, _ = name(self)
	if ids := identifierValues(tr.byID["Patient/"+other].resource); len(ids) > 0 {
		v.otherMemberID = ids[0]
	}
	return v
}

// resourceID returns the id of one resource of typ naming patient, or a made-up one.
func (v vocabulary) resourceID(typ, patient string) string {
	if typ == "Patient" {
		return patient
	}
	if hs := v.tr.of(typ, patient); len(hs) > 0 {
		return hs[0].id
	}
	return strings.ToLower(typ) + "-" + patient
}

// values returns values for parameter sp of typ under modifier mod (the first is the sharpest).
func (v vocabulary) values(typ string, sp searchParam, mod string) []string {
	if sp.typ == "reference" || (sp.typ == "" && isPatientParam(sp.name)) {
		switch mod {
		case "":
			return []string{v.other, "Patient/" + v.other, v.self + "," + v.other, stackenv.HAPIURL + "/Patient/" + v.other, v.self}
		case ":missing":
			return []string{"true", "false"}
		case ":Group":
			return []string{"attribution-org-a"}
		case ":identifier", ":Patient.identifier", ".identifier":
			return []string{"https://fhirwall.example/member-id|" + v.otherMemberID, v.otherMemberID}
		case ".name", ":Patient.family", ":text":
			return []string{v.otherFamily, v.otherGiven}
		default:
			return []string{v.other, v.self}
		}
	}
	if mod == ":missing" {
		return []string{"true", "false"}
	}
	switch sp.typ {
	case "date":
		return []string{"lt2016-01-01", "ge2016-01-01", "eq2025", "ap2025-02-05", "ne2013-02-10", "sa2015", "eb2030", "2025-02-05T00:00:00Z"}
	case "string":
		switch mod {
		case ":contains":
			return []string{v.otherFamily[1 : len(v.otherFamily)-1]}
		default:
			return []string{v.otherFamily, v.otherGiven, v.selfFamily, "Maple Street"}
		}
	}
	var vals []string
	switch sp.name {
	case "_id":
		vals = []string{v.resourceID(typ, v.other), v.resourceID(typ, v.self) + "," + v.resourceID(typ, v.other), v.resourceID(typ, v.self)}
	case "identifier":
		vals = []string{v.otherMemberID, "https://fhirwall.example/member-id|" + v.otherMemberID, "FWC-" + strings.TrimPrefix(v.other, "member-") + "-3"}
	case "category":
		vals = []string{"laboratory", "vital-signs", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory", "problem-list-item"}
	case "code":
		vals = []string{"4548-4", "http://loinc.org|85354-9", "44054006"}
	case "type":
		vals = []string{"pharmacy", "http://terminology.hl7.org/CodeSystem/claim-type|pharmacy", "professional"}
	case "gender":
		vals = []string{"female", "male"}
	case "status", "clinical-status", "lifecycle-status", "intent":
		vals = []string{"active", "final", "completed"}
	default:
		vals = []string{"x"}
	}
	switch mod {
	case ":text", ":code-text":
		return []string{"Lab", v.otherFamily}
	case ":in", ":not-in":
		return []string{"http://hl7.org/fhir/ValueSet/observation-category", "http://hl7.org/fhir/ValueSet/claim-type"}
	case ":of-type":
		return []string{"http://terminology.hl7.org/CodeSystem/v2-0203|MB|" + v.otherMemberID}
	}
	return vals
}

func isPatientParam(name string) bool {
	return slices.Contains([]string{"patient", "subject", "beneficiary", "subscriber", "payee", "member"}, name)
}

// paramsOf returns the search parameters an API accepts for typ (its CapabilityStatement) plus the
// compartment and control parameters an attacker tries whether listed or not.
func (v vocabulary) paramsOf(api, typ string) []searchParam {
	ps := slices.Clone(v.tr.surface[api][typ])
	for _, extra := range []searchParam{{"subject", "reference"}, {"_has:Observation:patient:code", "token"}, {"_content", "string"},
		{"_text", "string"}, {"_filter", "string"}, {"_list", "special"}, {"_query", "special"}, {"_type", "special"}, {"_tag", "token"},
		{"_source", "uri"}, {"_security", "token"}, {"_profile", "uri"}, {"_contained", "token"}, {"_containedType", "token"}} {
		if !slices.ContainsFunc(ps, func(p searchParam) bool { return p.name == extra.name }) {
			ps = append(ps, extra)
		}
	}
	return ps
}

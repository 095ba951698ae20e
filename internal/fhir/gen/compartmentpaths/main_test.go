package main

import (
	"reflect"
	"testing"
)

func TestPathsReadTheFHIRPathShapesOfR4SearchParameters(t *testing.T) {
	for _, tc := range []struct {
		typ, expr string
		want      [][]string
	}{
		{"Observation", "Observation.subject", [][]string{{"subject"}}},
		{"ExplanationOfBenefit", "(ExplanationOfBenefit.payee.party)", [][]string{{"payee", "party"}}},
		{"CarePlan", "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | CareTeam.subject", [][]string{{"subject"}}},
		{"Observation", "(Observation.subject as Reference)", [][]string{{"subject"}}},
		{"Observation", "Observation.value.ofType(Reference) | Observation.focus", [][]string{{"value"}, {"focus"}}},
		{"Care", "CareTeam.subject", nil}, // a prefix of another type's name is not the type
	} {
		got, err := Paths(tc.typ, tc.expr)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%s in %q: want an error, got %q", tc.typ, tc.expr, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s in %q: got %q %v, want %q", tc.typ, tc.expr, got, err, tc.want)
		}
	}
}

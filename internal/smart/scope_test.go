package smart

import (
	"errors"
	"testing"
)

func TestParseV1AndV2(t *testing.T) {
	cases := []struct {
		in   string
		ctx  Context
		typ  string
		want Permissions
	}{
		{"patient/*.read", PatientContext, "*", Permissions{Read: true, Search: true}},
		{"patient/Observation.rs", PatientContext, "Observation", Permissions{Read: true, Search: true}},
		{"user/Patient.write", UserContext, "Patient", Permissions{Create: true, Update: true, Delete: true}},
		{"system/*.cruds", SystemContext, "*", Permissions{true, true, true, true, true}},
		{"patient/ExplanationOfBenefit.r", PatientContext, "ExplanationOfBenefit", Permissions{Read: true}},
		{"patient/Condition.s", PatientContext, "Condition", Permissions{Search: true}},
	}
	for _, c := range cases {
		sc, err := Parse(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if sc.Context != c.ctx || sc.ResourceType != c.typ || sc.Permissions != c.want {
			t.Errorf("%s: got %+v", c.in, sc)
		}
	}
}

func TestReadDoesNotImplySearch(t *testing.T) {
	sc, err := Parse("patient/Patient.r")
	if err != nil || sc.Permissions.Search {
		t.Fatalf("got %+v %v", sc, err)
	}
}

func TestGranularScopeKeepsParameters(t *testing.T) {
	sc, err := Parse("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Params.Get("category"); got != "http://terminology.hl7.org/CodeSystem/observation-category|laboratory" {
		t.Fatalf("category = %q", got)
	}
}

func TestMalformedScopesAreRefused(t *testing.T) {
	for _, in := range []string{
		"patient/Observation.sr",     // out of order
		"patient/Observation.rr",     // repeated
		"patient/Observation.x",      // unknown letter
		"patient/.rs",                // no type
		"patient/observation.rs",     // not a type name
		"patient/Observation",        // no permissions
		"patient/Observation.cu?a=b", // granular write
		"patient/Observation.rs?",    // empty parameters
	} {
		if _, err := Parse(in); err == nil || errors.Is(err, ErrNotResourceScope) {
			t.Errorf("%s: want a parse error, got %v", in, err)
		}
	}
}

func TestParseSetSeparatesNonResourceScopes(t *testing.T) {
	set := ParseSet("openid fhirUser launch/patient patient/*.rs patient/Bad.zz offline_access")
	if len(set.Resource) != 1 || len(set.Other) != 4 || len(set.Invalid) != 1 {
		t.Fatalf("got %+v", set)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"patient/*.read", "user/Observation.rs?category=laboratory", "system/Patient.cruds", "launch/patient", "a/b.c?%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := Parse(s)
		if err != nil {
			return
		}
		if sc.Raw != s || sc.ResourceType == "" {
			t.Fatalf("accepted %q as %+v", s, sc)
		}
		p := sc.Permissions
		if !(p.Create || p.Read || p.Update || p.Delete || p.Search) {
			t.Fatalf("accepted %q with no permission", s)
		}
	})
}

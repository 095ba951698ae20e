package fhir

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestPatientCompartmentPathsAreTheSearchParameterExpressions(t *testing.T) {
	for typ, want := range map[string][][]string{
		"Observation":          {{"subject"}, {"performer"}},
		"ExplanationOfBenefit": {{"patient"}, {"payee", "party"}},
		"Coverage":             {{"policyHolder"}, {"subscriber"}, {"beneficiary"}, {"payor"}},
		"Group":                {{"member", "entity"}},
		"Patient":              {{"link", "other"}},
		"AuditEvent":           {{"agent", "who"}, {"entity", "what"}},
		"Procedure":            {{"subject"}, {"performer", "actor"}},
	} {
		if got := PatientCompartmentPaths[typ]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %q, want %q", typ, got, want)
		}
	}
	for typ := range PatientCompartment {
		if PatientCompartmentPaths[typ] == nil {
			t.Errorf("%s is in the compartment but has no reference path", typ)
		}
	}
	if len(PatientCompartmentPaths) != len(PatientCompartment) {
		t.Errorf("%d types with paths, %d in the compartment", len(PatientCompartmentPaths), len(PatientCompartment))
	}
}

func TestPatientsOf(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resource string
		want     []string
		inComp   bool
	}{
		{"a Patient is its own", `{"resourceType":"Patient","id":"A","link":[{"other":{"reference":"Patient/B"}}]}`, []string{"A"}, true},
		{"relative subject", `{"resourceType":"Observation","subject":{"reference":"Patient/A"},"performer":[{"reference":"Practitioner/p"}]}`, []string{"A"}, true},
		{"absolute and versioned references", `{"resourceType":"Observation","subject":{"reference":"https://fhir.example/r4/Patient/A/_history/3"},"performer":[{"reference":"Patient/B/_history/1"}]}`, []string{"A", "B"}, true},
		{"EOB payee party is a path", `{"resourceType":"ExplanationOfBenefit","patient":{"reference":"Patient/A"},"payee":{"party":{"reference":"Patient/B"}}}`, []string{"A", "B"}, true},
		{"arrays walked at every step", `{"resourceType":"Group","member":[{"entity":{"reference":"Patient/A"}},{"entity":{"reference":"Patient/B"}},{"entity":{"reference":"Practitioner/x"}}]}`, []string{"A", "B"}, true},
		{"references to other types ignored", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/A"},"payor":[{"reference":"Organization/o"}],"subscriber":{"reference":"RelatedPerson/r"}}`, []string{"A"}, true},
		{"a contained resource of another patient taints", `{"resourceType":"ExplanationOfBenefit","patient":{"reference":"Patient/A"},"contained":[{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/B"}}]}`, []string{"A", "B"}, true},
		{"a contained Patient is nobody's", `{"resourceType":"Coverage","beneficiary":{"reference":"Patient/A"},"contained":[{"resourceType":"Patient","id":"A"}]}`, []string{"?", "A"}, true},
		{"a conditional reference is unknown", `{"resourceType":"Observation","subject":{"reference":"Patient?identifier=x|1"}}`, []string{"?"}, true},
		{"a typed non-patient-shaped reference is unknown", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:1","type":"Patient"}}`, []string{"?"}, true},
		{"Practitioner is outside", `{"resourceType":"Practitioner","id":"p"}`, []string{}, false},
		{"outside types still report the patients they name", `{"resourceType":"Task","for":{"reference":"Patient/B"}}`, []string{"B"}, false},
		{"parameters carrying resources report theirs", `{"resourceType":"Parameters","parameter":[{"name":"r","resource":{"resourceType":"Patient","id":"B"}}]}`, []string{"B"}, false},
		{"no subject", `{"resourceType":"Observation"}`, []string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, in, err := PatientsOfJSON(json.RawMessage(tc.resource))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) || in != tc.inComp {
				t.Fatalf("got %q %v, want %q %v", got, in, tc.want, tc.inComp)
			}
		})
	}
}

func TestPatientID(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/A":                                  "A",
		"Patient/A/_history/2":                       "A",
		"http://h/fhir/Patient/member-01":            "member-01",
		"http://h/fhir/Patient/member-01/_history/9": "member-01",
		"Patient?identifier=1":                       "?",
		"Patient/a b":                                "?",
		"Practitioner/A":                             "",
		"#p1":                                        "",
		"urn:uuid:Patient":                           "",
		"http://h/fhir/PatientX/A":                   "",
	} {
		id, ok := PatientID(ref)
		if ok != (want != "") || id != want {
			t.Errorf("%q: got %q %v, want %q", ref, id, ok, want)
		}
	}
}

func TestDataCategory(t *testing.T) {
	for _, tc := range []struct{ resource, want string }{
		{`{"resourceType":"Observation","category":[{"coding":[{"code":"laboratory"}]}]}`, "lab-results"},
		{`{"resourceType":"Observation","category":[{"coding":[{"code":"vital-signs"}]}]}`, "vital-signs"},
		{`{"resourceType":"Observation"}`, "clinical"},
		{`{"resourceType":"Patient"}`, "demographics"},
		{`{"resourceType":"ExplanationOfBenefit"}`, "claims"},
		{`{"resourceType":"Coverage"}`, "coverage"},
		{`{"resourceType":"MedicationDispense"}`, "pharmacy"},
		{`{"resourceType":"DocumentReference"}`, "clinical-notes"},
		{`{"resourceType":"Practitioner"}`, "other"},
		{`{"resourceType":"OperationOutcome"}`, ""},
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(tc.resource), &m); err != nil {
			t.Fatal(err)
		}
		if got := DataCategory(m["resourceType"].(string), m); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.resource, got, tc.want)
		}
	}
}

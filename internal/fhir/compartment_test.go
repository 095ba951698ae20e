package fhir

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

func TestPatientCompartmentIsTheR4Definition(t *testing.T) {
	for typ, want := range map[string][]string{
		"Observation":          {"subject", "performer"},
		"ExplanationOfBenefit": {"patient", "payee"},
		"Coverage":             {"policy-holder", "subscriber", "beneficiary", "payor"},
		"Group":                {"member"},
		"Patient":              {"link"},
	} {
		if got := PatientCompartment[typ]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %q, want %q", typ, got, want)
		}
	}
	for _, typ := range []string{"Binary", "Practitioner", "Organization"} {
		if _, ok := PatientCompartment[typ]; ok {
			t.Errorf("%s is not linked to a patient by any parameter", typ)
		}
	}
	for typ := range PatientCompartment {
		if !IsResourceType(typ) {
			t.Errorf("%s is in the compartment but not an R4 type", typ)
		}
	}
}

func TestResourceTypesAreTheConcreteR4Types(t *testing.T) {
	for _, typ := range []string{"Patient", "ExplanationOfBenefit", "Bundle", "Parameters", "Binary", "OperationOutcome"} {
		if !IsResourceType(typ) {
			t.Errorf("%s: want an R4 type", typ)
		}
	}
	for _, typ := range []string{"Resource", "DomainResource", "Foo", "patient", "CarinBBExplanationOfBenefit", "SubscriptionTopic"} {
		if IsResourceType(typ) {
			t.Errorf("%s: not an R4 resource type", typ)
		}
	}
}

// TestGeneratedTablesMatchTheJar fails when patient_compartment_gen.go was edited by hand or generated from
// another jar; it needs the HAPI jar in the local Maven repository and is skipped without it.
func TestGeneratedTablesMatchTheJar(t *testing.T) {
	home, _ := os.UserHomeDir()
	jar := filepath.Join(home, ".m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation-resources-r4/8.8.0/hapi-fhir-validation-resources-r4-8.8.0.jar")
	if _, err := os.Stat(jar); err != nil {
		t.Skip("HAPI validation resources jar not in ~/.m2")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	out := filepath.Join(t.TempDir(), "gen.go")
	if b, err := exec.Command(goTool, "run", "./gen/compartment", "-jar", jar, "-out", out).CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, b)
	}
	want, _ := os.ReadFile(out)
	got, err := os.ReadFile("patient_compartment_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("patient_compartment_gen.go is stale: run go generate ./internal/fhir")
	}
}

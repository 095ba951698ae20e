package fhir

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/fhirwall/fhirwall/internal/fhir/gen/r4jar"
	"github.com/fhirwall/fhirwall/test/require"
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

// TestGeneratedFilesMatchTheJar fails when a generated file was edited by hand or generated from another
// jar; it needs the HAPI jar in the local Maven repository (the validator's build fetches it) and is skipped
// without it, except under `make test`.
func TestGeneratedFilesMatchTheJar(t *testing.T) {
	jar := r4jar.DefaultPath()
	if _, err := os.Stat(jar); err != nil {
		require.Missing(t, jar+" missing: cd test/tools/fhir-validator && mvn -q package (fetches it)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		require.Missing(t, "no go tool on PATH")
	}
	for generator, file := range map[string]string{
		"./gen/compartment":      "patient_compartment_gen.go",
		"./gen/compartmentpaths": "patient_compartment_paths_gen.go",
		"./gen/summary":          "summary_elements_gen.go",
	} {
		out := filepath.Join(t.TempDir(), "gen.go")
		if b, err := exec.Command(goTool, "run", generator, "-jar", jar, "-out", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", generator, err, b)
		}
		want, _ := os.ReadFile(out)
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./internal/fhir", file)
		}
	}
}

//go:build e2e

package priorauth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
)

// TestBuiltBundlesValidateAgainstPAS: every Bundle the suite, the fault test and the benchmark build from
// testdata validates against PAS 2.0.1 with HAPI's validator (the one-shot tool; no stack needed), and the two
// malformed ones are refused for what makes them malformed. The suite validates again, with the stack's
// validator service, everything it sends.
func TestBuiltBundlesValidateAgainstPAS(t *testing.T) {
	evidence.Proves(t, "PAS-01")
	dir := t.TempDir()
	write := func(name string, b []byte, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f := filepath.Join(dir, name+".json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	var files []string
	for _, c := range []Code{MRIBrain, EnteralB4185, CABG, GeneticTest, Infliximab, OfficeVisit} {
		r := NewRequest("validate-"+c.Code, c)
		b, err := r.Bundle()
		files = append(files, write("request-"+c.Code, b, err))
		b, err = r.Inquiry()
		files = append(files, write("inquiry-"+c.Code, b, err))
	}
	expedited := Request{Template: "homecare", Identifier: "validate-expedited", Items: []Code{HomeHealth, EnteralB4184}, LevelOfService: "U"}
	b, err := expedited.Bundle()
	files = append(files, write("request-expedited", b, err))
	b, err = expedited.Inquiry()
	files = append(files, write("inquiry-expedited", b, err))
	stat := NewRequest("validate-stat", CABG)
	stat.Priority = "stat"
	stat.Provider = OrgB
	b, err = stat.Bundle()
	files = append(files, write("request-stat-org-b", b, err))
	useClaim := NewRequest("validate-use-claim", MRIBrain)
	useClaim.Use = "claim"
	b, err = useClaim.Bundle()
	files = append(files, write("malformed-use-claim", b, err))
	b, err = Nonconformant("validate-empty")
	files = append(files, write("malformed-empty", b, err))

	pkgs := fhirvalidator.Packages(t, "hl7.fhir.us.core-3.1.1.tgz", "hl7.fhir.us.davinci-pas-2.0.1.tgz")
	malformed := map[string]bool{}
	for _, line := range fhirvalidator.Validate(t, pkgs, files) {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "malformed-") {
			malformed[f[1]] = true
			t.Logf("expected: %s", line)
			continue
		}
		t.Error(line)
	}
	for _, f := range []string{"malformed-use-claim.json", "malformed-empty.json"} {
		if !malformed[f] {
			t.Errorf("%s validated, but a case sends it as a non-conformant Bundle", f)
		}
	}
}

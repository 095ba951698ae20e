//go:build e2e

package datascope

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNonFinancialClaimsValidate transforms the seed's claims for Provider Access and validates them with
// HAPI's validator (test/tools/fhir-validator, built with `mvn -q package` there) against the CARIN BB
// packages in ../shared/fhir-packages. Errors fail the test except the ones in acceptedErrors, each caused by
// the seed data rather than by the transform; warnings and information are logged.
func TestNonFinancialClaimsValidate(t *testing.T) {
	root, _ := filepath.Abs("../..")
	tool := filepath.Join(root, "test/tools/fhir-validator/target")
	if _, err := os.Stat(filepath.Join(tool, "fhir-validator-0.1.0.jar")); err != nil {
		// `make e2e` builds the validator and sets FHIRWALL_REQUIRE_VALIDATOR: there a missing validator fails.
		if os.Getenv("FHIRWALL_REQUIRE_VALIDATOR") != "" {
			t.Fatal("validator not built: cd test/tools/fhir-validator && mvn -q package")
		}
		t.Skip("validator not built: cd test/tools/fhir-validator && mvn -q package")
	}
	pkgs := os.Getenv("FHIR_PACKAGES")
	if pkgs == "" {
		pkgs = filepath.Join(root, "../shared/fhir-packages")
	}
	dir := t.TempDir()
	var files []string
	for id, eob := range seedEOBs(t) {
		if keep, _ := Apply(ProviderAccess, eob, decisionTime); !keep || eob["use"] != "claim" {
			continue
		}
		meta := eob["meta"].(map[string]any)
		meta["lastUpdated"] = "2026-11-27T00:00:00Z" // HAPI sets it on every stored resource; the seed files lack it
		b, _ := json.Marshal(eob)
		f := filepath.Join(dir, id+".json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	args := []string{"-cp", filepath.Join(tool, "fhir-validator-0.1.0.jar") + ":" + filepath.Join(tool, "lib/*"), "fhirwall.Validate"}
	for _, p := range []string{"hl7.fhir.us.core-6.1.0.tgz", "hl7.fhir.us.carin-bb-2.0.0.tgz", "hl7.fhir.us.carin-bb-2.0.0-nonfinancial.tgz"} {
		args = append(args, filepath.Join(pkgs, p))
	}
	for _, p := range args[3:] {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("IG package missing (set FHIR_PACKAGES): %v", err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no claims to validate")
	}
	args = append(append(args, "--"), files...)
	out, err := exec.Command("java", args...).CombinedOutput()
	// The validator exits 1 when a resource has errors (some are accepted below); anything else means it did
	// not validate at all.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		t.Fatalf("validator did not run: %v\n%s", err, out)
	}
	for _, f := range files {
		// Every resource gets at least the narrative (dom-6) warning: a file never named was never validated.
		if !strings.Contains(string(out), filepath.Base(f)) {
			t.Errorf("the validator said nothing about %s:\n%s", filepath.Base(f), out)
		}
	}
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "ERROR "), strings.HasPrefix(line, "FATAL "):
			if accepted(line) {
				t.Log("accepted: " + line)
			} else {
				t.Error(line)
			}
		case line != "":
			t.Log(line)
		}
	}
}

// acceptedErrors: errors that come from the seed data (test/seed), not from the transform. Empty: the seed
// claims conform to the financial CARIN BB profiles (validate the untransformed `go run ./test/seed -dry-run`
// claims the same way), so every error here is the transform's. Add an entry only with the reason it is the
// seed's and not the transform's, and fix the seed instead where possible.
var acceptedErrors = []struct{ match, why string }{}

func accepted(line string) bool {
	for _, a := range acceptedErrors {
		if strings.Contains(line, a.match) {
			return true
		}
	}
	return false
}

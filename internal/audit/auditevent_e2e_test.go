//go:build e2e

package audit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditEventValidates renders every record of the unit tests and validates the AuditEvents with HAPI's
// validator (test/tools/fhir-validator, built with `mvn -q package` there) against base R4: BALP's package is
// not available offline, which is also why the events claim no meta.profile (see auditevent.go). Any error
// fails the test; warnings (BALP's code systems unknown to the validator, no narrative) are logged.
func TestAuditEventValidates(t *testing.T) {
	root, _ := filepath.Abs("../..")
	tool := filepath.Join(root, "test/tools/fhir-validator/target")
	if _, err := os.Stat(filepath.Join(tool, "fhir-validator-0.1.0.jar")); err != nil {
		// `make e2e` builds the validator and sets FHIRWALL_REQUIRE_VALIDATOR: there a missing validator fails.
		if os.Getenv("FHIRWALL_REQUIRE_VALIDATOR") != "" {
			t.Fatal("validator not built: cd test/tools/fhir-validator && mvn -q package")
		}
		t.Skip("validator not built: cd test/tools/fhir-validator && mvn -q package")
	}
	dir := t.TempDir()
	var files []string
	for _, c := range aeCases {
		b, err := AuditEvent(c.rec, aeOptions)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f := filepath.Join(dir, c.name+".json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	args := []string{"-cp", filepath.Join(tool, "fhir-validator-0.1.0.jar") + ":" + filepath.Join(tool, "lib/*"),
		"fhirwall.Validate", "--"}
	out, err := exec.Command("java", append(args, files...)...).CombinedOutput()
	// The validator exits 1 when a resource has errors (reported line by line below); anything else means it
	// did not validate at all.
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
			t.Error(line)
		case line != "" && !strings.HasPrefix(line, "SLF4J"):
			t.Log(line)
		}
	}
	if err != nil && !t.Failed() {
		t.Errorf("the validator failed without an ERROR line:\n%s", out)
	}
}

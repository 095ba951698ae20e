//go:build e2e

package audit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/fhirvalidator"
)

// TestAuditEventValidates renders every record of the unit tests and validates the AuditEvents with HAPI's
// validator (test/tools/fhir-validator, built with `mvn -q package` there) against base R4: BALP's package is
// not available offline, which is also why the events claim no meta.profile (see auditevent.go). Any error
// fails the test; warnings (BALP's code systems unknown to the validator, no narrative) are logged.
func TestAuditEventValidates(t *testing.T) {
	evidence.Proves(t, "AUD-04")
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
	for _, e := range fhirvalidator.Validate(t, nil, files) {
		t.Error(e)
	}
}

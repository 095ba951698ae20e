// Package fakesuite is a fake end-to-end suite whose recorded `go test -json` stream (../fakesuite.json) is the
// matrix builder's fixture: one test of each shape the builder must read. It lives under testdata so ./...
// never runs it. Regenerate from the repository root with:
//
//	go test -json -count=1 ./test/tools/evidence/testdata/fakesuite > test/tools/evidence/testdata/fakesuite.json
package fakesuite

import (
	"testing"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

func TestPasses(t *testing.T) {
	evidence.Proves(t, "CMS-PA-01", "AUD-01")
}

func TestFails(t *testing.T) {
	evidence.Proves(t, "SEC-01")
	t.Log("some progress")
	t.Errorf("other member's EOB answered 200, want 404")
}

func TestSkipsAfterProving(t *testing.T) {
	evidence.Proves(t, "PAS-01")
	t.Skip("validator jar missing: build it with mvn -q package in test/tools/fhir-validator")
}

func TestParentFailsAfterItsSubtestPassed(t *testing.T) {
	t.Run("member", func(t *testing.T) {
		evidence.Proves(t, "CMS-PROV-01")
	})
	t.Fatal("audit record never arrived")
}

func TestSubtestsNameTheirOwn(t *testing.T) {
	evidence.Proves(t, "SMART-01")
	t.Run("envoy", func(t *testing.T) { evidence.Proves(t, "SMART-03") })
	t.Run("standalone", func(t *testing.T) { evidence.Proves(t, "SMART-03") })
}

func TestWithoutEvidence(t *testing.T) {}

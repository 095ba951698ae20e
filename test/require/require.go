// Package require stops a test whose prerequisite (a tool, a jar, a binary) is missing: a skip when a
// developer runs `go test` by hand, a failure under `make test`, which provides every prerequisite and sets
// FHIRWALL_REQUIRE_ALL=1 so that no test it is expected to run can pass by not running.
package require

import (
	"os"
	"testing"
)

// Env is the switch `make test` sets.
const Env = "FHIRWALL_REQUIRE_ALL"

// All reports whether every prerequisite must be present (FHIRWALL_REQUIRE_ALL set, and not to "0").
func All() bool {
	v := os.Getenv(Env)
	return v != "" && v != "0"
}

// Missing ends t because a prerequisite is missing; fix says in one line how to provide it. It fails t under
// FHIRWALL_REQUIRE_ALL=1 and skips it otherwise.
func Missing(t testing.TB, fix string) {
	t.Helper()
	if All() {
		t.Fatalf("%s (%s=1: make test expects this test to run)", fix, Env)
	}
	t.Skip(fix)
}

//go:build e2e

package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/pgtest"
)

// fhirwall apps import against PostgreSQL (bash test/stack/postgres.sh start; FHIRWALL_TEST_POSTGRES_DSN
// overrides the DSN), in a schema of its own dropped afterwards: the shipped clients.yaml registered once,
// a second run registers nothing, and each registration is an admin record in the spool.
func TestE2EAppsImportRegistersTheFileRegistryOnceAndAuditsIt(t *testing.T) {
	evidence.Proves(t, "AUD-05")
	dsn := pgtest.Schema(t, "cli_apps")
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.key")
	if err := audit.GenerateKey(key); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	args := []string{"apps", "import", "-clients", filepath.Join("..", "..", "config", "clients.yaml"),
		"-postgres", dsn, "-spool", spool, "-key", key}
	code, out, err := cli(t, args...)
	if code != 0 || err != nil || !strings.HasPrefix(out, "imported ") {
		t.Fatalf("first import: %d %v %q", code, err, out)
	}
	var n, total int
	if _, err := fmt.Sscanf(out, "imported %d of %d", &n, &total); err != nil || n == 0 || n != total {
		t.Fatalf("first import %q: want every client imported", out)
	}
	if code, out, err = cli(t, args...); code != 0 || err != nil || !strings.HasPrefix(out, "imported 0 of ") {
		t.Fatalf("second import: %d %v %q; want nothing new", code, err, out)
	}
	imports := 0
	if err := audit.ReadSpool(spool, func(raw []byte, _ string) error {
		var r audit.Record
		if json.Unmarshal(raw, &r) == nil && r.Kind == audit.KindAdmin && r.Actor == "import" {
			imports++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if imports < n {
		t.Fatalf("%d admin records by import in the spool, want at least %d (one per app)", imports, n)
	}
}

//go:build e2e

package subscriptions

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// testDSN is the stack's PostgreSQL (bash test/stack/postgres.sh start).
func testDSN() string {
	if dsn := os.Getenv("FHIRWALL_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
}

// openCleanPostgres opens the store in a schema of its own, dropped afterwards: each test starts empty and
// the stack's own tables (the lead's running fhirwall) are never touched.
func openCleanPostgres(t *testing.T) Store {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatalf("PostgreSQL (bash test/stack/postgres.sh start): %v", err)
	}
	defer admin.Close(ctx)
	schema := "fwtest_subs_" + newID()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testDSN())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	sep := "?"
	if strings.Contains(testDSN(), "?") {
		sep = "&"
	}
	p, err := OpenPostgres(ctx, testDSN()+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestPostgresKeepsTheStoreContract(t *testing.T) {
	storeContract(t, openCleanPostgres)
}

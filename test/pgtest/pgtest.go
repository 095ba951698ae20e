// Package pgtest gives an end-to-end test a schema of its own on the stack's PostgreSQL: each test starts
// empty, nobody else's tables (the stack's running fhirwall, other tests) are touched, and the schema is
// dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirwall/fhirwall/test/require"
)

// Env overrides DefaultDSN.
const Env = "FHIRWALL_TEST_POSTGRES_DSN"

// DefaultDSN is the stack's PostgreSQL (bash test/stack/postgres.sh start).
const DefaultDSN = "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"

// DSN is the PostgreSQL the e2e tests use: $FHIRWALL_TEST_POSTGRES_DSN, or DefaultDSN.
func DSN() string {
	if dsn := os.Getenv(Env); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// Schema makes a schema fwtest_<prefix>_<random> on DSN(), dropped when t ends, and returns a DSN whose
// search_path is that schema. It skips t when PostgreSQL does not answer, and fails it then under
// FHIRWALL_REQUIRE_ALL=1.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	dsn := DSN()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		require.Missing(t, "PostgreSQL does not answer (bash test/stack/postgres.sh start; "+Env+" overrides the DSN): "+err.Error())
	}
	defer admin.Close(context.Background())
	schema := "fwtest_" + prefix + "_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), dsn); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	return WithSearchPath(dsn, schema)
}

// WithSearchPath is dsn (a URL) with search_path set to schema.
func WithSearchPath(dsn, schema string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

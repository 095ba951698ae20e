// Package jobstore keeps what binds a link to the client it was given to in PostgreSQL: bulk export job
// ownership (decision.JobStore) and paging bindings (decision.PageStore), so that every fhirwall-proxy
// replica answers a job's status URL, its files and a search's next pages for the same owner.
package jobstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// schema is created on Open when missing. Expiry is judged by the database's clock, so replicas with
// skewed clocks still agree on whether a binding lives.
const schema = `CREATE TABLE IF NOT EXISTS fhirwall_export_bindings (
	kind       text        NOT NULL,
	id         text        NOT NULL,
	owner      text        NOT NULL,
	expires_at timestamptz NOT NULL,
	PRIMARY KEY (kind, id)
)`

// Postgres is a decision.JobStore in a PostgreSQL table.
type Postgres struct {
	pool *pgxpool.Pool
}

var _ decision.JobStore = (*Postgres)(nil)

// Open connects to dsn (postgres://user:pass@host:port/db) and creates the tables when missing (the jobs'
// and, for Pages, the paging bindings').
func Open(ctx context.Context, dsn string) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("jobstore: %w", err)
	}
	// Replicas starting together would race on CREATE ... IF NOT EXISTS (it is not atomic against a
	// concurrent CREATE): the creation is serialised by an advisory lock held in a transaction.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fhirwall_jobstore'))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, schema); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, pagesSchema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobstore: create tables: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close releases the connections (Pages' too).
func (p *Postgres) Close() { p.pool.Close() }

// Bind implements decision.JobStore in one statement: a new binding is inserted; an existing one is
// overwritten only when it is the same owner's (extending it) or has expired. Otherwise no row comes
// back and the binding stays with its first owner.
func (p *Postgres) Bind(ctx context.Context, ref decision.ExportRef, owner string, ttl time.Duration) error {
	var got string
	err := p.pool.QueryRow(ctx, `
INSERT INTO fhirwall_export_bindings AS b (kind, id, owner, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (kind, id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
	WHERE b.owner = EXCLUDED.owner OR b.expires_at <= now()
RETURNING owner`, string(ref.Kind), ref.ID, owner, ttl.Seconds()).Scan(&got)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return decision.ErrExportBound
	case err != nil:
		return fmt.Errorf("jobstore: bind: %w", err)
	}
	return nil
}

// Owner implements decision.JobStore.
func (p *Postgres) Owner(ctx context.Context, ref decision.ExportRef) (string, bool, error) {
	var owner string
	err := p.pool.QueryRow(ctx, `SELECT owner FROM fhirwall_export_bindings
WHERE kind = $1 AND id = $2 AND expires_at > now()`, string(ref.Kind), ref.ID).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("jobstore: owner: %w", err)
	}
	return owner, true, nil
}

// Purge deletes expired bindings and returns how many; expired rows are never answered, so this only
// bounds the table. Run it periodically from one place (or every replica: it is idempotent).
func (p *Postgres) Purge(ctx context.Context) (int64, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM fhirwall_export_bindings WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("jobstore: purge: %w", err)
	}
	return tag.RowsAffected(), nil
}

package jobstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// pagesSchema holds the paging bindings. Expiry is judged by the database's clock, so replicas with skewed
// clocks agree on whether a binding lives; the index lets each Bind find a few expired rows to prune.
const pagesSchema = `CREATE TABLE IF NOT EXISTS fhirwall_page_bindings (
	page_id    text        PRIMARY KEY,
	owner      text        NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS fhirwall_page_bindings_by_expiry ON fhirwall_page_bindings (expires_at)`

// PageTimeout bounds one call to the page store. A paging request waits on Owner inside Envoy's ext_authz
// call (2 s) and a search's answer on Bind inside ext_proc's: past it the request is refused with 503
// rather than held until Envoy gives up on it.
const PageTimeout = time.Second

// MaxPageKey is the longest page id or owner stored. HAPI's page ids are UUIDs and owners are a client id,
// a patient, an organisation, a fhirUser and a hash; anything longer was not made by either.
const MaxPageKey = 1024

// prunePerBind is how many expired bindings each Bind deletes: more than the one it adds, so the table stays near the live bindings without a background job, and each call's work stays
// bounded however many have expired.
const prunePerBind = 2

// ErrPageKey means a page id or owner that the table cannot hold (empty, too long, not UTF-8, or with a NUL
// byte, which PostgreSQL text refuses). No such id is ever bound, so Owner answers "not bound" for it.
var ErrPageKey = errors.New("jobstore: page id or owner cannot be stored")

// Pages is a decision.PageStore in PostgreSQL, shared by every replica on the same database: a next link
// made by one replica is honoured for its owner, and refused for anyone else, by all of them.
type Pages struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

var _ decision.PageStore = (*Pages)(nil)

// Pages is the page store on p's connections (one client per outside system). p.Close closes it too.
func (p *Postgres) Pages() *Pages { return &Pages{pool: p.pool, timeout: PageTimeout} }

// storable reports whether s can be a page id or owner: non-empty, at most MaxPageKey bytes, valid UTF-8
// without NUL. Stored and compared byte for byte as given; no folding, no trimming.
func storable(s string) bool {
	return s != "" && len(s) <= MaxPageKey && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// Bind implements decision.PageStore in one statement, so two replicas binding one id at once cannot both
// win: a new id is inserted; an existing binding is taken over only when it is the same owner's (extending
// it) or has expired. Otherwise no row comes back and the id stays its first owner's (ErrPageBound).
//
// In the same round trip and transaction, after the binding, a few other expired bindings are deleted
// (prunePerBind). Rows another call holds are skipped, never waited for: the binding is the only lock a
// Bind waits on, so two Binds cannot deadlock on each other's prunes.
func (p *Pages) Bind(ctx context.Context, pageID, owner string, ttl time.Duration) error {
	if !storable(pageID) || !storable(owner) {
		return fmt.Errorf("%w (%d-byte id, %d-byte owner)", ErrPageKey, len(pageID), len(owner))
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	b := &pgx.Batch{}
	var got string
	bound := b.Queue(`
INSERT INTO fhirwall_page_bindings AS b (page_id, owner, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (page_id) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
	WHERE b.owner = EXCLUDED.owner OR b.expires_at <= now()
RETURNING owner`, pageID, owner, ttl.Seconds())
	bound.QueryRow(func(row pgx.Row) error { return row.Scan(&got) })
	b.Queue(`
DELETE FROM fhirwall_page_bindings WHERE page_id IN (
	SELECT page_id FROM fhirwall_page_bindings WHERE expires_at <= now()
	ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`, prunePerBind)
	err := p.pool.SendBatch(ctx, b).Close()
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return decision.ErrPageBound
	case err != nil:
		return fmt.Errorf("jobstore: bind page: %w", err)
	}
	return nil
}

// Owner implements decision.PageStore. An id the table could never hold (a client's made-up _getpages) is
// not bound: the caller gets the 404 of a page that does not exist, not a 503.
func (p *Pages) Owner(ctx context.Context, pageID string) (string, bool, error) {
	if !storable(pageID) {
		return "", false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var owner string
	err := p.pool.QueryRow(ctx, `SELECT owner FROM fhirwall_page_bindings
WHERE page_id = $1 AND expires_at > now()`, pageID).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("jobstore: page owner: %w", err)
	}
	return owner, true, nil
}

// Purge deletes every expired binding and returns how many. Bind already prunes as it goes; this is for
// operators and tests.
func (p *Pages) Purge(ctx context.Context) (int64, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM fhirwall_page_bindings WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("jobstore: purge pages: %w", err)
	}
	return tag.RowsAffected(), nil
}

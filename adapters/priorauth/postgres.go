package priorauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// postgresSchema is created on Open when missing. The columns are what the store queries on (the review
// queue by deadline, $inquire by provider and Claim.identifier, the report by receipt, Decide's condition);
// the rest of a request is one jsonb document. The PAS response Bundle is kept as bytes, not jsonb: a
// notification re-sent after a restart must carry the same bytes as the first (jsonb reorders keys).
const postgresSchema = `
CREATE TABLE IF NOT EXISTS fhirwall_prior_auth_requests (
	id               text        PRIMARY KEY,
	seq              bigint      GENERATED ALWAYS AS IDENTITY,
	provider         text        NOT NULL,
	claim_identifier text        NOT NULL,
	status           text        NOT NULL,
	received         timestamptz NOT NULL,
	deadline         timestamptz NOT NULL,
	expedited        boolean     NOT NULL,
	decided_at       timestamptz,
	version          integer     NOT NULL,
	doc              jsonb       NOT NULL,
	response_bundle  bytea
);
CREATE INDEX IF NOT EXISTS fhirwall_prior_auth_pended_by_deadline
	ON fhirwall_prior_auth_requests (deadline, seq) WHERE status = 'pended';
CREATE INDEX IF NOT EXISTS fhirwall_prior_auth_by_claim_identifier
	ON fhirwall_prior_auth_requests (provider, claim_identifier, received DESC, seq DESC);
CREATE INDEX IF NOT EXISTS fhirwall_prior_auth_by_received
	ON fhirwall_prior_auth_requests (received, seq);
`

// Postgres is a Store in a PostgreSQL table: every replica sees the same queue, and it survives restarts.
type Postgres struct {
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to dsn (postgres://user:pass@host:port/db) and creates the table and its indexes
// when missing.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("priorauth: %w", err)
	}
	// Two replicas starting together may both create the table: CREATE ... IF NOT EXISTS is not atomic
	// against a concurrent CREATE, so the creation is serialised by an advisory lock held in a transaction.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fhirwall_prior_auth_requests'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, postgresSchema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("priorauth: create table: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close releases the connections.
func (p *Postgres) Close() { p.pool.Close() }

// pgDoc is the jsonb part of a row: every field of a Request that has no column of its own.
type pgDoc struct {
	ClientID        string         `json:"client_id"`
	OrgIdentifiers  []string       `json:"org_identifiers,omitempty"`
	Patient         string         `json:"patient"`
	Drug            bool           `json:"drug,omitempty"`
	ClaimID         string         `json:"claim_id,omitempty"`
	ClaimResponseID string         `json:"claim_response_id,omitempty"`
	EOBID           string         `json:"eob_id,omitempty"`
	DeadlineBasis   string         `json:"deadline_basis,omitempty"`
	Extended        bool           `json:"extended,omitempty"`
	AfterAppeal     bool           `json:"after_appeal,omitempty"`
	Items           []ItemDecision `json:"items"`
	DecidedBy       string         `json:"decided_by,omitempty"`
	Sandbox         bool           `json:"sandbox,omitempty"`
}

// pgReal keeps sandbox requests (pgDoc.Sandbox) out of the queue and the report: the flag lives in the
// document, so a table made before the sandbox needs no new column.
const pgReal = `NOT COALESCE((doc->>'sandbox')::boolean, false)`

// pgDecision is the part of pgDoc that Decide replaces (jsonb || keeps the rest).
type pgDecision struct {
	Extended    bool           `json:"extended"`
	AfterAppeal bool           `json:"after_appeal"`
	Items       []ItemDecision `json:"items"`
	DecidedBy   string         `json:"decided_by"`
}

// Insert implements Store.
func (p *Postgres) Insert(ctx context.Context, r Request) error {
	if err := storeCheckInsert(r); err != nil {
		return err
	}
	r = storeNormalised(r)
	doc, err := json.Marshal(pgDoc{ClientID: r.ClientID, OrgIdentifiers: r.OrgIdentifiers, Patient: r.Patient, Drug: r.Drug,
		ClaimID: r.ClaimID, ClaimResponseID: r.ClaimResponseID, EOBID: r.EOBID, DeadlineBasis: r.DeadlineBasis,
		Extended: r.Extended, AfterAppeal: r.AfterAppeal, Items: r.Items, DecidedBy: r.DecidedBy, Sandbox: r.Sandbox})
	if err != nil {
		return fmt.Errorf("priorauth: insert %s: %w", r.ID, err)
	}
	tag, err := p.pool.Exec(ctx, `
INSERT INTO fhirwall_prior_auth_requests
	(id, provider, claim_identifier, status, received, deadline, expedited, decided_at, version, doc, response_bundle)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO NOTHING`,
		r.ID, r.Provider, r.ClaimIdentifier, string(r.Status), r.Received, r.Deadline, r.Expedited,
		pgNullTime(r.DecidedAt), r.Version, doc, r.ResponseBundle)
	switch {
	case err != nil:
		return fmt.Errorf("priorauth: insert %s: %w", r.ID, err)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("priorauth: insert %s: %w", r.ID, errDuplicateID)
	}
	return nil
}

const (
	pgColumnsWithoutBundle = `id, provider, claim_identifier, status, received, deadline, expedited, decided_at, version, doc`
	pgColumns              = pgColumnsWithoutBundle + `, response_bundle`
)

// Get implements Store.
func (p *Postgres) Get(ctx context.Context, id string) (Request, error) {
	return p.one(ctx, `SELECT `+pgColumns+` FROM fhirwall_prior_auth_requests WHERE id = $1`, id)
}

// FindByClaimIdentifier implements Store.
func (p *Postgres) FindByClaimIdentifier(ctx context.Context, provider, claimIdentifier string) (Request, error) {
	return p.one(ctx, `SELECT `+pgColumns+` FROM fhirwall_prior_auth_requests
WHERE provider = $1 AND claim_identifier = $2 ORDER BY received DESC, seq DESC LIMIT 1`, provider, claimIdentifier)
}

// Decide implements Store in one conditional UPDATE: of two reviewers deciding at once, the second finds
// the row no longer pended at its version and changes nothing.
func (p *Postgres) Decide(ctx context.Context, next Request) error {
	next = storeNormalised(next)
	dec, err := json.Marshal(pgDecision{Extended: next.Extended, AfterAppeal: next.AfterAppeal, Items: next.Items, DecidedBy: next.DecidedBy})
	if err != nil {
		return fmt.Errorf("priorauth: decide %s: %w", next.ID, err)
	}
	tag, err := p.pool.Exec(ctx, `
UPDATE fhirwall_prior_auth_requests
SET status = $3, decided_at = $4, version = $2, doc = doc || $5::jsonb, response_bundle = $6
WHERE id = $1 AND status = 'pended' AND version = $2 - 1`,
		next.ID, next.Version, string(next.Status), pgNullTime(next.DecidedAt), dec, next.ResponseBundle)
	if err != nil {
		return fmt.Errorf("priorauth: decide %s: %w", next.ID, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fhirwall_prior_auth_requests WHERE id = $1)`, next.ID).Scan(&exists); err != nil {
		return fmt.Errorf("priorauth: decide %s: %w", next.ID, err)
	}
	if !exists {
		return ErrNotFound
	}
	return ErrAlreadyDecided
}

// Pended implements Store.
func (p *Postgres) Pended(ctx context.Context) ([]Request, error) {
	return p.many(ctx, `SELECT `+pgColumns+` FROM fhirwall_prior_auth_requests
WHERE status = 'pended' AND `+pgReal+` ORDER BY deadline, seq`)
}

// Received implements Store.
func (p *Postgres) Received(ctx context.Context, from, to time.Time) ([]Request, error) {
	return p.many(ctx, `SELECT `+pgColumns+` FROM fhirwall_prior_auth_requests
WHERE received >= $1 AND received < $2 AND `+pgReal+` ORDER BY received, seq`, from, to)
}

// EachReceived calls fn with each request received in [from, to), in order of receipt, as Received lists
// them but streamed and without ResponseBundle: what the yearly report reads, a year of requests that need
// not fit in memory. An error of fn stops the walk and is returned.
func (p *Postgres) EachReceived(ctx context.Context, from, to time.Time, fn func(Request) error) error {
	rows, err := p.pool.Query(ctx, `SELECT `+pgColumnsWithoutBundle+`, NULL::bytea FROM fhirwall_prior_auth_requests
WHERE received >= $1 AND received < $2 AND `+pgReal+` ORDER BY received, seq`, from, to)
	if err != nil {
		return fmt.Errorf("priorauth: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := pgScanRequest(rows)
		if err != nil {
			return fmt.Errorf("priorauth: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("priorauth: %w", err)
	}
	return nil
}

func (p *Postgres) one(ctx context.Context, sql string, args ...any) (Request, error) {
	r, err := pgScanRequest(p.pool.QueryRow(ctx, sql, args...))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Request{}, ErrNotFound
	case err != nil:
		return Request{}, fmt.Errorf("priorauth: %w", err)
	}
	return r, nil
}

func (p *Postgres) many(ctx context.Context, sql string, args ...any) ([]Request, error) {
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("priorauth: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Request, error) { return pgScanRequest(row) })
	if err != nil {
		return nil, fmt.Errorf("priorauth: %w", err)
	}
	return out, nil
}

func pgScanRequest(row pgx.Row) (Request, error) {
	var (
		r         Request
		status    string
		decidedAt *time.Time
		doc       []byte
	)
	if err := row.Scan(&r.ID, &r.Provider, &r.ClaimIdentifier, &status, &r.Received, &r.Deadline, &r.Expedited,
		&decidedAt, &r.Version, &doc, &r.ResponseBundle); err != nil {
		return Request{}, err
	}
	var d pgDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return Request{}, fmt.Errorf("request %s: stored document: %w", r.ID, err)
	}
	r.Status = Status(status)
	r.Received, r.Deadline = r.Received.UTC(), r.Deadline.UTC()
	if decidedAt != nil {
		r.DecidedAt = decidedAt.UTC()
	}
	r.ClientID, r.OrgIdentifiers, r.Patient, r.Drug = d.ClientID, d.OrgIdentifiers, d.Patient, d.Drug
	r.ClaimID, r.ClaimResponseID, r.EOBID, r.DeadlineBasis = d.ClaimID, d.ClaimResponseID, d.EOBID, d.DeadlineBasis
	r.Extended, r.AfterAppeal, r.Items, r.DecidedBy, r.Sandbox = d.Extended, d.AfterAppeal, d.Items, d.DecidedBy, d.Sandbox
	return r, nil
}

// pgNullTime is a zero time as SQL NULL (a pended request's decided_at).
func pgNullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

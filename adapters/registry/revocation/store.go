// Package revocation makes revoked access tokens and grants refused at the gateway within a second on every
// replica: RFC 7009 token revocation (the app revokes its own token), a member revoking one app's access to
// their data, a PostgreSQL store of both, the in-memory view each replica keeps fresh with LISTEN/NOTIFY, and
// the wrapper around the gateway's token verifier that consults it.
package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/audit"
)

// Channel is the NOTIFY channel a revocation is announced on; the payload is the client id.
const Channel = "fhirwall_revocation"

// Audit actions of the two kinds of revocation.
const (
	ActionRevokeToken = "revoke-token"
	ActionRevokeGrant = "revoke-grant"
)

// schema is created on Open when missing. A token row lives until its token expires (then pruned); a grant
// row says "every token of this subject for this client signed in at or before revoked_at is refused" and
// is kept: a later sign-in makes newer tokens, which it does not touch.
const schema = `
CREATE TABLE IF NOT EXISTS fhirwall_revoked_tokens (
	jti        text        PRIMARY KEY,
	client_id  text        NOT NULL,
	subject    text        NOT NULL,
	expires_at timestamptz NOT NULL,
	revoked_at timestamptz NOT NULL,
	actor      text        NOT NULL
);
CREATE INDEX IF NOT EXISTS fhirwall_revoked_tokens_by_expiry ON fhirwall_revoked_tokens (expires_at);
CREATE TABLE IF NOT EXISTS fhirwall_revoked_grants (
	subject    text        NOT NULL,
	client_id  text        NOT NULL,
	revoked_at timestamptz NOT NULL,
	actor      text        NOT NULL,
	PRIMARY KEY (subject, client_id)
);
`

// Errors of the store.
var (
	ErrInvalid     = errors.New("revocation: invalid request")
	ErrAuditFailed = errors.New("revocation: audit record not written; nothing revoked")
)

// Token is one revoked access token: its jti (or TokenKey of its bytes when it has none), whose it is, and
// until when it would have been accepted.
type Token struct {
	JTI       string    `json:"jti"`
	ClientID  string    `json:"client_id"`
	Subject   string    `json:"subject"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Store is the revocations in PostgreSQL. Every revocation is one transaction: the row, the admin audit
// record (its failure rolls the revocation back) and a notification to every replica's view.
type Store struct {
	pool  *pgxpool.Pool
	audit apps.AuditSink
	log   *slog.Logger
	now   func() time.Time
	view  *View
}

// Open connects to dsn (jobs.postgres_dsn), creates the tables when missing and loads the view. sink (the
// audit spool) is required: a revocation must be audited. Run View().Watch to keep the view fresh; without it
// every check fails closed once the view is older than DefaultStaleAfter.
func Open(ctx context.Context, dsn string, sink apps.AuditSink, log *slog.Logger) (*Store, error) {
	if sink == nil {
		return nil, errors.New("revocation: no audit sink: every revocation must be audited")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("revocation: postgres: %w", err)
	}
	// Replicas starting together would race on CREATE ... IF NOT EXISTS: creation is serialised.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fhirwall_revocation'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("revocation: postgres: create tables: %w", err)
	}
	s := &Store{pool: pool, audit: sink, log: log, now: time.Now}
	s.view = newView(pool, dsn, log)
	if err := s.view.Reload(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// View is this replica's view of the revocations, for Wrap and /readyz.
func (s *Store) View() *View { return s.view }

// Close releases the connections. Watch ends with its own context.
func (s *Store) Close() { s.pool.Close() }

func (s *Store) timeNow() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// RevokeToken records t as revoked until it expires. actor is who asked ("client:<id>" for RFC 7009);
// revoking a token twice keeps the first record and audits both.
func (s *Store) RevokeToken(ctx context.Context, t Token, actor, reason string) error {
	if t.JTI == "" || t.ClientID == "" || t.ExpiresAt.IsZero() || actor == "" {
		return fmt.Errorf("%w: a revoked token needs a jti, a client, an expiry and an actor", ErrInvalid)
	}
	now := s.timeNow()
	after := struct {
		Token
		RevokedAt time.Time `json:"revoked_at"`
	}{t, now}
	return s.change(ctx, ActionRevokeToken, t.ClientID, actor, reason, after, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO fhirwall_revoked_tokens (jti, client_id, subject, expires_at, revoked_at, actor)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (jti) DO NOTHING`, t.JTI, t.ClientID, t.Subject, t.ExpiresAt.UTC(), now, actor)
		return err
	})
}

// RevokeGrant refuses, from now on, every token of subject for clientID signed in (auth_time, or iat when the
// token has none) at or before now, refresh tokens' later access tokens included: the member revoked the
// app's access to their data. actor is who did it ("member:<sub>", or a reviewer). The portal also asks the
// identity provider to end the member's sessions for the app, so that a new grant needs a new sign-in.
func (s *Store) RevokeGrant(ctx context.Context, subject, clientID, actor string) error {
	if subject == "" || clientID == "" || actor == "" {
		return fmt.Errorf("%w: a revoked grant needs a subject, a client and an actor", ErrInvalid)
	}
	now := s.timeNow()
	after := struct {
		Subject   string    `json:"subject"`
		ClientID  string    `json:"client_id"`
		RevokedAt time.Time `json:"revoked_at"`
	}{subject, clientID, now}
	return s.change(ctx, ActionRevokeGrant, clientID, actor, "access to the member's data revoked", after, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO fhirwall_revoked_grants (subject, client_id, revoked_at, actor)
VALUES ($1, $2, $3, $4) ON CONFLICT (subject, client_id) DO UPDATE
SET revoked_at = GREATEST(fhirwall_revoked_grants.revoked_at, EXCLUDED.revoked_at), actor = EXCLUDED.actor`,
			subject, clientID, now, actor)
		return err
	})
}

// change runs one revocation in a transaction: the row, then the audit record (durable before commit, so
// nothing is revoked unaudited), then the notification, delivered to every listener on commit only.
func (s *Store) change(ctx context.Context, action, clientID, actor, reason string, after any, write func(pgx.Tx) error) error {
	afterDoc, err := json.Marshal(after)
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("revocation: %s: %w", action, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // after Commit: a no-op
	if err := write(tx); err != nil {
		return fmt.Errorf("revocation: %s: %w", action, err)
	}
	rec := audit.Record{Schema: audit.SchemaVersion, Kind: audit.KindAdmin, ID: audit.NewID(), Time: s.timeNow(),
		Actor: actor, Action: action, Target: clientID, Reason: reason, After: afterDoc}
	if err := s.audit.Write(context.WithoutCancel(ctx), rec); err != nil {
		return fmt.Errorf("%w: %w", ErrAuditFailed, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, clientID); err != nil {
		return fmt.Errorf("revocation: %s: %w", action, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("revocation: %s: %w", action, err)
	}
	s.log.Info("revoked", "action", action, "client_id", clientID, "actor", actor, "audit_id", rec.ID)
	return nil
}

package postgres

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
)

// SyncChannel is the NOTIFY channel an app change is announced on for the identity provider's sync
// (adapters/registry/keycloak); the payload is the client id.
const SyncChannel = "fhirwall_idp_sync"

// credentialsSchema keeps what a registration issued: the client secret only until the identity provider
// has it (then NULL), the registration access token only as its SHA-256.
const credentialsSchema = `
CREATE TABLE IF NOT EXISTS fhirwall_app_credentials (
	client_id                 text  PRIMARY KEY,
	pending_secret            text,
	registration_token_sha256 bytea
);
`

// syncSchema is the outbox of the identity provider's sync: one row per app, dirty while a change has not
// reached the identity provider. generation counts changes, so a sync that read generation n marks the app
// clean only if no change came after. Apps registered before the outbox existed start dirty.
const syncSchema = `
CREATE TABLE IF NOT EXISTS fhirwall_idp_sync (
	client_id    text        PRIMARY KEY,
	dirty_since  timestamptz,
	generation   bigint      NOT NULL DEFAULT 1,
	attempts     integer     NOT NULL DEFAULT 0,
	last_error   text,
	next_attempt timestamptz,
	synced_at    timestamptz
);
CREATE INDEX IF NOT EXISTS fhirwall_idp_sync_due ON fhirwall_idp_sync (next_attempt) WHERE dirty_since IS NOT NULL;
INSERT INTO fhirwall_idp_sync (client_id, dirty_since, next_attempt)
	SELECT client_id, now(), now() FROM fhirwall_apps ON CONFLICT (client_id) DO NOTHING;
`

// markDirty records, inside a change's transaction, that the app's client must be brought to the registry's
// state: at once (a new change cancels any backoff), keeping the time of the oldest waiting change.
func markDirty(ctx context.Context, tx pgx.Tx, clientID string, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO fhirwall_idp_sync (client_id, dirty_since, next_attempt) VALUES ($1, $2, $2)
ON CONFLICT (client_id) DO UPDATE SET dirty_since = COALESCE(fhirwall_idp_sync.dirty_since, EXCLUDED.dirty_since),
	generation = fhirwall_idp_sync.generation + 1, next_attempt = EXCLUDED.next_attempt`, clientID, now)
	return err
}

// Register implements apps.Store: Create and the issued credentials in one transaction.
func (s *Store) Register(ctx context.Context, a apps.App, actor, reason string, issued apps.Issued) (apps.App, error) {
	var tokenHash []byte
	if issued.RegistrationToken != "" {
		h := sha256.Sum256([]byte(issued.RegistrationToken))
		tokenHash = h[:]
	}
	var secret *string
	if issued.ClientSecret != "" {
		secret = &issued.ClientSecret
	}
	return s.createWith(ctx, a, actor, reason, "register", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO fhirwall_app_credentials (client_id, pending_secret, registration_token_sha256)
VALUES ($1, $2, $3)`, a.ClientID, secret, tokenHash)
		return err
	})
}

// VerifyRegistrationToken implements apps.Store. The hashes are compared in constant time, and an unknown
// client is compared against a hash nobody holds, so neither timing nor answer tells a client id exists.
func (s *Store) VerifyRegistrationToken(ctx context.Context, clientID, token string) error {
	var stored []byte
	err := s.pool.QueryRow(ctx, `SELECT registration_token_sha256 FROM fhirwall_app_credentials WHERE client_id = $1`, clientID).Scan(&stored)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("registry: verify registration token of %s: %w", clientID, err)
	}
	got := sha256.Sum256([]byte(token))
	want := make([]byte, sha256.Size)
	ok := len(stored) == sha256.Size
	if ok {
		copy(want, stored)
	}
	if subtle.ConstantTimeCompare(got[:], want) != 1 || !ok || token == "" {
		return apps.ErrUnauthorized
	}
	return nil
}

// Sync implements apps.Store: the app's outbox row.
func (s *Store) Sync(ctx context.Context, clientID string) (apps.SyncState, error) {
	var (
		st            apps.SyncState
		since, synced *time.Time
		lastErr       *string
	)
	err := s.pool.QueryRow(ctx, `SELECT dirty_since, attempts, last_error, synced_at FROM fhirwall_idp_sync WHERE client_id = $1`,
		clientID).Scan(&since, &st.Attempts, &lastErr, &synced)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return apps.SyncState{}, fmt.Errorf("registry: sync %s: %w", clientID, apps.ErrNotFound)
	case err != nil:
		return apps.SyncState{}, fmt.Errorf("registry: sync %s: %w", clientID, err)
	}
	if since != nil {
		st.Pending, st.Since = true, since.UTC()
	}
	if lastErr != nil {
		st.LastError = *lastErr
	}
	if synced != nil {
		st.SyncedAt = synced.UTC()
	}
	return st, nil
}

// SyncJob is an app whose client waits to be synced: Generation is the change it was read at.
type SyncJob struct {
	ClientID   string
	Generation int64
	Attempts   int
}

// DueSyncs lists the apps whose changes wait for the identity provider and whose next attempt is due, the
// longest waiting first, at most limit.
func (s *Store) DueSyncs(ctx context.Context, limit int) ([]SyncJob, error) {
	rows, err := s.pool.Query(ctx, `SELECT client_id, generation, attempts FROM fhirwall_idp_sync
WHERE dirty_since IS NOT NULL AND (next_attempt IS NULL OR next_attempt <= $1) ORDER BY next_attempt LIMIT $2`, s.timeNow(), limit)
	if err != nil {
		return nil, fmt.Errorf("registry: due syncs: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SyncJob, error) {
		var j SyncJob
		return j, r.Scan(&j.ClientID, &j.Generation, &j.Attempts)
	})
	if err != nil {
		return nil, fmt.Errorf("registry: due syncs: %w", err)
	}
	return jobs, nil
}

// PendingSyncs counts the apps whose changes wait for the identity provider.
func (s *Store) PendingSyncs(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM fhirwall_idp_sync WHERE dirty_since IS NOT NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("registry: pending syncs: %w", err)
	}
	return n, nil
}

// PendingSecret is the client secret a registration issued that the identity provider does not have yet
// ("" when none waits).
func (s *Store) PendingSecret(ctx context.Context, clientID string) (string, error) {
	var secret *string
	err := s.pool.QueryRow(ctx, `SELECT pending_secret FROM fhirwall_app_credentials WHERE client_id = $1`, clientID).Scan(&secret)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && secret == nil):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("registry: pending secret of %s: %w", clientID, err)
	}
	return *secret, nil
}

// SyncDone records that the identity provider matches the app as of job: the pending secret (delivered with
// it) is erased, and the app is clean unless a change came after job was read.
func (s *Store) SyncDone(ctx context.Context, job SyncJob) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE fhirwall_app_credentials SET pending_secret = NULL WHERE client_id = $1`, job.ClientID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE fhirwall_idp_sync SET synced_at = $3,
	dirty_since = CASE WHEN generation = $2 THEN NULL ELSE dirty_since END,
	attempts = CASE WHEN generation = $2 THEN 0 ELSE attempts END,
	last_error = CASE WHEN generation = $2 THEN NULL ELSE last_error END
WHERE client_id = $1`, job.ClientID, job.Generation, s.timeNow())
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: sync done %s: %w", job.ClientID, err)
	}
	return nil
}

// SyncFailed records a failed attempt: the app stays dirty, with the error, until retryAt.
func (s *Store) SyncFailed(ctx context.Context, clientID, lastError string, retryAt time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE fhirwall_idp_sync SET attempts = attempts + 1, last_error = $2, next_attempt = $3
WHERE client_id = $1`, clientID, lastError, retryAt.UTC())
	if err != nil {
		return fmt.Errorf("registry: sync failed %s: %w", clientID, err)
	}
	return nil
}

// MarkSynced records that the identity provider was found matching the app by a full comparison (the
// reconcile loop): clean, unless a change waits.
func (s *Store) MarkSynced(ctx context.Context, clientID string) error {
	_, err := s.pool.Exec(ctx, `UPDATE fhirwall_idp_sync SET synced_at = $2 WHERE client_id = $1 AND dirty_since IS NULL`, clientID, s.timeNow())
	return err
}

// MarkDirty makes the app wait for the identity provider again (the reconcile loop found drift that only a
// full sync repairs) and announces it.
func (s *Store) MarkDirty(ctx context.Context, clientID string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := markDirty(ctx, tx, clientID, s.timeNow()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, SyncChannel, clientID)
		return err
	})
}

// Audit writes ev through the store's Auditor: the sync's own records (a Keycloak client corrected or
// removed by the reconcile loop, an adoption) go into the same stream as every registry change.
func (s *Store) Audit(ctx context.Context, ev apps.Event) error {
	if ev.Time.IsZero() {
		ev.Time = s.timeNow()
	}
	if err := s.audit(context.WithoutCancel(ctx), ev); err != nil {
		return fmt.Errorf("%w: %w", apps.ErrAuditFailed, err)
	}
	return nil
}

// ErrNotLeader means another replica holds the sync's lock.
var ErrNotLeader = errors.New("registry: another replica runs the identity provider sync")

// Leader is this replica's hold on the sync: a dedicated connection holding a session advisory lock (freed
// by PostgreSQL if the replica dies) and LISTENing on SyncChannel.
type Leader struct{ conn *pgx.Conn }

// Lead takes the sync's lock for name (the realm the sync owns) or returns ErrNotLeader. The lock is per
// schema, so registries in separate schemas of one database (tests) do not contend.
func (s *Store) Lead(ctx context.Context, name string) (*Leader, error) {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil, fmt.Errorf("registry: sync lock: %w", err)
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('fhirwall_idp_sync:' || current_schema() || ':' || $1))`, name).Scan(&got); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("registry: sync lock: %w", err)
	}
	if !got {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, ErrNotLeader
	}
	if _, err := conn.Exec(ctx, `LISTEN `+SyncChannel); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("registry: sync listen: %w", err)
	}
	return &Leader{conn: conn}, nil
}

// Wait returns when a change is announced (its client id), when d has passed (""), or with an error when
// the connection, and with it the lock, is lost.
func (l *Leader) Wait(ctx context.Context, d time.Duration) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, err := l.conn.WaitForNotification(wctx)
	switch {
	case err == nil:
		return n.Payload, nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case wctx.Err() != nil && pgconn.Timeout(err):
		// The wait ended by its own timeout; the connection (and the lock) must still be alive.
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		return "", l.conn.Ping(pctx)
	}
	return "", err
}

// Release frees the lock and the connection.
func (l *Leader) Release() { _ = l.conn.Close(context.Background()) }

package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSchema is created on OpenPostgres when missing. A notification's body is stored as built (bytea): it is
// never rebuilt. lease_until NULL means nobody holds the row.
const pgSchema = `
CREATE TABLE IF NOT EXISTS fhirwall_pa_subscriptions (
	id           text        PRIMARY KEY,
	client_id    text        NOT NULL,
	filter       text[]      NOT NULL,
	endpoint     text        NOT NULL,
	headers      text[]      NOT NULL,
	content      text        NOT NULL,
	heartbeat_ms bigint      NOT NULL DEFAULT 0,
	timeout_ms   bigint      NOT NULL,
	status       text        NOT NULL,
	resource     bytea       NOT NULL,
	created      timestamptz NOT NULL,
	events       bigint      NOT NULL DEFAULT 0,
	last_sent    timestamptz,
	attempts     integer     NOT NULL DEFAULT 0,
	next_attempt timestamptz NOT NULL,
	lease_until  timestamptz
);
CREATE INDEX IF NOT EXISTS fhirwall_pa_subscriptions_filter ON fhirwall_pa_subscriptions USING gin (filter);
CREATE INDEX IF NOT EXISTS fhirwall_pa_subscriptions_client ON fhirwall_pa_subscriptions (client_id);
CREATE TABLE IF NOT EXISTS fhirwall_pa_notifications (
	subscription_id text        NOT NULL REFERENCES fhirwall_pa_subscriptions (id),
	event_number    bigint      NOT NULL,
	request_id      text        NOT NULL,
	version         integer     NOT NULL,
	patients        text[]      NOT NULL,
	body            bytea       NOT NULL,
	state           text        NOT NULL,
	attempts        integer     NOT NULL DEFAULT 0,
	next_attempt    timestamptz NOT NULL DEFAULT 'epoch',
	lease_until     timestamptz,
	created         timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (subscription_id, event_number),
	UNIQUE (subscription_id, request_id, version)
);
CREATE INDEX IF NOT EXISTS fhirwall_pa_notifications_pending ON fhirwall_pa_notifications (subscription_id, event_number)
	WHERE state = 'pending';`

// Postgres is the Store every replica shares: claims use FOR UPDATE SKIP LOCKED plus a lease, so two
// replicas never send the same message at once, and a replica that dies mid-delivery leaves a lease that
// expires and lets another one retry.
type Postgres struct {
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to dsn and creates the tables when missing.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: %w", err)
	}
	if _, err := pool.Exec(ctx, pgSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("subscriptions: create tables: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

// Close releases the connections.
func (p *Postgres) Close() { p.pool.Close() }

const subColumns = `id, client_id, filter, endpoint, headers, content, heartbeat_ms, timeout_ms, status, resource,
	created, events, last_sent, attempts, next_attempt, lease_until`

func scanSub(row pgx.Row) (Subscription, error) {
	var s Subscription
	var hb, to int64
	var last, lease *time.Time
	err := row.Scan(&s.ID, &s.ClientID, &s.Filter, &s.Endpoint, &s.Headers, &s.Content, &hb, &to, &s.Status, &s.Resource,
		&s.Created, &s.Events, &last, &s.Attempts, &s.NextAttempt, &lease)
	s.HeartbeatPeriod, s.Timeout = time.Duration(hb)*time.Millisecond, time.Duration(to)*time.Millisecond
	if last != nil {
		s.LastSent = *last
	}
	if lease != nil {
		s.Lease = *lease
	}
	return s, err
}

// Create implements Store.
func (p *Postgres) Create(ctx context.Context, s Subscription) error {
	_, err := p.pool.Exec(ctx, `INSERT INTO fhirwall_pa_subscriptions
	(id, client_id, filter, endpoint, headers, content, heartbeat_ms, timeout_ms, status, resource, created, next_attempt)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		s.ID, s.ClientID, nonNil(s.Filter), s.Endpoint, nonNil(s.Headers), s.Content, s.HeartbeatPeriod.Milliseconds(),
		s.Timeout.Milliseconds(), s.Status, s.Resource, s.Created, s.NextAttempt)
	if err != nil {
		return fmt.Errorf("subscriptions: create: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Get implements Store.
func (p *Postgres) Get(ctx context.Context, id string) (Subscription, error) {
	s, err := scanSub(p.pool.QueryRow(ctx, `SELECT `+subColumns+` FROM fhirwall_pa_subscriptions WHERE id = $1`, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Subscription{}, ErrNotFound
	case err != nil:
		return Subscription{}, fmt.Errorf("subscriptions: get: %w", err)
	}
	return s, nil
}

// Live implements Store.
func (p *Postgres) Live(ctx context.Context, clientID string) (int, error) {
	var n int
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM fhirwall_pa_subscriptions
	WHERE client_id = $1 AND status IN ('requested', 'active')`, clientID).Scan(&n); err != nil {
		return 0, fmt.Errorf("subscriptions: live: %w", err)
	}
	return n, nil
}

// SetOff implements Store.
func (p *Postgres) SetOff(ctx context.Context, id string) error {
	tag, err := p.pool.Exec(ctx, `UPDATE fhirwall_pa_subscriptions SET status = 'off' WHERE id = $1`, id)
	switch {
	case err != nil:
		return fmt.Errorf("subscriptions: off: %w", err)
	case tag.RowsAffected() == 0:
		return ErrNotFound
	}
	return nil
}

// Enqueue implements Store in one transaction: the matching subscriptions are locked, so two deciders (or
// the same decision notified twice) number events one after the other and never twice.
func (p *Postgres) Enqueue(ctx context.Context, requestID string, version int, identifiers, patients []string,
	build func(Subscription, int64) ([]byte, error)) (int, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `SELECT `+subColumns+` FROM fhirwall_pa_subscriptions
	WHERE status IN ('requested', 'active') AND filter && $1::text[] ORDER BY id FOR UPDATE`, nonNil(identifiers))
	if err != nil {
		return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSub(r) })
	if err != nil {
		return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
	}
	added := 0
	for _, s := range subs {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fhirwall_pa_notifications
		WHERE subscription_id = $1 AND request_id = $2 AND version = $3)`, s.ID, requestID, version).Scan(&exists); err != nil {
			return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
		}
		if exists {
			continue
		}
		num := s.Events + 1
		body, err := build(s, num)
		if err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO fhirwall_pa_notifications
		(subscription_id, event_number, request_id, version, patients, body, state) VALUES ($1, $2, $3, $4, $5, $6, 'pending')`,
			s.ID, num, requestID, version, nonNil(patients), body); err != nil {
			return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE fhirwall_pa_subscriptions SET events = $2 WHERE id = $1`, s.ID, num); err != nil {
			return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
		}
		added++
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("subscriptions: enqueue: %w", err)
	}
	return added, nil
}

// ClaimSubscriptions implements Store. The lease condition sits on the locked table itself, so a row
// another replica leased between this statement's snapshot and its lock is re-checked and skipped.
func (p *Postgres) ClaimSubscriptions(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Subscription, error) {
	until := now.Add(lease).Truncate(time.Microsecond)
	rows, err := p.pool.Query(ctx, `UPDATE fhirwall_pa_subscriptions SET lease_until = $2, attempts = attempts + 1
	WHERE id IN (SELECT id FROM fhirwall_pa_subscriptions
		WHERE (lease_until IS NULL OR lease_until <= $1) AND next_attempt <= $1
		AND (status = 'requested' OR (status = 'active' AND heartbeat_ms > 0
			AND coalesce(last_sent, created) + heartbeat_ms * interval '1 millisecond' <= $1))
		ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
	RETURNING `+subColumns, now, until, limit)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: claim: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Subscription, error) { return scanSub(r) })
	if err != nil {
		return nil, fmt.Errorf("subscriptions: claim: %w", err)
	}
	return subs, nil
}

// FinishSubscription implements Store; the lease is the fencing token.
func (p *Postgres) FinishSubscription(ctx context.Context, id string, lease time.Time, r Result) error {
	tag, err := p.pool.Exec(ctx, `UPDATE fhirwall_pa_subscriptions SET lease_until = NULL,
		attempts     = CASE WHEN $3 THEN 0 ELSE attempts END,
		last_sent    = CASE WHEN $3 THEN $5 ELSE last_sent END,
		next_attempt = CASE WHEN $3 THEN $5 WHEN $4 THEN next_attempt ELSE $6 END,
		status       = CASE WHEN $3 AND status = 'requested' THEN 'active'
		                    WHEN $4 AND status IN ('requested', 'active') THEN 'error' ELSE status END
	WHERE id = $1 AND lease_until = $2`, id, lease, r.Delivered, r.GiveUp, r.At, r.Next)
	if err != nil {
		return fmt.Errorf("subscriptions: finish: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := p.Get(ctx, id); err != nil {
			return err
		}
		return ErrLeaseLost
	}
	return nil
}

const noteColumns = `n.subscription_id, n.event_number, n.request_id, n.version, n.patients, n.body, n.state, n.attempts,
	n.next_attempt, n.lease_until, n.created`

func scanNote(row pgx.Row, extra ...any) (Notification, error) {
	var n Notification
	var lease *time.Time
	err := row.Scan(append([]any{&n.SubscriptionID, &n.EventNumber, &n.RequestID, &n.Version, &n.Patients, &n.Body, &n.State,
		&n.Attempts, &n.NextAttempt, &lease, &n.Created}, extra...)...)
	if lease != nil {
		n.Lease = *lease
	}
	return n, err
}

// ClaimNotifications implements Store: per active subscription its lowest pending event, if due and free.
func (p *Postgres) ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Claimed, error) {
	until := now.Add(lease).Truncate(time.Microsecond)
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: claim: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `WITH heads AS (
		SELECT DISTINCT ON (n.subscription_id) n.subscription_id, n.event_number
		FROM fhirwall_pa_notifications n JOIN fhirwall_pa_subscriptions s ON s.id = n.subscription_id
		WHERE n.state = 'pending' AND s.status = 'active'
		ORDER BY n.subscription_id, n.event_number
	), due AS (
		SELECT n.subscription_id, n.event_number FROM fhirwall_pa_notifications n
		JOIN heads h ON h.subscription_id = n.subscription_id AND h.event_number = n.event_number
		WHERE n.state = 'pending' AND (n.lease_until IS NULL OR n.lease_until <= $1) AND n.next_attempt <= $1
		ORDER BY n.subscription_id LIMIT $3
		FOR UPDATE OF n SKIP LOCKED
	)
	UPDATE fhirwall_pa_notifications n SET lease_until = $2, attempts = n.attempts + 1
	FROM due WHERE n.subscription_id = due.subscription_id AND n.event_number = due.event_number
	RETURNING `+noteColumns, now, until, limit)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: claim: %w", err)
	}
	notes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) { return scanNote(r) })
	if err != nil {
		return nil, fmt.Errorf("subscriptions: claim: %w", err)
	}
	out := make([]Claimed, 0, len(notes))
	for _, n := range notes {
		s, err := scanSub(tx.QueryRow(ctx, `SELECT `+subColumns+` FROM fhirwall_pa_subscriptions WHERE id = $1`, n.SubscriptionID))
		if err != nil {
			return nil, fmt.Errorf("subscriptions: claim: %w", err)
		}
		out = append(out, Claimed{Notification: n, Sub: s})
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("subscriptions: claim: %w", err)
	}
	return out, nil
}

// FinishNotification implements Store; the lease is the fencing token.
func (p *Postgres) FinishNotification(ctx context.Context, subID string, eventNumber int64, lease time.Time, r Result) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("subscriptions: finish: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tag, err := tx.Exec(ctx, `UPDATE fhirwall_pa_notifications SET lease_until = NULL,
		state        = CASE WHEN $4 THEN 'delivered' WHEN $5 THEN 'failed' ELSE state END,
		next_attempt = CASE WHEN $4 OR $5 THEN next_attempt ELSE $6 END
	WHERE subscription_id = $1 AND event_number = $2 AND lease_until = $3`, subID, eventNumber, lease, r.Delivered, r.GiveUp, r.Next)
	if err != nil {
		return fmt.Errorf("subscriptions: finish: %w", err)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fhirwall_pa_notifications
		WHERE subscription_id = $1 AND event_number = $2)`, subID, eventNumber).Scan(&exists); err != nil {
			return fmt.Errorf("subscriptions: finish: %w", err)
		}
		if !exists {
			return ErrNotFound
		}
		return ErrLeaseLost
	}
	switch {
	case r.Delivered:
		_, err = tx.Exec(ctx, `UPDATE fhirwall_pa_subscriptions SET last_sent = $2 WHERE id = $1`, subID, r.At)
	case r.GiveUp:
		_, err = tx.Exec(ctx, `UPDATE fhirwall_pa_subscriptions SET status = 'error' WHERE id = $1 AND status = 'active'`, subID)
	}
	if err != nil {
		return fmt.Errorf("subscriptions: finish: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("subscriptions: finish: %w", err)
	}
	return nil
}

// Notifications implements Store.
func (p *Postgres) Notifications(ctx context.Context, subID string) ([]Notification, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+noteColumns+` FROM fhirwall_pa_notifications n
	WHERE n.subscription_id = $1 ORDER BY n.event_number`, subID)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: notifications: %w", err)
	}
	notes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notification, error) { return scanNote(r) })
	if err != nil {
		return nil, fmt.Errorf("subscriptions: notifications: %w", err)
	}
	return notes, nil
}

// Package postgres keeps the app registry in PostgreSQL (apps.Store) and serves the gateway a live view of it
// (decision.Registry) that every replica refreshes within a second of a change, through LISTEN/NOTIFY.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// Channel is the NOTIFY channel a change is announced on; the payload is the client id.
const Channel = "fhirwall_registry"

// schema is created on Open when missing. The app itself is one jsonb document; the columns are what is
// queried or checked on (state for the view, version for optimistic concurrency). The document's own state,
// version and updated_at are overwritten from the columns on read.
const schema = `
CREATE TABLE IF NOT EXISTS fhirwall_apps (
	client_id  text        PRIMARY KEY,
	doc        jsonb       NOT NULL,
	state      text        NOT NULL,
	version    integer     NOT NULL,
	updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS fhirwall_app_events (
	id        text        PRIMARY KEY,
	seq       bigint      GENERATED ALWAYS AS IDENTITY,
	client_id text        NOT NULL,
	time      timestamptz NOT NULL,
	actor     text        NOT NULL,
	action    text        NOT NULL,
	event     jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS fhirwall_app_events_by_client ON fhirwall_app_events (client_id, seq);
` + credentialsSchema + syncSchema + callsSchema

// Store is an apps.Store in PostgreSQL. Every change is one transaction: the row (version-checked), its
// event, the audit record (its failure rolls everything back), and a notification to every replica's view.
type Store struct {
	pool  *pgxpool.Pool
	dsn   string
	audit apps.Auditor
	log   *slog.Logger
	now   func() time.Time
	reg   *Registry
}

var _ apps.Store = (*Store)(nil)

// Open connects to dsn, creates the tables when missing and loads the registry view. audit is required: a
// store that could change apps unaudited is refused. The view (Registry) must be kept fresh by running its
// Watch; without it Lookup fails closed once the view is older than the staleness bound.
func Open(ctx context.Context, dsn string, audit apps.Auditor, log *slog.Logger) (*Store, error) {
	if audit == nil {
		return nil, errors.New("registry: postgres: no auditor: every change must be audited")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("registry: postgres: %w", err)
	}
	// Two replicas starting together may both create the tables: CREATE ... IF NOT EXISTS is not atomic
	// against a concurrent CREATE, so creation is serialised by an advisory lock held in a transaction.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fhirwall_apps'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("registry: postgres: create tables: %w", err)
	}
	s := &Store{pool: pool, dsn: dsn, audit: audit, log: log, now: time.Now}
	s.reg = newRegistry(pool, dsn, log)
	if err := s.reg.Reload(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Registry is the gateway's view of this store.
func (s *Store) Registry() *Registry { return s.reg }

// Close releases the connections. Watch ends with its own context.
func (s *Store) Close() { s.pool.Close() }

func (s *Store) timeNow() time.Time { return s.now().UTC().Truncate(time.Microsecond) } // timestamptz precision

// Create implements apps.Store. The app's State is kept as given (empty: pending): importing registers apps
// already active, and a sandbox app is registered pending and then approved and activated by its caller.
// Create registers nothing deactivated. It does not apply the registration policy (the caller does, with the
// APIs' offered scopes: apps.ValidateRegistration); it refuses only what the view could not serve.
func (s *Store) Create(ctx context.Context, a apps.App, actor, reason string) (apps.App, error) {
	return s.create(ctx, a, actor, reason, "register")
}

func (s *Store) create(ctx context.Context, a apps.App, actor, reason, action string) (apps.App, error) {
	return s.createWith(ctx, a, actor, reason, action, nil)
}

// createWith is create with more to write in the same transaction (a registration's credentials).
func (s *Store) createWith(ctx context.Context, a apps.App, actor, reason, action string, also func(pgx.Tx) error) (apps.App, error) {
	if a.State == "" {
		a.State = apps.StatePending
	}
	if err := storable(a); err != nil {
		return apps.App{}, err
	}
	if a.State == apps.StateDeactivated {
		return apps.App{}, fmt.Errorf("registry: create %s: %w: an app is not registered deactivated", a.ClientID, apps.ErrTransition)
	}
	now := s.timeNow()
	a.CreatedAt, a.UpdatedAt, a.Version = now, now, 1
	err := s.change(ctx, a.ClientID, func(tx pgx.Tx) (apps.Event, error) {
		doc, err := json.Marshal(a)
		if err != nil {
			return apps.Event{}, err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO fhirwall_apps (client_id, doc, state, version, updated_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO NOTHING`, a.ClientID, doc, string(a.State), a.Version, a.UpdatedAt)
		if err != nil {
			return apps.Event{}, err
		}
		if tag.RowsAffected() == 0 {
			return apps.Event{}, apps.ErrExists
		}
		if also != nil {
			if err := also(tx); err != nil {
				return apps.Event{}, err
			}
		}
		after := a
		return apps.Event{Time: now, Actor: actor, Action: action, ClientID: a.ClientID, Reason: reason, After: &after}, nil
	})
	if err != nil {
		return apps.App{}, fmt.Errorf("registry: create %s: %w", a.ClientID, err)
	}
	return a, nil
}

// Update implements apps.Store: every field but the state, the creation time and the version is replaced.
// The row is locked while it is compared, so of two updates naming the same version one wins and the other
// gets ErrConflict.
func (s *Store) Update(ctx context.Context, a apps.App, actor, reason string) (apps.App, error) {
	var out apps.App
	err := s.change(ctx, a.ClientID, func(tx pgx.Tx) (apps.Event, error) {
		before, err := getForUpdate(ctx, tx, a.ClientID)
		if err != nil {
			return apps.Event{}, err
		}
		if before.Version != a.Version {
			return apps.Event{}, fmt.Errorf("%w: version %d, read %d", apps.ErrConflict, before.Version, a.Version)
		}
		next := a
		next.State, next.CreatedAt = before.State, before.CreatedAt
		if err := storable(next); err != nil {
			return apps.Event{}, err
		}
		now := s.timeNow()
		if err := write(ctx, tx, &next, before.Version, now); err != nil {
			return apps.Event{}, err
		}
		out = next
		return apps.Event{Time: now, Actor: actor, Action: "update", ClientID: a.ClientID, Reason: reason, Before: &before, After: &next}, nil
	})
	if err != nil {
		return apps.App{}, fmt.Errorf("registry: update %s: %w", a.ClientID, err)
	}
	return out, nil
}

// Transition implements apps.Store. Narrowing is for approval only: narrowAPIs and narrowScopes (nil: keep)
// replace the approved ones and must stay within what was requested (ErrInvalid). Approving an app that has
// nothing approved yet, without narrowing, approves what it requested.
func (s *Store) Transition(ctx context.Context, clientID string, to apps.State, actor, reason string, narrowAPIs, narrowScopes []string) (apps.App, error) {
	var out apps.App
	err := s.change(ctx, clientID, func(tx pgx.Tx) (apps.Event, error) {
		before, err := getForUpdate(ctx, tx, clientID)
		if err != nil {
			return apps.Event{}, err
		}
		action := apps.TransitionAction(before.State, to)
		if action == "" {
			return apps.Event{}, fmt.Errorf("%w: %s → %s", apps.ErrTransition, before.State, to)
		}
		next := before
		next.ApprovedAPIs, next.ApprovedScopes = slices.Clone(before.ApprovedAPIs), slices.Clone(before.ApprovedScopes)
		if (narrowAPIs != nil || narrowScopes != nil) && to != apps.StateApproved {
			return apps.Event{}, fmt.Errorf("%w: APIs and scopes are narrowed on approval only", apps.ErrInvalid)
		}
		if to == apps.StateApproved {
			if narrowAPIs == nil && len(next.ApprovedAPIs) == 0 {
				next.ApprovedAPIs = slices.Clone(before.RequestedAPIs)
			}
			if narrowScopes == nil && len(next.ApprovedScopes) == 0 {
				next.ApprovedScopes = slices.Clone(before.RequestedScopes)
			}
			if err := narrow(&next, narrowAPIs, narrowScopes); err != nil {
				return apps.Event{}, err
			}
		}
		next.State = to
		now := s.timeNow()
		if err := write(ctx, tx, &next, before.Version, now); err != nil {
			return apps.Event{}, err
		}
		out = next
		return apps.Event{Time: now, Actor: actor, Action: action, ClientID: clientID, Reason: reason, Before: &before, After: &next}, nil
	})
	if err != nil {
		return apps.App{}, fmt.Errorf("registry: %s %s: %w", to, clientID, err)
	}
	return out, nil
}

// narrow replaces a's approved APIs and scopes with the reviewer's, each within what a requested.
func narrow(a *apps.App, apis, scopes []string) error {
	var errs []error
	for _, api := range apis {
		if !slices.Contains(a.RequestedAPIs, api) {
			errs = append(errs, fmt.Errorf("%w: approved API %q was not requested", apps.ErrInvalid, api))
		}
	}
	for _, sc := range scopes {
		if !slices.ContainsFunc(a.RequestedScopes, func(r string) bool { return decision.Covers(r, sc) }) {
			errs = append(errs, fmt.Errorf("%w: approved scope %q is not covered by a requested scope", apps.ErrInvalid, sc))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if apis != nil {
		a.ApprovedAPIs = slices.Clone(apis)
	}
	if scopes != nil {
		a.ApprovedScopes = slices.Clone(scopes)
	}
	return nil
}

// change runs one change in a transaction: fn writes the row and returns its event; the event is written,
// audited and announced, then committed. Any error, the Auditor's included, rolls everything back.
func (s *Store) change(ctx context.Context, clientID string, fn func(pgx.Tx) (apps.Event, error)) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // after Commit: a no-op
	ev, err := fn(tx)
	if err != nil {
		return err
	}
	ev.ID = rand.Text()
	evDoc, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fhirwall_app_events (id, client_id, time, actor, action, event)
VALUES ($1, $2, $3, $4, $5, $6)`, ev.ID, ev.ClientID, ev.Time, ev.Actor, ev.Action, evDoc); err != nil {
		return err
	}
	// Audited before commit: nothing changes unaudited. A commit that fails after this leaves an audit record
	// of a change that did not happen, which the app's history (no event) shows; the reverse would be worse.
	if err := s.audit(context.WithoutCancel(ctx), ev); err != nil {
		return fmt.Errorf("%w: %w", apps.ErrAuditFailed, err)
	}
	// The identity provider must follow: the app is marked dirty in the same transaction, so no committed
	// change can be forgotten by the sync, and none that rolls back is ever synced.
	if err := markDirty(ctx, tx, clientID, ev.Time); err != nil {
		return err
	}
	// Delivered to every listener on commit, never before, never if rolled back (PostgreSQL NOTIFY).
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2), pg_notify($3, $2)`, Channel, clientID, SyncChannel); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	s.log.Info("app registry changed", "client_id", clientID, "action", ev.Action, "actor", ev.Actor, "event_id", ev.ID)
	return nil
}

// storable is what the store itself requires of an app: what the gateway's view must be able to serve.
func storable(a apps.App) error {
	if err := apps.ToClient(a).Validate(); err != nil {
		return fmt.Errorf("%w: %w", apps.ErrInvalid, err)
	}
	switch a.State {
	case apps.StatePending, apps.StateApproved, apps.StateActive, apps.StateSuspended, apps.StateDeactivated:
		return nil
	}
	return fmt.Errorf("%w: state %q", apps.ErrInvalid, a.State)
}

// write replaces the row read at version, advancing a's version and update time.
func write(ctx context.Context, tx pgx.Tx, a *apps.App, version int, now time.Time) error {
	a.Version, a.UpdatedAt = version+1, now
	doc, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE fhirwall_apps SET doc = $2, state = $3, version = $4, updated_at = $5
WHERE client_id = $1 AND version = $6`, a.ClientID, doc, string(a.State), a.Version, a.UpdatedAt, version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 { // the row is locked FOR UPDATE: unreachable unless that changes
		return apps.ErrConflict
	}
	return nil
}

const columns = `doc, state, version, updated_at`

func scanApp(row pgx.Row) (apps.App, error) {
	var (
		doc     []byte
		state   string
		a       apps.App
		updated time.Time
	)
	if err := row.Scan(&doc, &state, &a.Version, &updated); err != nil {
		return apps.App{}, err
	}
	version := a.Version
	if err := json.Unmarshal(doc, &a); err != nil {
		return apps.App{}, fmt.Errorf("app document: %w", err)
	}
	a.State, a.Version, a.UpdatedAt = apps.State(state), version, updated.UTC()
	a.CreatedAt = a.CreatedAt.UTC()
	return a, nil
}

func getForUpdate(ctx context.Context, tx pgx.Tx, clientID string) (apps.App, error) {
	a, err := scanApp(tx.QueryRow(ctx, `SELECT `+columns+` FROM fhirwall_apps WHERE client_id = $1 FOR UPDATE`, clientID))
	if errors.Is(err, pgx.ErrNoRows) {
		return apps.App{}, apps.ErrNotFound
	}
	return a, err
}

// Get implements apps.Store.
func (s *Store) Get(ctx context.Context, clientID string) (apps.App, error) {
	a, err := scanApp(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM fhirwall_apps WHERE client_id = $1`, clientID))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return apps.App{}, fmt.Errorf("registry: %s: %w", clientID, apps.ErrNotFound)
	case err != nil:
		return apps.App{}, fmt.Errorf("registry: get %s: %w", clientID, err)
	}
	return a, nil
}

// List implements apps.Store.
func (s *Store) List(ctx context.Context) ([]apps.App, error) {
	out, err := listApps(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	return out, nil
}

func listApps(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]apps.App, error) {
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM fhirwall_apps ORDER BY client_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []apps.App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// History implements apps.Store. An unknown client id has no history (ErrNotFound).
func (s *Store) History(ctx context.Context, clientID string) ([]apps.Event, error) {
	rows, err := s.pool.Query(ctx, `SELECT event FROM fhirwall_app_events WHERE client_id = $1 ORDER BY seq`, clientID)
	if err != nil {
		return nil, fmt.Errorf("registry: history %s: %w", clientID, err)
	}
	defer rows.Close()
	var out []apps.Event
	for rows.Next() {
		var doc []byte
		var ev apps.Event
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("registry: history %s: %w", clientID, err)
		}
		if err := json.Unmarshal(doc, &ev); err != nil {
			return nil, fmt.Errorf("registry: history %s: event document: %w", clientID, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: history %s: %w", clientID, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("registry: history %s: %w", clientID, apps.ErrNotFound)
	}
	return out, nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// Timing of the view. A change reaches every replica's view when its notification arrives (milliseconds);
// the periodic reload only repairs what a notification could have missed.
const (
	// DefaultStaleAfter: a view not confirmed fresh for this long refuses lookups (fail closed, 503) rather
	// than honour an app that may have been deactivated meanwhile.
	DefaultStaleAfter = 10 * time.Second
	// reloadEvery is the safety-net full reload.
	reloadEvery = 30 * time.Second
	// heartbeat: how often an idle LISTEN connection is checked; while it answers, no change has been missed
	// and the view is fresh.
	heartbeat = 1 * time.Second
	// maxBackoff bounds the wait between reconnection attempts.
	maxBackoff = 2 * time.Second
)

// ErrStale means the view could not be refreshed for longer than its bound: Lookup refuses rather than
// serve a decision from it.
var ErrStale = errors.New("app registry view is stale: PostgreSQL unreachable")

// Registry is the gateway's view of the app registry: a snapshot of every app as a decision.Client, rebuilt
// whole from fhirwall_apps and swapped atomically. Lookup never touches the database.
type Registry struct {
	pool       *pgxpool.Pool
	dsn        string
	log        *slog.Logger
	now        func() time.Time
	staleAfter time.Duration

	snap  atomic.Pointer[snapshot]
	fresh atomic.Int64 // unix nanoseconds when the view was last known to be current
	// listenPID is the backend pid of the LISTEN connection (0 when none): for tests that cut it.
	listenPID atomic.Uint32
}

type snapshot struct {
	clients map[string]decision.Client
}

var _ decision.Registry = (*Registry)(nil)

func newRegistry(pool *pgxpool.Pool, dsn string, log *slog.Logger) *Registry {
	r := &Registry{pool: pool, dsn: dsn, log: log, now: time.Now, staleAfter: DefaultStaleAfter}
	r.snap.Store(&snapshot{clients: map[string]decision.Client{}})
	return r
}

// Lookup implements decision.Registry: from the snapshot, or ErrStale when the view is older than its bound.
// Apps in any state are found (the gateway refuses the inactive ones as client_inactive).
func (r *Registry) Lookup(ctx context.Context, clientID string) (decision.Client, error) {
	if err := r.Ready(ctx); err != nil {
		return decision.Client{}, err
	}
	c, ok := r.snap.Load().clients[clientID]
	if !ok {
		return decision.Client{}, decision.ErrUnknownClient
	}
	// The snapshot is shared by every request: hand out copies of its slices.
	c.APIs, c.Scopes, c.NotifyHosts = slices.Clone(c.APIs), slices.Clone(c.Scopes), slices.Clone(c.NotifyHosts)
	return c, nil
}

// Ready reports ErrStale while the view is older than its bound: the replica refuses every authenticated
// request then, so /readyz takes it out of rotation until PostgreSQL answers again.
func (r *Registry) Ready(context.Context) error {
	if age := r.now().Sub(time.Unix(0, r.fresh.Load())); age > r.staleAfter {
		return fmt.Errorf("%w (last fresh %s ago)", ErrStale, age.Round(time.Millisecond))
	}
	return nil
}

// Len is the number of apps in the view.
func (r *Registry) Len() int { return len(r.snap.Load().clients) }

// Reload rebuilds the view from the table. On error the view is left as it was (and ages).
func (r *Registry) Reload(ctx context.Context) error {
	started := r.now()
	list, err := listApps(ctx, r.pool)
	if err != nil {
		return fmt.Errorf("registry: reload: %w", err)
	}
	clients := make(map[string]decision.Client, len(list))
	for _, a := range list {
		clients[a.ClientID] = apps.ToClient(a)
	}
	r.snap.Store(&snapshot{clients: clients})
	r.markFresh(started) // fresh as of the query's start: a change committed later is notified later
	return nil
}

func (r *Registry) markFresh(t time.Time) {
	for {
		old := r.fresh.Load()
		if t.UnixNano() <= old || r.fresh.CompareAndSwap(old, t.UnixNano()) {
			return
		}
	}
}

// Watch keeps the view fresh until ctx ends: a dedicated connection LISTENs on Channel, every notification
// reloads the view, and it is reloaded every 30 s anyway. A lost connection is re-established (with a full
// reload, since notifications sent meanwhile are lost); while it is down the view ages and, past the
// staleness bound, Lookup refuses. Watch returns ctx's error.
func (r *Registry) Watch(ctx context.Context) error {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for {
		established, err := r.listen(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if established { // the connection had been up: a new outage starts the backoff over
			backoff = firstBackoff
		}
		r.log.Warn("app registry: LISTEN connection lost; reconnecting", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// listen runs one LISTEN connection until it fails or ctx ends; established says whether it had been
// listening and loaded (so that the next attempt need not wait long).
func (r *Registry) listen(ctx context.Context) (established bool, err error) {
	conn, err := pgx.Connect(ctx, r.dsn)
	if err != nil {
		return false, err
	}
	defer func() {
		r.listenPID.Store(0)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return false, err
	}
	r.listenPID.Store(conn.PgConn().PID())
	// Listening first, then reloading: a change committed between the two is both in the reload and notified.
	if err := r.Reload(ctx); err != nil {
		return false, err
	}
	r.log.Info("app registry: listening for changes", "apps", r.Len())
	lastReload := r.now()
	for {
		wait, cancel := context.WithTimeout(ctx, heartbeat)
		n, err := conn.WaitForNotification(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err == nil:
			// Coalesce a burst: one reload serves every notification already received.
			for drain := true; drain; {
				c, cancel := context.WithTimeout(ctx, time.Millisecond)
				_, derr := conn.WaitForNotification(c)
				cancel()
				drain = derr == nil
			}
			if err := r.Reload(ctx); err != nil {
				return true, err
			}
			lastReload = r.now()
			r.log.Debug("app registry: reloaded on change", "client_id", n.Payload, "apps", r.Len())
			continue
		case !pgconn.Timeout(err) || conn.IsClosed():
			return true, err
		}
		// Idle: make sure the connection still answers; if it does, nothing has been missed.
		checked := r.now()
		ping, cancel := context.WithTimeout(ctx, heartbeat)
		err = conn.Ping(ping)
		cancel()
		if err != nil {
			return true, fmt.Errorf("heartbeat: %w", err)
		}
		if r.now().Sub(lastReload) >= reloadEvery {
			if err := r.Reload(ctx); err != nil {
				return true, err
			}
			lastReload = r.now()
			continue
		}
		r.markFresh(checked)
	}
}

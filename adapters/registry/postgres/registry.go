package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/adapters/pgwatch"
	"github.com/fhirwall/fhirwall/adapters/registry/apps"
	"github.com/fhirwall/fhirwall/internal/decision"
)

// DefaultStaleAfter: a view not confirmed fresh for this long refuses lookups (fail closed, 503) rather than
// honour an app that may have been deactivated meanwhile. A change reaches every replica's view when its
// notification arrives (milliseconds); the periodic reload (pgwatch.ReloadEvery) only repairs what a
// notification could have missed, and the idle heartbeat (pgwatch.Heartbeat) keeps the view fresh.
const DefaultStaleAfter = 10 * time.Second

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
	fresh pgwatch.Fresh
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
	return r.fresh.Check(r.now(), r.staleAfter, ErrStale)
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
	r.fresh.Mark(started) // fresh as of the query's start: a change committed later is notified later
	return nil
}

// Watch keeps the view fresh until ctx ends: a dedicated connection LISTENs on Channel, every notification
// reloads the view, and it is reloaded every 30 s anyway. A lost connection is re-established (with a full
// reload, since notifications sent meanwhile are lost); while it is down the view ages and, past the
// staleness bound, Lookup refuses. Watch returns ctx's error.
func (r *Registry) Watch(ctx context.Context) error {
	w := &pgwatch.Watch{
		DSN: r.dsn, Channel: Channel, Name: "app registry", Log: r.log,
		Now:       func() time.Time { return r.now() },
		Fresh:     &r.fresh,
		Reload:    r.Reload,
		Listening: func(pid uint32) { r.listenPID.Store(pid) },
		Reloaded: func(cause pgwatch.Cause, clientID string) {
			switch cause {
			case pgwatch.Connected:
				r.log.Info("app registry: listening for changes", "apps", r.Len())
			case pgwatch.Notified:
				r.log.Debug("app registry: reloaded on change", "client_id", clientID, "apps", r.Len())
			}
		},
	}
	return w.Run(ctx)
}

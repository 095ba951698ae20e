// Package pgwatch keeps a replica's in-memory view of PostgreSQL tables fresh: a dedicated connection
// LISTENs on the view's NOTIFY channel, every notification reloads the view, an idle connection is pinged
// so the view stays confirmed fresh, and a full reload runs every ReloadEvery anyway. The views
// (adapters/registry/postgres's app registry, adapters/registry/revocation's revocations) keep their own
// snapshots and staleness errors; the loop and the freshness clock are this package's.
package pgwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Timing of a watch. A change reaches the view when its notification arrives (milliseconds); the periodic
// reload only repairs what a notification could have missed.
const (
	// ReloadEvery is the safety-net full reload.
	ReloadEvery = 30 * time.Second
	// Heartbeat: how often an idle LISTEN connection is checked; while it answers, no change has been
	// missed and the view is fresh.
	Heartbeat = 1 * time.Second
	// firstBackoff and maxBackoff bound the wait between reconnection attempts.
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// Fresh is when a view was last known to be current. The zero value was never fresh.
type Fresh struct {
	at atomic.Int64 // unix nanoseconds
}

// Mark records that the view was current at t; an older t than the one recorded changes nothing.
func (f *Fresh) Mark(t time.Time) {
	for {
		old := f.at.Load()
		if t.UnixNano() <= old || f.at.CompareAndSwap(old, t.UnixNano()) {
			return
		}
	}
}

// Check returns stale, wrapped with the view's age, when at now the view has not been fresh for longer
// than bound; nil otherwise.
func (f *Fresh) Check(now time.Time, bound time.Duration, stale error) error {
	if age := now.Sub(time.Unix(0, f.at.Load())); age > bound {
		return fmt.Errorf("%w (last fresh %s ago)", stale, age.Round(time.Millisecond))
	}
	return nil
}

// Cause is why the watch reloaded the view.
type Cause int

// Causes of a reload.
const (
	Connected Cause = iota // the LISTEN connection was (re-)established: notifications may have been lost
	Notified               // a notification arrived
	Periodic               // ReloadEvery passed without one
)

// Watch is one view's watch.
type Watch struct {
	DSN     string // a dedicated connection is opened on it
	Channel string // the NOTIFY channel
	Name    string // the view's name in log lines ("app registry")
	Log     *slog.Logger
	Now     func() time.Time
	// Fresh is the view's clock: the idle heartbeat marks it. Reload marks it itself, as of its query's
	// start (a change committed later is notified later).
	Fresh *Fresh
	// Reload rebuilds the view whole; on error the view is left as it was (and ages).
	Reload func(ctx context.Context) error

	// Optional hooks.
	BeforePeriodic func(ctx context.Context)              // runs before each periodic reload
	Listening      func(pid uint32)                       // the LISTEN connection's backend pid once listening, 0 once closed
	Reloaded       func(cause Cause, notification string) // after each reload of the watch; notification is the payload of Notified
}

func (w *Watch) check() error {
	var errs []error
	if w.DSN == "" || w.Channel == "" || w.Name == "" {
		errs = append(errs, errors.New("pgwatch: DSN, Channel and Name are required"))
	}
	if w.Log == nil || w.Now == nil || w.Fresh == nil || w.Reload == nil {
		errs = append(errs, errors.New("pgwatch: Log, Now, Fresh and Reload are required"))
	}
	return errors.Join(errs...)
}

// Run keeps the view fresh until ctx ends. A lost connection is re-established (with a full reload, since
// notifications sent meanwhile are lost); while it is down the view ages, and past its bound the view
// refuses. Run returns ctx's error, or at once an error naming a missing field.
func (w *Watch) Run(ctx context.Context) error {
	if err := w.check(); err != nil {
		return err
	}
	backoff := firstBackoff
	for {
		established, err := w.listen(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if established { // the connection had been up: a new outage starts the backoff over
			backoff = firstBackoff
		}
		w.Log.Warn(w.Name+": LISTEN connection lost; reconnecting", "error", err, "retry_in", backoff)
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
func (w *Watch) listen(ctx context.Context) (established bool, err error) {
	conn, err := pgx.Connect(ctx, w.DSN)
	if err != nil {
		return false, err
	}
	listening := false
	defer func() {
		if listening && w.Listening != nil {
			w.Listening(0)
		}
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{w.Channel}.Sanitize()); err != nil {
		return false, err
	}
	if w.Listening != nil {
		listening = true
		w.Listening(conn.PgConn().PID())
	}
	// Listening first, then reloading: a change committed between the two is both in the reload and notified.
	if err := w.reload(ctx, Connected, ""); err != nil {
		return false, err
	}
	lastReload := w.Now()
	for {
		wait, cancel := context.WithTimeout(ctx, Heartbeat)
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
			if err := w.reload(ctx, Notified, n.Payload); err != nil {
				return true, err
			}
			lastReload = w.Now()
			continue
		case !pgconn.Timeout(err) || conn.IsClosed():
			return true, err
		}
		// Idle: make sure the connection still answers; if it does, nothing has been missed.
		checked := w.Now()
		ping, cancel := context.WithTimeout(ctx, Heartbeat)
		err = conn.Ping(ping)
		cancel()
		if err != nil {
			return true, fmt.Errorf("heartbeat: %w", err)
		}
		if w.Now().Sub(lastReload) >= ReloadEvery {
			if w.BeforePeriodic != nil {
				w.BeforePeriodic(ctx)
			}
			if err := w.reload(ctx, Periodic, ""); err != nil {
				return true, err
			}
			lastReload = w.Now()
			continue
		}
		w.Fresh.Mark(checked)
	}
}

func (w *Watch) reload(ctx context.Context, cause Cause, notification string) error {
	if err := w.Reload(ctx); err != nil {
		return err
	}
	if w.Reloaded != nil {
		w.Reloaded(cause, notification)
	}
	return nil
}

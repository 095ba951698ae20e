//go:build e2e

package pgwatch

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirwall/fhirwall/test/pgtest"
)

// watched records what a running Watch did.
type watched struct {
	mu      sync.Mutex
	pids    []uint32
	reloads []string // cause and notification
}

func (w *watched) listening(pid uint32) { w.mu.Lock(); w.pids = append(w.pids, pid); w.mu.Unlock() }

func (w *watched) reloaded(c Cause, n string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reloads = append(w.reloads, [...]string{"connected", "notified", "periodic"}[c]+" "+n)
}

func (w *watched) snapshot() ([]uint32, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint32(nil), w.pids...), append([]string(nil), w.reloads...)
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	for start := time.Now(); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// One watch against the stack's PostgreSQL: loaded once listening, reloaded on a notification with its
// payload, kept fresh by the heartbeat while idle, and re-established with a full reload after its
// connection is cut.
func TestWatchReloadsOnNotifyStaysFreshWhileIdleAndReconnects(t *testing.T) {
	dsn := pgtest.Schema(t, "pgwatch")
	channel := "fwtest_pgwatch_" + strings.ToLower(rand.Text()[:12])
	var fresh Fresh
	rec := &watched{}
	w := &Watch{
		DSN: dsn, Channel: channel, Name: "test view", Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: time.Now, Fresh: &fresh,
		Reload:    func(context.Context) error { fresh.Mark(time.Now()); return nil },
		Listening: rec.listening, Reloaded: rec.reloaded,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, 5*time.Second, "the first load", func() bool { _, r := rec.snapshot(); return len(r) == 1 })
	pids, reloads := rec.snapshot()
	if len(pids) != 1 || pids[0] == 0 || reloads[0] != "connected " {
		t.Fatalf("after connecting: pids %v, reloads %q", pids, reloads)
	}

	admin, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(context.Background(), `SELECT pg_notify($1, 'change-1')`, channel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the reload on a notification", func() bool { _, r := rec.snapshot(); return len(r) == 2 })
	if _, reloads := rec.snapshot(); reloads[1] != "notified change-1" {
		t.Fatalf("reloads %q, want the notification's", reloads)
	}

	// Idle: no reload, but the heartbeat keeps the view within a bound just over Heartbeat.
	time.Sleep(3 * Heartbeat)
	if err := fresh.Check(time.Now(), Heartbeat+500*time.Millisecond, errStaleFake); err != nil {
		t.Fatalf("idle watch: %v", err)
	}
	if _, reloads := rec.snapshot(); len(reloads) != 2 {
		t.Fatalf("idle watch reloaded: %q", reloads)
	}

	if _, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, int32(pids[0])); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the reconnection", func() bool { _, r := rec.snapshot(); return len(r) == 3 })
	pids, reloads = rec.snapshot()
	if len(pids) != 3 || pids[1] != 0 || pids[2] == 0 || pids[2] == pids[0] || reloads[2] != "connected " {
		t.Fatalf("after the cut: pids %v, reloads %q; want closed (0), a new connection and a full reload", pids, reloads)
	}
}

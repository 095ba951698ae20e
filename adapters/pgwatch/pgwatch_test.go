package pgwatch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var errStaleFake = errors.New("view stale (fake)")

func TestFreshNeverMarkedIsStale(t *testing.T) {
	var f Fresh
	if err := f.Check(time.Now(), time.Hour, errStaleFake); !errors.Is(err, errStaleFake) {
		t.Fatalf("never marked: %v, want the view's stale error", err)
	}
}

func TestFreshIsStaleOnlyPastItsBound(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var f Fresh
	f.Mark(t0)
	for _, tc := range []struct {
		after time.Duration
		stale bool
	}{{0, false}, {10 * time.Second, false}, {10*time.Second + time.Millisecond, true}} {
		err := f.Check(t0.Add(tc.after), 10*time.Second, errStaleFake)
		if got := errors.Is(err, errStaleFake); got != tc.stale {
			t.Errorf("%s after: %v, want stale %v", tc.after, err, tc.stale)
		}
		if tc.stale && !strings.Contains(err.Error(), "last fresh 10.001s ago") {
			t.Errorf("stale error %q does not say how old the view is", err)
		}
	}
}

func TestFreshNeverGoesBack(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var f Fresh
	f.Mark(t0.Add(5 * time.Second))
	f.Mark(t0) // a reload that started earlier but finished later
	if err := f.Check(t0.Add(14*time.Second), 10*time.Second, errStaleFake); err != nil {
		t.Fatalf("an older mark moved the clock back: %v", err)
	}
}

func TestRunRefusesAWatchMissingItsParts(t *testing.T) {
	w := &Watch{DSN: "postgres://127.0.0.1:1/x"}
	if err := w.Run(context.Background()); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("Run of an incomplete watch: %v, want an error naming the missing fields", err)
	}
}

// With PostgreSQL unreachable the watch retries until ctx ends, never reloads, and the view stays stale.
func TestRunWithoutPostgreSQLRetriesAndLeavesTheViewStale(t *testing.T) {
	var reloads atomic.Int32
	var f Fresh
	w := &Watch{
		DSN: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", Channel: "fwtest", Name: "test view",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now, Fresh: &f,
		Reload: func(context.Context) error { reloads.Add(1); return nil },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want ctx's error", err)
	}
	if reloads.Load() != 0 {
		t.Errorf("%d reloads without a connection", reloads.Load())
	}
	if err := f.Check(time.Now(), time.Hour, errStaleFake); err == nil {
		t.Error("the view was marked fresh without PostgreSQL")
	}
}

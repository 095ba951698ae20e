package postgres

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestStaleViewIsNotReadyAndRefusesLookups(t *testing.T) {
	r := newRegistry(nil, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	now := t0
	r.now = func() time.Time { return now }
	r.fresh.Mark(t0)
	if err := r.Ready(context.Background()); err != nil {
		t.Fatalf("fresh view not ready: %v", err)
	}
	now = t0.Add(DefaultStaleAfter + time.Second)
	if err := r.Ready(context.Background()); !errors.Is(err, ErrStale) {
		t.Fatalf("view %s old: Ready %v, want ErrStale", DefaultStaleAfter+time.Second, err)
	}
	if _, err := r.Lookup(context.Background(), "any"); !errors.Is(err, ErrStale) {
		t.Fatalf("Lookup on a stale view: %v, want ErrStale (fail closed)", err)
	}
}

//go:build e2e

package postgres

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Two replicas counting one key at once lose no call, a new minute starts again, and a replica whose clock is
// behind counts into the newer minute rather than restarting it.
func TestCountCallIsExactAcrossReplicas(t *testing.T) {
	dsn := cleanSchema(t)
	a, b := openReplica(t, dsn, &auditorFake{}), openReplica(t, dsn, &auditorFake{})
	ctx := context.Background()
	minute := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			if _, err := s.CountCall(ctx, "dcr:198.51.100.7/32", minute); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := a.CountCall(ctx, "dcr:198.51.100.7/32", minute)
	if err != nil || n != 41 {
		t.Fatalf("after 40 concurrent calls from two replicas and this one: %d %v, want 41", n, err)
	}
	if n, err := b.CountCall(ctx, "dcr:198.51.100.8/32", minute); err != nil || n != 1 {
		t.Errorf("another key: %d %v, want 1", n, err)
	}
	if n, err := b.CountCall(ctx, "dcr:198.51.100.7/32", minute.Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("the next minute: %d %v, want 1", n, err)
	}
	if n, err := a.CountCall(ctx, "dcr:198.51.100.7/32", minute); err != nil || n != 2 {
		t.Errorf("a late clock's call: %d %v, want 2 (counted into the newer minute)", n, err)
	}
}

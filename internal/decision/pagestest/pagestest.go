// Package pagestest is the behaviour every decision.PageStore is held to, one table run against each store
// (InMemoryPages in internal/decision, the PostgreSQL store in adapters/jobstore), so they cannot drift.
package pagestest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
)

// TTL is the binding lifetime the table uses. A store on the database's clock waits for it for real, so it
// is short; the waits below leave 300 ms either side of each expiry.
const TTL = time.Second

// Store is a fresh store for one case; Wait lets d pass on the store's clock (a fake clock's advance, or a
// sleep for a store on a real one). Every case uses ids of its own, so stores may share a table.
type Store struct {
	decision.PageStore
	Wait func(d time.Duration)
}

// Run runs the contract against the stores fresh makes.
func Run(t *testing.T, fresh func(t *testing.T) Store) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s Store, id func(string) string)
	}{
		{"the first owner keeps the id and another owner is refused", firstOwnerWins},
		{"an id never bound has no owner", neverBound},
		{"the same owner binding again extends the binding", sameOwnerExtends},
		{"an expired binding has no owner and can be bound to another", expiredIsGone},
		{"ids and owners are kept byte for byte", keptAsGiven},
		{"of concurrent binds of one id by several owners exactly one wins", concurrentBindsOneWinner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fresh(t)
			prefix := fmt.Sprintf("%d-", time.Now().UnixNano())
			tc.run(t, s, func(name string) string { return prefix + name })
		})
	}
}

// Owners as decision.PageOwner makes them: client|patient|org|fhirUser|scope hash.
const (
	ownerA = "patient-app|member-01|||4f1c0b6a2d9e8f7a6b5c4d3e"
	ownerB = "patient-app|member-02|||4f1c0b6a2d9e8f7a6b5c4d3e"
)

func mustOwner(t *testing.T, s Store, id, want string) {
	t.Helper()
	got, ok, err := s.Owner(context.Background(), id)
	if err != nil || !ok || got != want {
		t.Fatalf("Owner(%q) = %q, %v, %v; want %q", id, got, ok, err, want)
	}
}

func mustBeUnbound(t *testing.T, s Store, id string) {
	t.Helper()
	if got, ok, err := s.Owner(context.Background(), id); err != nil || ok {
		t.Fatalf("Owner(%q) = %q, %v, %v; want not bound", id, got, ok, err)
	}
}

func firstOwnerWins(t *testing.T, s Store, id func(string) string) {
	ctx, pg := context.Background(), id("pg")
	if err := s.Bind(ctx, pg, ownerA, TTL); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(ctx, pg, ownerB, TTL); !errors.Is(err, decision.ErrPageBound) {
		t.Fatalf("binding to another owner: %v, want ErrPageBound", err)
	}
	mustOwner(t, s, pg, ownerA)
}

func neverBound(t *testing.T, s Store, id func(string) string) {
	mustBeUnbound(t, s, id("never-issued"))
	mustBeUnbound(t, s, "")
}

func sameOwnerExtends(t *testing.T, s Store, id func(string) string) {
	ctx, pg := context.Background(), id("pg")
	if err := s.Bind(ctx, pg, ownerA, TTL); err != nil {
		t.Fatal(err)
	}
	s.Wait(700 * time.Millisecond)
	if err := s.Bind(ctx, pg, ownerA, TTL); err != nil { // the same search's next page answered again
		t.Fatalf("binding again to the same owner: %v", err)
	}
	s.Wait(700 * time.Millisecond) // past the first binding's end, before the second's
	mustOwner(t, s, pg, ownerA)
	s.Wait(600 * time.Millisecond)
	mustBeUnbound(t, s, pg)
}

func expiredIsGone(t *testing.T, s Store, id func(string) string) {
	ctx, pg := context.Background(), id("pg")
	if err := s.Bind(ctx, pg, ownerA, TTL); err != nil {
		t.Fatal(err)
	}
	s.Wait(TTL + 300*time.Millisecond)
	mustBeUnbound(t, s, pg)
	if err := s.Bind(ctx, pg, ownerB, TTL); err != nil {
		t.Fatalf("binding an expired id to another owner: %v", err)
	}
	mustOwner(t, s, pg, ownerB)
}

func keptAsGiven(t *testing.T, s Store, id func(string) string) {
	ctx := context.Background()
	lower, upper, spaced := id("abc-page"), id("ABC-page"), id("abc-page")+" "
	owners := map[string]string{
		lower:  ownerA,
		upper:  "Patient-App|member-01|||4f1c0b6a2d9e8f7a6b5c4d3e",
		spaced: "provider-app||Organization/org-a|Practitioner/pract-01|élan 🩺",
	}
	for pg, owner := range owners {
		if err := s.Bind(ctx, pg, owner, TTL); err != nil {
			t.Fatalf("Bind(%q): %v", pg, err)
		}
	}
	for pg, owner := range owners {
		mustOwner(t, s, pg, owner)
	}
	mustBeUnbound(t, s, id("abc-pag"))
}

func concurrentBindsOneWinner(t *testing.T, s Store, id func(string) string) {
	ctx, pg := context.Background(), id("pg")
	errs := make([]error, 16)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range errs {
		wg.Go(func() {
			<-start
			errs[i] = s.Bind(ctx, pg, fmt.Sprintf("client-%02d|member-01|||hash", i), TTL)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("clients %d and %d both own the id", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, decision.ErrPageBound):
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("nobody owns the id")
	}
	mustOwner(t, s, pg, fmt.Sprintf("client-%02d|member-01|||hash", winner))
}

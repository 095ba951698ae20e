package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
)

func TestOpenRefusesAStoreWithoutAuditor(t *testing.T) {
	if _, err := Open(context.Background(), "postgres://127.0.0.1:1/unused", nil, nil); err == nil {
		t.Error("Open without an auditor succeeded")
	}
}

func TestViewNeverConfirmedFreshRefusesLookups(t *testing.T) {
	r := newRegistry(nil, "", nil)
	if _, err := r.Lookup(context.Background(), "any"); !errors.Is(err, ErrStale) {
		t.Errorf("Lookup on a view never loaded: %v, want ErrStale", err)
	}
}

func TestFreshViewServesCopiesOfItsClients(t *testing.T) {
	r := newRegistry(nil, "", nil)
	r.snap.Store(&snapshot{clients: map[string]decision.Client{"a": {ID: "a", Active: true, Scopes: []string{"patient/*.rs"}}}})
	r.fresh.Mark(time.Now())
	c, err := r.Lookup(context.Background(), "a")
	if err != nil || !c.Active {
		t.Fatalf("Lookup = %+v, %v", c, err)
	}
	c.Scopes[0] = "changed"
	if again, _ := r.Lookup(context.Background(), "a"); again.Scopes[0] != "patient/*.rs" {
		t.Error("Lookup hands out the snapshot's own slices")
	}
	if _, err := r.Lookup(context.Background(), "b"); !errors.Is(err, decision.ErrUnknownClient) {
		t.Errorf("unknown client: %v", err)
	}
}

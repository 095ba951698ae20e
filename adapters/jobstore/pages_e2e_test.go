//go:build e2e

package jobstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/decision"
	"github.com/fhirwall/fhirwall/internal/decision/pagestest"
	"github.com/fhirwall/fhirwall/internal/evidence"
)

// replicas is one PageStore over several replicas' stores: each call goes to the next one, so every step of
// a case (bind here, look up there) crosses replicas.
type replicas struct {
	stores []*Pages
	n      atomic.Uint64
}

func (r *replicas) next() *Pages { return r.stores[r.n.Add(1)%uint64(len(r.stores))] }

func (r *replicas) Bind(ctx context.Context, pageID, owner string, ttl time.Duration) error {
	return r.next().Bind(ctx, pageID, owner, ttl)
}

func (r *replicas) Owner(ctx context.Context, pageID string) (string, bool, error) {
	return r.next().Owner(ctx, pageID)
}

func TestE2EPagesKeepThePageStoreContractAcrossReplicas(t *testing.T) {
	evidence.Proves(t, "OPS-REPLICA-01")
	pagestest.Run(t, func(t *testing.T) pagestest.Store {
		dsn := testSchema(t)
		return pagestest.Store{
			PageStore: &replicas{stores: []*Pages{open(t, dsn).Pages(), open(t, dsn).Pages()}},
			Wait:      time.Sleep, // expiry is on the database's clock
		}
	})
}

func TestE2ENextPageIsHonouredOnEveryReplicaForItsOwnerOnly(t *testing.T) {
	evidence.Proves(t, "OPS-REPLICA-01", "USCORE-02")
	dsn := testSchema(t)
	a, b := newReplica(t, open(t, dsn).Pages()), newReplica(t, open(t, dsn).Pages())
	page := fmt.Sprintf("%x-page", time.Now().UnixNano())
	if _, e := search(t, a, member01, "member-01", page); e.Status != 200 {
		t.Fatalf("the search through replica A: %d %s", e.Status, e.Body)
	}
	for _, tc := range []struct {
		name    string
		replica *decision.Core
		token   string
		allow   bool
	}{
		{"the member on the other replica", b, member01, true},
		{"the member on the same replica", a, member01, true},
		{"the member through a token of other scopes", b, member01EOB, false},
		{"another member of the same app", b, member02, false},
		{"another member on the replica that bound it", a, member02, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := nextPage(tc.replica, tc.token, page)
			switch {
			case tc.allow && !d.Allow:
				t.Fatalf("refused: %d %v", d.Refusal.Status, d.Reasons)
			case !tc.allow && (d.Allow || d.Refusal.Status != 404 || !slices.Contains(d.Reasons, "page_not_bound_to_caller")):
				t.Fatalf("allow %v, %d %v; want the 404 of a page that does not exist", d.Allow, d.Refusal.Status, d.Reasons)
			}
		})
	}
	// The other member's own search of the same query, answered from HAPI's cache with the same page id,
	// leaves the page the first member's.
	if _, e := search(t, b, member02, "member-02", page); e.Status != 200 {
		t.Fatalf("a second search given the same page id: %d", e.Status)
	}
	if d := nextPage(a, member02, page); d.Allow {
		t.Fatal("the second searcher took over the first one's page")
	}
	if d := nextPage(b, member01, page); !d.Allow {
		t.Fatalf("the first searcher lost its page: %v", d.Reasons)
	}
}

func TestE2EBindPrunesExpiredBindingsAsItGoes(t *testing.T) {
	ctx := context.Background()
	store := open(t, testSchema(t))
	pages := store.Pages()
	count := func(where string) int {
		t.Helper()
		var n int
		if err := store.pool.QueryRow(ctx, `SELECT count(*) FROM fhirwall_page_bindings WHERE `+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 10 {
		if err := pages.Bind(ctx, fmt.Sprintf("old-%d", i), "o", time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		if err := pages.Bind(ctx, fmt.Sprintf("new-%d", i), "o", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if expired, live := count("expires_at <= now()"), count("expires_at > now()"); expired != 0 || live != 5 {
		t.Fatalf("after 10 expired and 5 new bindings: %d expired rows left, %d live; want 0 and 5", expired, live)
	}
	if err := pages.Bind(ctx, "short", "o", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := pages.Purge(ctx); err != nil || n != 1 {
		t.Fatalf("purge: %d %v, want 1", n, err)
	}
}

// Replicas starting together on an empty database all come up: the tables are created once.
func TestE2EReplicasStartingTogetherCreateTheTablesOnce(t *testing.T) {
	dsn := testSchema(t)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			p, err := Open(context.Background(), dsn)
			if err == nil {
				p.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

// BenchmarkE2EPageBindAndOwner is what a search page (Bind) and a next-page request (Owner) add, against
// the stack's PostgreSQL.
func BenchmarkE2EPageBindAndOwner(b *testing.B) {
	ctx := context.Background()
	pages := open(b, testSchema(b)).Pages()
	owner := "patient-app|member-01|||4f1c0b6a2d9e8f7a6b5c4d3e"
	b.Run("Bind", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := pages.Bind(ctx, fmt.Sprintf("bench-%d", i), owner, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Owner", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := pages.Owner(ctx, "bench-0"); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}

// Many replicas binding, rebinding expired ids and pruning each other's rows at once: no Bind fails but
// with ErrPageBound (a prune never waits on a row, so two Binds cannot deadlock).
func TestE2EBindsUnderChurnNeverFail(t *testing.T) {
	ctx := context.Background()
	dsn := testSchema(t)
	stores := []*Pages{open(t, dsn).Pages(), open(t, dsn).Pages()}
	var wg sync.WaitGroup
	errs := make(chan error, 8*300)
	for w := range 8 {
		wg.Go(func() {
			for i := range 300 {
				err := stores[(w+i)%2].Bind(ctx, fmt.Sprintf("pg-%d", (w*7+i)%20), fmt.Sprintf("owner-%d", w%3), 5*time.Millisecond)
				if err != nil && !errors.Is(err, decision.ErrPageBound) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

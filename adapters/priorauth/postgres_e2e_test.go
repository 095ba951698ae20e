//go:build e2e

package priorauth

import (
	"context"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
)

// openTestPostgres connects to the test PostgreSQL: bash test/stack/postgres.sh start, then
// go test -tags e2e ./adapters/priorauth (FHIRWALL_TEST_POSTGRES_DSN overrides the DSN). Unreachable, it
// skips, or fails under FHIRWALL_REQUIRE_ALL=1.
func openTestPostgres(t *testing.T) *Postgres {
	t.Helper()
	dsn := os.Getenv("FHIRWALL_TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := OpenPostgres(ctx, dsn)
	if err == nil {
		err = p.pool.Ping(ctx)
		if err != nil {
			p.Close()
		}
	}
	if err != nil {
		require.Missing(t, "PostgreSQL at "+dsn+": "+err.Error()+"; start it with `bash test/stack/postgres.sh start`")
	}
	t.Cleanup(p.Close)
	return p
}

// removeTestRows deletes the rows whose ids begin with idPrefix when t ends: the stack's fhirwall-proxy
// shares this table, and a test's pended requests would otherwise sit in the live review queue.
func removeTestRows(t *testing.T, p *Postgres, idPrefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := p.pool.Exec(ctx, `DELETE FROM fhirwall_prior_auth_requests WHERE starts_with(id, $1)`, idPrefix+"-"); err != nil {
			t.Errorf("removing the test's rows: %v", err)
		}
	})
}

func TestE2EPostgresKeepsTheStoreContract(t *testing.T) {
	runStoreContract(t, func(t *testing.T, idPrefix string) Store {
		p := openTestPostgres(t)
		removeTestRows(t, p, idPrefix)
		return p
	})
}

// Two replicas are two pools on one table: a decision one makes is the other's, and their reviewers race
// on the same row.
func TestE2EPendedRequestIsSeenAndDecidedOnceAcrossReplicas(t *testing.T) {
	evidence.Proves(t, "OPS-REPLICA-01", "CMS-PAU-02")
	ctx := context.Background()
	id := &contractIDs{prefix: "replicas-" + time.Now().Format("20060102T150405.000000000")}
	replicaA, replicaB := openTestPostgres(t), openTestPostgres(t)
	removeTestRows(t, replicaA, id.prefix)
	r := contractRequest(id.next(), contractBase, true)
	contractInsert(t, replicaA, r)
	pended, err := replicaB.Pended(ctx)
	if err != nil || len(id.mine(pended)) != 1 {
		t.Fatalf("replica B's queue: %v, %v", contractIDList(id.mine(pended)), err)
	}
	errs := make(chan error, 2)
	for _, s := range []Store{replicaA, replicaB} {
		go func() { errs <- s.Decide(ctx, contractDecided(r, contractBase.Add(time.Hour))) }()
	}
	var won, lost int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			won++
		case errors.Is(err, ErrAlreadyDecided):
			lost++
		default:
			t.Fatal(err)
		}
	}
	if won != 1 || lost != 1 {
		t.Fatalf("won %d, lost %d; want one each", won, lost)
	}
}

// OpenPostgres on an existing table (a restart, or a second replica starting) keeps its rows.
func TestE2EReopeningKeepsTheQueue(t *testing.T) {
	id := &contractIDs{prefix: "reopen-" + time.Now().Format("20060102T150405.000000000")}
	first := openTestPostgres(t)
	r := contractRequest(id.next(), contractBase, false)
	contractInsert(t, first, r)
	first.Close()
	reopened := openTestPostgres(t)
	removeTestRows(t, reopened, id.prefix)
	contractSame(t, "after reopening", contractGet(t, reopened, r.ID), contractStored(r))
}

// EachReceived streams what Received lists, without the response Bundles.
func TestE2EEachReceivedStreamsTheRequestsWithoutTheirBundles(t *testing.T) {
	ctx := context.Background()
	p := openTestPostgres(t)
	id := &contractIDs{prefix: "each-" + time.Now().Format("20060102T150405.000000000")}
	removeTestRows(t, p, id.prefix)
	from := contractBase.Truncate(time.Microsecond)
	for i := range 3 {
		contractInsert(t, p, contractRequest(id.next(), from.Add(time.Duration(i)*time.Minute), i == 1))
	}
	listed, err := p.Received(ctx, from, from.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var streamed []Request
	if err := p.EachReceived(ctx, from, from.Add(time.Hour), func(r Request) error { streamed = append(streamed, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := id.mine(listed)
	for i := range want {
		want[i].ResponseBundle = nil
	}
	if got := id.mine(streamed); len(want) != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("streamed %+v\nwant %+v", got, want)
	}
	stop := errors.New("fake: stop")
	if err := p.EachReceived(ctx, from, from.Add(time.Hour), func(Request) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn's error: %v", err)
	}
}

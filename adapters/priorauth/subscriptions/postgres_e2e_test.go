//go:build e2e

package subscriptions

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fhirwall/fhirwall/internal/evidence"
)

// testDSN is the stack's PostgreSQL (bash test/stack/postgres.sh start).
func testDSN() string {
	if dsn := os.Getenv("FHIRWALL_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"
}

// openCleanPostgres opens the store in a schema of its own, dropped afterwards: each test starts empty and
// the stack's own tables (the lead's running fhirwall) are never touched.
func openCleanPostgres(t *testing.T) Store {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testDSN())
	if err != nil {
		t.Fatalf("PostgreSQL (bash test/stack/postgres.sh start): %v", err)
	}
	defer admin.Close(ctx)
	schema := "fwtest_subs_" + newID()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testDSN())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	sep := "?"
	if strings.Contains(testDSN(), "?") {
		sep = "&"
	}
	p, err := OpenPostgres(ctx, testDSN()+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestPostgresKeepsTheStoreContract(t *testing.T) {
	storeContract(t, openCleanPostgres)
}

// TestTwoReplicasSendEachNotificationOnceInOrder runs two Services (two replicas) on one PostgreSQL store: both
// are told of every decision, both run the worker; the subscriber gets every event exactly once, in order.
func TestTwoReplicasSendEachNotificationOnceInOrder(t *testing.T) {
	evidence.Proves(t, "PAS-03", "OPS-REPLICA-01")
	st := openCleanPostgres(t)
	sb := newSubscriber(t)
	var replicas []*Service
	for range 2 {
		svc, err := New(st, Options{Base: testBase, MaxAttempts: 8, InitialBackoff: 20 * time.Millisecond, Poll: 5 * time.Millisecond,
			HostsOf: func(string) []string { return []string{"127.0.0.1"} }, Audit: func(context.Context, Delivery) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = svc.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		replicas = append(replicas, svc)
	}
	id := create(t, replicas[0], orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentIDOnly, nil))
	sb.wait(t) // handshake
	const events = 20
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Go(func() {
			for i := range events {
				if err := r.Decided(context.Background(), decided(strconv.Itoa(i+1), 2)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range events {
		_, p := readNotification(t, sb.wait(t).body, id, TypeEvent)
		if n, _ := p.event(); n != strconv.Itoa(i+1) {
			t.Fatalf("notification %d carries event %s", i+1, n)
		}
	}
	sb.quiet(t, 300*time.Millisecond)
	if n := len(sb.all()); n != events+1 {
		t.Fatalf("%d requests, want %d: a notification went out twice", n, events+1)
	}
}

// TestAReplicaDyingMidDeliveryLeavesTheNotificationToAnotherWithTheSameBytes: a replica claims a
// notification and dies before finishing; once its lease ends another replica sends it, byte for byte.
func TestAReplicaDyingMidDeliveryLeavesTheNotificationToAnotherWithTheSameBytes(t *testing.T) {
	evidence.Proves(t, "PAS-03", "OPS-REPLICA-01")
	ctx := context.Background()
	st := openCleanPostgres(t)
	sb := newSubscriber(t)
	opts := Options{Base: testBase, Poll: 5 * time.Millisecond, InitialBackoff: 10 * time.Millisecond,
		HostsOf: func(string) []string { return []string{"127.0.0.1"} }, Audit: func(context.Context, Delivery) error { return nil }}
	dead, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	id := create(t, dead, orgA, subscriptionJSON(sb.srv.URL+"/hook", "orgIdentifier=1234567893", ContentFullResource, nil))
	hs, _ := st.ClaimSubscriptions(ctx, time.Now(), time.Minute, 10)
	if len(hs) != 1 || st.FinishSubscription(ctx, id, hs[0].Lease, Result{Delivered: true, At: time.Now()}) != nil {
		t.Fatal("handshake bookkeeping")
	}
	if err := dead.Decided(ctx, decided("1", 2)); err != nil {
		t.Fatal(err)
	}
	held, _ := st.ClaimNotifications(ctx, time.Now(), 200*time.Millisecond, 10) // then the replica dies
	if len(held) != 1 {
		t.Fatalf("claimed %d", len(held))
	}

	alive, _ := New(st, opts)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = alive.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	sb.quiet(t, 100*time.Millisecond) // the dead replica's lease still holds
	got := sb.wait(t)
	if !bytes.Equal(got.body, held[0].Body) {
		t.Fatal("the notification was rebuilt: other bytes than the ones the dead replica held")
	}
	eventually(t, "delivered on attempt 2", func() bool {
		notes, _ := st.Notifications(ctx, id)
		return len(notes) == 1 && notes[0].State == NoteDelivered && notes[0].Attempts == 2
	})
}

package jobstore

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fhirwall/fhirwall/internal/decision"
)

func TestStorableKeepsWhatPostgreSQLTextCanHoldAsGiven(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		want bool
	}{
		{"a HAPI page id", "5c1f0e4a-3b2d-4c1e-9f8a-7b6c5d4e3f2a", true},
		{"an owner as PageOwner makes it", "patient-app|member-01|||4f1c0b6a2d9e8f7a6b5c4d3e", true},
		{"case and spaces are the client's own", " Élan 🩺 ", true},
		{"the longest kept", strings.Repeat("a", MaxPageKey), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxPageKey+1), false},
		{"a NUL byte, which text refuses", "abc\x00def", false},
		{"not UTF-8", "abc\xffdef", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := storable(tc.s); got != tc.want {
				t.Fatalf("storable(%q) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

// A made-up _getpages the table cannot hold is a page that does not exist (404), not an outage (503), and
// costs no round trip; binding one is refused before the database is asked.
func TestUnstorablePageIDsNeverReachTheDatabase(t *testing.T) {
	p := &Pages{timeout: PageTimeout} // no pool: a query would panic
	for _, id := range []string{"", "x\x00y", "\xff", strings.Repeat("a", MaxPageKey+1)} {
		if owner, ok, err := p.Owner(context.Background(), id); ok || err != nil {
			t.Errorf("Owner(%q) = %q, %v, %v; want not bound", id, owner, ok, err)
		}
		if err := p.Bind(context.Background(), id, "patient-app|member-01|||h", time.Hour); !errors.Is(err, ErrPageKey) {
			t.Errorf("Bind(%q): %v, want ErrPageKey", id, err)
		}
	}
	if err := p.Bind(context.Background(), "pg1", "owner\x00", time.Hour); !errors.Is(err, ErrPageKey) {
		t.Errorf("Bind with a NUL in the owner: %v, want ErrPageKey", err)
	}
}

// closedPort is a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// pagesAt is a page store on a PostgreSQL at addr that is never reached at construction (pgxpool connects
// lazily), as after the database goes away under a running replica.
func pagesAt(t *testing.T, addr string, timeout time.Duration) *Pages {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &Pages{pool: pool, timeout: timeout}
}

func TestPostgreSQLDownFailsPagingClosed(t *testing.T) {
	pages := pagesAt(t, closedPort(t), PageTimeout)
	ctx := context.Background()
	if err := pages.Bind(ctx, "pg1", "patient-app|member-01|||h", time.Hour); err == nil || errors.Is(err, decision.ErrPageBound) {
		t.Fatalf("Bind: %v, want an outage", err)
	}
	if _, ok, err := pages.Owner(ctx, "pg1"); err == nil || ok {
		t.Fatalf("Owner: %v %v, want an outage", ok, err)
	}
	replica := newReplica(t, pages)
	_, e := search(t, replica, member01, "member-01", "pg1")
	if e.Status != 503 || bytes.Contains(e.Body, []byte("ExplanationOfBenefit")) {
		t.Errorf("a search answer whose next link cannot be bound: %d %s, want 503 with nothing of it", e.Status, e.Body)
	}
	if d := nextPage(replica, member01, "pg1"); d.Allow || d.Refusal.Status != 503 {
		t.Errorf("following a next link: allow %v, %d %v, want 503", d.Allow, d.Refusal.Status, d.Reasons)
	}
}

// A database that accepts connections and never answers holds a request no longer than the store's timeout.
func TestUnansweringPostgreSQLIsAnOutageWithinTheTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	pages := pagesAt(t, l.Addr().String(), 200*time.Millisecond)
	start := time.Now()
	_, ok, err := pages.Owner(context.Background(), "pg1")
	if err == nil || ok {
		t.Fatalf("Owner: %v %v, want an outage", ok, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Owner waited %v on a silent database", took)
	}
	start = time.Now()
	if err := pages.Bind(context.Background(), "pg1", "o", time.Hour); err == nil {
		t.Fatal("Bind succeeded on a silent database")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Bind waited %v on a silent database", took)
	}
}

package kafka

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/fhirwall/fhirwall/internal/audit"
)

func testKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
}

func TestNothingIsAcknowledgedWhileKafkaIsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every write fails at once
	sp, err := audit.Open(t.TempDir(), audit.Options{Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := sp.Write(context.Background(), audit.Record{ID: audit.NewID(), Patients: []string{"p1"}}); err != nil {
		t.Fatal(err)
	}
	sh := NewShipper(sp, []string{addr}, "fhirwall.audit", Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	defer sh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := sh.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v", err)
	}
	if st := sh.Stats(); st.Shipped != 0 || st.Failures < 3 {
		t.Fatalf("want retries and nothing shipped: %+v", st)
	}
	if st := sp.Stats(); st.Cursor != 0 {
		t.Fatalf("the spool was acknowledged without Kafka: %+v", st)
	}
}

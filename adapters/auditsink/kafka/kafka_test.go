package kafka

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

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

func TestTooLargeIsRecognisedInsideWriteErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{kafkago.MessageSizeTooLarge, true},
		{kafkago.WriteErrors{nil, kafkago.MessageSizeTooLarge}, true},
		{kafkago.MessageTooLargeError{}, true},
		{kafkago.WriteErrors{kafkago.LeaderNotAvailable}, false},
		{errors.New("dial tcp: refused"), false},
	} {
		if got := tooLarge(c.err); got != c.want {
			t.Errorf("tooLarge(%v) = %v", c.err, got)
		}
	}
}

// TestStackKafkaIsSizedForTheLargestEntry keeps the stack's broker and topic settings, written in shell and
// properties files, equal to the sizes the shipper and readers use.
func TestStackKafkaIsSizedForTheLargestEntry(t *testing.T) {
	if BatchBytes <= audit.MaxEntryBytes || MaxMessageBytes <= BatchBytes {
		t.Fatalf("entry %d, batch %d, topic %d", audit.MaxEntryBytes, BatchBytes, MaxMessageBytes)
	}
	want := strconv.Itoa(MaxMessageBytes)
	for file, lines := range map[string][]string{
		"../../../test/stack/kafka.sh":                   {"MAX_MESSAGE_BYTES=" + want},
		"../../../test/stack/kafka/server.properties.in": {"message.max.bytes=" + want, "replica.fetch.max.bytes=" + want},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if !strings.Contains("\n"+string(b), "\n"+l+"\n") {
				t.Errorf("%s: no line %q", file, l)
			}
		}
	}
}

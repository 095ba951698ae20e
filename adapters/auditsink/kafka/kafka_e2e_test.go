//go:build e2e

package kafka

// Against the stack's real Kafka (test/stack/kafka.sh, 127.0.0.1:9092): the shipper's records arrive whole
// and verify; tampering with the topic is named by verify.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/evidence"
	"github.com/fhirwall/fhirwall/test/require"
)

const broker = "127.0.0.1:9092"

// newTopic creates a topic of its own for one test (3 partitions, like fhirwall.audit), taking messages of
// up to MaxMessageBytes, as the audit topic must.
func newTopic(t *testing.T, name string) string {
	t.Helper()
	return newTopicWith(t, name, MaxMessageBytes)
}

// newTopicWith is newTopic with the topic's max.message.bytes.
func newTopicWith(t *testing.T, name string, maxMessageBytes int) string {
	t.Helper()
	topic := fmt.Sprintf("fhirwall.test.%s.%d", name, time.Now().UnixNano())
	conn, err := kafkago.Dial("tcp", broker)
	if err != nil {
		require.Missing(t, fmt.Sprintf("Kafka not reachable on %s (make stack-up): %v", broker, err))
	}
	defer conn.Close()
	ctl, err := conn.Controller()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := kafkago.Dial("tcp", fmt.Sprintf("%s:%d", ctl.Host, ctl.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.CreateTopics(kafkago.TopicConfig{Topic: topic, NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: fmt.Sprint(maxMessageBytes)}}}); err != nil {
		t.Fatal(err)
	}
	// A new topic's partitions need a leader before they take writes.
	for p := range 3 {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			l, err := kafkago.DialLeader(context.Background(), "tcp", broker, topic, p)
			if err == nil {
				l.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d of %s has no leader: %v", p, topic, err)
			}
		}
	}
	return topic
}

func readAll(t *testing.T, topic string) []audit.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var msgs []audit.Message
	if err := ReadTopic(ctx, []string{broker}, topic, func(m audit.Message) error { msgs = append(msgs, m); return nil }); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// shipAll writes n records through a spool, ships them and returns the spool (closed) and its head.
func shipAll(t *testing.T, topic string, n int) (dir string, head *audit.Head) {
	t.Helper()
	recs := make([]audit.Record, n)
	for i := range recs {
		recs[i] = audit.Record{ID: audit.NewID(), Time: time.Now().UTC(), ClientID: "patient-app", Patients: []string{fmt.Sprintf("member-%02d", i%5)}}
	}
	return shipRecords(t, topic, recs)
}

// shipRecords writes recs through a spool, ships them and returns the spool (closed) and its head.
func shipRecords(t *testing.T, topic string, recs []audit.Record) (dir string, head *audit.Head) {
	t.Helper()
	dir = t.TempDir()
	sp, err := audit.Open(dir, audit.Options{Key: testKey(), CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := sp.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	sh := NewShipper(sp, []string{broker}, topic, Options{})
	defer sh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	for sp.Stats().Cursor < sp.Stats().Durable {
		select {
		case err := <-done:
			t.Fatalf("shipper stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := sp.Close(); err != nil { // the stop checkpoint; the shipper sends it and returns
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := sh.Stats(); st.Failures > 0 { // a new topic: kafka-go learns its partitions after a metadata refresh
		t.Logf("shipper: %d failed batch writes before Kafka took them all", st.Failures)
	}
	h, err := audit.ReadHead(dir + "/head.json")
	if err != nil {
		t.Fatal(err)
	}
	return dir, h
}

func pub() ed25519.PublicKey { return testKey().Public().(ed25519.PublicKey) }

func TestShippedTopicVerifiesAndKeepsEachPatientOnOnePartition(t *testing.T) {
	evidence.Proves(t, "AUD-02")
	topic := newTopic(t, "ship")
	start := time.Now()
	_, head := shipAll(t, topic, 100)
	t.Logf("100 records written and shipped in %v", time.Since(start))
	start = time.Now()
	msgs := readAll(t, topic)
	t.Logf("topic read in %v", time.Since(start))
	rs := audit.VerifyMessages(msgs, audit.Keys{pub()}, head)
	if len(rs) != 1 || rs[0].Break != nil || rs[0].Records != 100 || rs[0].Signed != head.Seq {
		t.Fatalf("%v", rs)
	}
	partOf := map[string]int{}
	for _, m := range msgs {
		e, err := audit.ParseLine(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := partOf[e.Key()]; ok && p != m.Partition {
			t.Fatalf("%s on partitions %d and %d", e.Key(), p, m.Partition)
		}
		partOf[e.Key()] = m.Partition
	}
}

// copyTopic writes msgs (already tampered) to a fresh topic, each to the partition it names, in order.
func copyTopic(t *testing.T, name string, msgs []audit.Message) string {
	t.Helper()
	topic := newTopic(t, name)
	for _, m := range msgs {
		// A new topic's leadership can still move: retry on a fresh connection.
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			c, err := kafkago.DialLeader(context.Background(), "tcp", broker, topic, m.Partition)
			if err == nil {
				_, err = c.WriteMessages(kafkago.Message{Value: m.Value})
				c.Close()
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
	}
	return topic
}

func TestTopicTamperingIsNamedByVerify(t *testing.T) {
	evidence.Proves(t, "AUD-02")
	src := newTopic(t, "src")
	_, head := shipAll(t, src, 30)
	orig := readAll(t, src)
	pair := func(msgs []audit.Message) (int, int) { // two entries of one partition
		for i := 3; i < len(msgs); i++ {
			if msgs[i+1].Partition == msgs[i].Partition {
				return i, i + 1
			}
		}
		t.Fatal("no two entries on one partition")
		return 0, 0
	}
	cases := []struct {
		name    string
		tamper  func([]audit.Message) []audit.Message
		problem string
	}{
		{"flip", func(m []audit.Message) []audit.Message {
			m[9].Value = bytes.Clone(m[9].Value)
			m[9].Value[len(m[9].Value)/2] ^= 0x01
			return m
		}, "hash"},
		{"delete", func(m []audit.Message) []audit.Message { return append(m[:9:9], m[10:]...) }, "missing"},
		{"reorder", func(m []audit.Message) []audit.Message {
			i, j := pair(m)
			m[i], m[j] = m[j], m[i]
			return m
		}, "reordered"},
		{"truncate", func(m []audit.Message) []audit.Message {
			// the chain's last four entries, wherever their partitions put them
			var keep []audit.Message
			for _, x := range m {
				if e, _ := audit.ParseLine(x.Value); e.Seq <= head.Seq-4 {
					keep = append(keep, x)
				}
			}
			return keep
		}, "tail truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := c.tamper(append([]audit.Message(nil), orig...))
			topic := copyTopic(t, c.name, msgs)
			rs := audit.VerifyMessages(readAll(t, topic), audit.Keys{pub()}, head)
			named := false
			for _, r := range rs { // a flipped byte in the chain id makes the entry look like another chain's
				if r.Break != nil && strings.Contains(r.Break.Problem, c.problem) {
					named = true
					t.Logf("verify: %s", r.Break.Error())
				}
			}
			if !named {
				t.Fatalf("want a break naming %q: %v", c.problem, rs)
			}
		})
	}
}

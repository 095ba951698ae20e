// Package kafka ships the audit spool to a Kafka topic with kafka-go, acknowledged by all in-sync replicas, and
// reads the topic back for `fhirwall audit verify|query|export`.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// Sizes of the audit topic. An entry is at most audit.MaxEntryBytes (16 MiB; the spool splits a long patient
// list into parts and refuses anything longer). The shipper's produce batches are at most BatchBytes, one
// entry plus its key, headers and record overhead; the topic (max.message.bytes), the broker
// (message.max.bytes, replica.fetch.max.bytes) and every reader's fetch size must take MaxMessageBytes.
// docs/audit/README.md ("The pipeline") says the same for operators; test/stack/kafka.sh sizes the stack's topic.
const (
	BatchBytes      = audit.MaxEntryBytes + 1<<20 // 17 MiB
	MaxMessageBytes = audit.MaxEntryBytes + 2<<20 // 18 MiB = 18874368
)

// Spool is what the shipper needs of the audit spool.
type Spool interface {
	NewReader() *audit.Reader
	Ack(seq uint64) error
}

var _ Spool = (*audit.Spool)(nil)

// Shipper copies every durable spool entry to the topic, in seq order, and acknowledges it to the spool only
// once Kafka has it from all in-sync replicas: the spool is trimmed behind that cursor, so a broker outage
// costs disk, never records. A failed batch is sent again after a backoff; entries already written are then
// duplicated, and consumers drop repeats by record id (the `record-id` header, or the entry's id).
type Shipper struct {
	spool   Spool
	brokers []string
	w       *kafkago.Writer
	log     *slog.Logger
	opt     Options

	shipped  atomic.Uint64 // entries acknowledged by Kafka
	failures atomic.Uint64 // failed batch writes
	lastOK   atomic.Int64  // unix nanoseconds of the last acknowledged batch
}

// Options tune a shipper; zero values take the defaults in brackets.
type Options struct {
	BatchSize    int           // entries per produce batch [500]
	BackoffMin   time.Duration // first retry delay [100 ms]
	BackoffMax   time.Duration // longest retry delay [5 s]
	Log          *slog.Logger
	WriteTimeout time.Duration // one produce round trip [10 s]
}

// NewShipper returns a shipper of spool to topic on brokers. The topic must exist (the stack scripts create it).
func NewShipper(spool Spool, brokers []string, topic string, o Options) *Shipper {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Shipper{spool: spool, brokers: brokers, log: o.Log, opt: o, w: &kafkago.Writer{
		Addr:         kafkago.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafkago.RequireAll, // kafka-go's default is RequireNone: fire and forget
		// Batches are formed here, from the spool; kafka-go's default 1 s wait for a fuller batch would only
		// add latency.
		BatchTimeout: 5 * time.Millisecond,
		BatchSize:    o.BatchSize,
		BatchBytes:   BatchBytes,
		// Records of one patient go to one partition, in chain order (audit.Entry.Key).
		Balancer:     &kafkago.Hash{},
		MaxAttempts:  1, // Run retries whole batches with its own backoff
		WriteTimeout: o.WriteTimeout,
		ReadTimeout:  o.WriteTimeout,
	}}
	return s
}

// Run ships until ctx is cancelled or the spool is closed and fully shipped.
func (s *Shipper) Run(ctx context.Context) error {
	o := s.opt
	s.checkTopic(ctx)
	rd := s.spool.NewReader()
	var lastWarn time.Time
	for {
		lines, err := rd.Next(ctx, o.BatchSize, 4<<20)
		if errors.Is(err, audit.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		msgs := make([]kafkago.Message, len(lines))
		for i, l := range lines {
			if l.Err != nil {
				// Shipped as found: the copy in Kafka is evidence too, and verify names it there.
				s.log.Error("audit shipper: a spool entry does not verify; shipping it as found", "seq", l.Entry.Seq, "err", l.Err)
			}
			msgs[i] = kafkago.Message{Key: []byte(l.Entry.Key()), Value: l.Raw, Headers: []kafkago.Header{
				{Key: "schema", Value: []byte(audit.SchemaVersion)},
				{Key: "kind", Value: []byte(l.Entry.Kind)},
				{Key: "record-id", Value: []byte(l.Entry.ID)},
			}}
		}
		delay := o.BackoffMin
		for {
			err := s.w.WriteMessages(ctx, msgs...)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.failures.Add(1)
			if tooLarge(err) {
				// Retrying cannot help until the topic is resized: say so every time, not every 30 s.
				s.log.Error("audit shipper: the topic refuses an entry as too large; set its max.message.bytes (and the broker's message.max.bytes) to kafka.MaxMessageBytes; records wait in the spool",
					"err", err, "max_message_bytes", MaxMessageBytes, "largest_entry", largest(lines))
			} else if time.Since(lastWarn) > 30*time.Second {
				s.log.Warn("audit shipper: Kafka write failed; retrying (records wait in the spool)", "err", err, "entries", len(msgs))
				lastWarn = time.Now()
			}
			select {
			case <-time.After(delay/2 + rand.N(delay/2+1)):
			case <-ctx.Done():
				return ctx.Err()
			}
			delay = min(2*delay, o.BackoffMax)
		}
		if !lastWarn.IsZero() {
			s.log.Info("audit shipper: Kafka writes succeed again")
			lastWarn = time.Time{}
		}
		if err := s.spool.Ack(lines[len(lines)-1].Entry.Seq); err != nil {
			return fmt.Errorf("audit shipper: %w", err)
		}
		s.shipped.Add(uint64(len(lines)))
		s.lastOK.Store(time.Now().UnixNano())
	}
}

// checkTopic says once, loudly, when the topic would refuse the largest entry; shipping goes on (ordinary
// entries, a few KiB, still fit), and a refused one is named again when it comes.
func (s *Shipper) checkTopic(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := CheckTopic(ctx, s.brokers, s.w.Topic)
	switch {
	case errors.Is(err, ErrTopicTooSmall):
		s.log.Error("audit shipper: "+err.Error(), "topic", s.w.Topic, "max_message_bytes", n)
	case err != nil:
		s.log.Warn("audit shipper: cannot read the topic's max.message.bytes; not checked", "err", err)
	}
}

// tooLarge reports whether a write failed because the broker or the writer found a message too large;
// kafka-go's WriteErrors (one error per message) does not unwrap, so its members are looked at.
func tooLarge(err error) bool {
	if errors.Is(err, kafkago.MessageSizeTooLarge) || errors.As(err, new(kafkago.MessageTooLargeError)) {
		return true
	}
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && tooLarge(e) {
				return true
			}
		}
	}
	return false
}

func largest(lines []audit.Line) int {
	n := 0
	for _, l := range lines {
		n = max(n, len(l.Raw))
	}
	return n
}

// Stats are the shipper's counters for metrics.
type Stats struct {
	Shipped, Failures uint64
	LastOK            time.Time
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	var t time.Time
	if n := s.lastOK.Load(); n > 0 {
		t = time.Unix(0, n)
	}
	return Stats{Shipped: s.shipped.Load(), Failures: s.failures.Load(), LastOK: t}
}

// Close closes the writer.
func (s *Shipper) Close() error { return s.w.Close() }

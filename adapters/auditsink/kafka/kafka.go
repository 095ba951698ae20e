// Package kafka ships audit records to a Kafka topic with kafka-go, acknowledged by all in-sync replicas.
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

var _ decision.Sink = (*Sink)(nil)

// Sink writes each record synchronously: Write returns only once the broker acknowledged it.
type Sink struct {
	w       *kafkago.Writer
	brokers []string
	topic   string
	// lastOK is when a write or readiness probe last succeeded (unix nanoseconds); lastErr the latest failure
	// since then. Ready reads them instead of asking the brokers while writes are going through.
	lastOK  atomic.Int64
	lastErr atomic.Pointer[error]
	now     func() time.Time
}

// readyFresh is how long a successful write vouches for the sink; after it, or after a failed write, Ready
// asks a broker.
const readyFresh = 10 * time.Second

// New returns a sink for topic on brokers. The topic must exist (the stack scripts create it).
func New(brokers []string, topic string) *Sink {
	return &Sink{brokers: brokers, topic: topic, now: time.Now, w: &kafkago.Writer{
		Addr:         kafkago.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafkago.RequireAll, // kafka-go's default is RequireNone: fire and forget
		// The default 1 s batch delay would hold every request for a second.
		BatchTimeout: 2 * time.Millisecond,
		// Records of one patient stay in order on one partition.
		Balancer:        &kafkago.Hash{},
		MaxAttempts:     5,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
	}}
}

// Write sends one record keyed by its first patient (or client, when no patient is involved).
func (s *Sink) Write(ctx context.Context, r audit.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := r.ClientID
	if len(r.Patients) > 0 {
		key = r.Patients[0]
	}
	if err := s.w.WriteMessages(ctx, kafkago.Message{Key: []byte(key), Value: b,
		Headers: []kafkago.Header{{Key: "schema", Value: []byte(audit.SchemaVersion)}, {Key: "record-id", Value: []byte(r.ID)}}}); err != nil {
		err = fmt.Errorf("kafka: %w", err)
		s.lastErr.Store(&err)
		return err
	}
	s.succeeded()
	return nil
}

func (s *Sink) succeeded() {
	s.lastOK.Store(s.now().UnixNano())
	s.lastErr.Store(nil)
}

// Ready reports whether the sink can accept writes: at once when the last write succeeded recently, else by
// reading the topic's partitions from a broker (one short metadata request). A failed write makes the sink
// unready until a probe or a write succeeds again, so an unready proxy (no traffic) can still recover.
func (s *Sink) Ready(ctx context.Context) error {
	if s.lastErr.Load() == nil && s.now().Sub(time.Unix(0, s.lastOK.Load())) < readyFresh {
		return nil
	}
	var errs []error
	for _, b := range s.brokers {
		err := s.probe(ctx, b)
		if err == nil {
			s.succeeded()
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	return fmt.Errorf("kafka: %w", errors.Join(errs...))
}

func (s *Sink) probe(ctx context.Context, broker string) error {
	conn, err := (&kafkago.Dialer{}).DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	ps, err := conn.ReadPartitions(s.topic)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return fmt.Errorf("topic %q has no partitions", s.topic)
	}
	return nil
}

// Close flushes and closes the writer.
func (s *Sink) Close() error { return s.w.Close() }

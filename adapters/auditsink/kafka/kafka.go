// Package kafka ships audit records to a Kafka topic with kafka-go, acknowledged by all in-sync replicas.
package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/internal/audit"
	"github.com/fhirwall/fhirwall/internal/decision"
)

var _ decision.Sink = (*Sink)(nil)

// Sink writes each record synchronously: Write returns only once the broker acknowledged it.
type Sink struct {
	w *kafkago.Writer
}

// New returns a sink for topic on brokers. The topic must exist (the stack scripts create it).
func New(brokers []string, topic string) *Sink {
	return &Sink{w: &kafkago.Writer{
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
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// Close flushes and closes the writer.
func (s *Sink) Close() error { return s.w.Close() }

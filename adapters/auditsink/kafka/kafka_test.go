package kafka

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestReadyAsksABrokerOnlyWhenNoRecentWriteVouchesForTheSink(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: a probe fails at once
	s := New([]string{addr}, "fhirwall.audit")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()

	if err := s.Ready(ctx); err == nil {
		t.Fatal("ready without a broker and without a write")
	}
	s.succeeded() // as a write acknowledged just now
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("a fresh successful write should make the sink ready without a probe: %v", err)
	}
	failed := errors.New("kafka: fake write failure")
	s.lastErr.Store(&failed)
	if err := s.Ready(ctx); err == nil {
		t.Fatal("ready after a failed write although no broker answers")
	}
}

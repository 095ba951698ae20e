// Command audit-tail prints fhirwall's audit records from Kafka as they arrive (demo aid; a SIEM would
// consume the topic itself).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	kafkago "github.com/segmentio/kafka-go"
)

func main() {
	broker := flag.String("broker", "127.0.0.1:9092", "Kafka broker")
	topic := flag.String("topic", "fhirwall.audit", "audit topic")
	fromStart := flag.Bool("from-start", true, "print the records already in the topic first")
	flag.Parse()
	start := kafkago.LastOffset
	if *fromStart {
		start = kafkago.FirstOffset
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// No consumer group: every run reads the whole topic and commits nothing.
	conn, err := kafkago.DialContext(ctx, "tcp", *broker)
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit-tail: cannot reach Kafka at", *broker, "- is the stack up? (make demo)")
		os.Exit(1)
	}
	parts, err := conn.ReadPartitions(*topic)
	conn.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit-tail:", err)
		os.Exit(1)
	}
	out := make(chan []byte)
	for _, p := range parts {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{*broker}, Topic: *topic, Partition: p.ID,
			MaxBytes: 18874368}) // kafka.MaxMessageBytes: an audit entry can be far above kafka-go's 1 MB default
		if err := r.SetOffset(start); err != nil {
			fmt.Fprintln(os.Stderr, "audit-tail:", err)
			os.Exit(1)
		}
		go func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				out <- m.Value
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-out:
			fmt.Println(string(v))
		}
	}
}

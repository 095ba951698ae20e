package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/internal/audit"
)

// ReadTopic reads every message of topic, from each partition's first offset to its end when called, for
// verify, query and export on one machine (a SIEM indexes the topic at scale). fn is called per message in
// partition order; partitions one after another.
func ReadTopic(ctx context.Context, brokers []string, topic string, fn func(audit.Message) error) error {
	if len(brokers) == 0 {
		return errors.New("kafka: no brokers")
	}
	conn, err := kafkago.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return fmt.Errorf("kafka: topic %s: %w", topic, err)
	}
	slices.SortFunc(parts, func(a, b kafkago.Partition) int { return a.ID - b.ID })
	for _, p := range parts {
		if err := readPartition(ctx, brokers, topic, p.ID, fn); err != nil {
			return err
		}
	}
	return nil
}

func readPartition(ctx context.Context, brokers []string, topic string, part int, fn func(audit.Message) error) error {
	conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], topic, part)
	if err != nil {
		return fmt.Errorf("kafka: partition %d: %w", part, err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return fmt.Errorf("kafka: partition %d offsets: %w", part, err)
	}
	next := first
	for next < last {
		if _, err := conn.Seek(next, kafkago.SeekAbsolute); err != nil {
			return fmt.Errorf("kafka: partition %d: %w", part, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: MaxMessageBytes, MaxWait: time.Second})
		got := 0
		for next < last {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			got++
			next = m.Offset + 1
			if err := fn(audit.Message{Partition: part, Offset: m.Offset, Value: m.Value}); err != nil {
				b.Close()
				return err
			}
		}
		if err := b.Close(); err != nil && got == 0 {
			return fmt.Errorf("kafka: partition %d at offset %d: %w", part, next, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Scan reads every partition of topic at once, from each one's first record written at or after since, and
// calls visit with each message's value until visit returns true (Scan reports true) or ctx ends (false): the
// audit records of requests just made, for a check that waits for them (the self-test, the e2e suites). An
// error: Kafka could not be read.
func Scan(ctx context.Context, brokers []string, topic string, since time.Time, visit func(value []byte) bool) (bool, error) {
	if len(brokers) == 0 {
		return false, errors.New("kafka: no brokers")
	}
	conn, err := kafkago.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return false, fmt.Errorf("kafka: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil || len(parts) == 0 {
		return false, fmt.Errorf("kafka: partitions of %s: %v", topic, err)
	}
	ctx, cancel := context.WithCancel(ctx) // ends the readers when visit is done
	defer cancel()
	values := make(chan []byte, 256)
	for _, p := range parts {
		leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
		start, err := startOffset(ctx, leader, p, since)
		if err != nil {
			return false, err
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{leader}, Topic: topic, Partition: p.ID,
			MaxWait: 200 * time.Millisecond, MaxBytes: MaxMessageBytes})
		defer r.Close()
		if err := r.SetOffset(start); err != nil {
			return false, fmt.Errorf("kafka: offset of %s/%d: %w", topic, p.ID, err)
		}
		go func() {
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				select {
				case values <- m.Value:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		select {
		case v := <-values:
			if visit(v) {
				return true, nil
			}
		case <-ctx.Done():
			return false, nil
		}
	}
}

// startOffset is the offset of p's first record written at or after since. When there is none yet, Kafka
// answers -1, which a reader takes as "the end" only when it first fetches, so a record shipped in between
// would be skipped: the end is read before the lookup instead, and every record after it is read.
func startOffset(ctx context.Context, leader string, p kafkago.Partition, since time.Time) (int64, error) {
	conn, err := kafkago.DefaultDialer.DialLeader(ctx, "tcp", leader, p.Topic, p.ID)
	if err != nil {
		return 0, fmt.Errorf("kafka: leader of %s/%d: %w", p.Topic, p.ID, err)
	}
	defer conn.Close()
	end, err := conn.ReadLastOffset()
	if err != nil {
		return 0, fmt.Errorf("kafka: end of %s/%d: %w", p.Topic, p.ID, err)
	}
	at, err := conn.ReadOffset(since)
	if err != nil {
		return 0, fmt.Errorf("kafka: offset of %s/%d at %s: %w", p.Topic, p.ID, since.Format(time.RFC3339Nano), err)
	}
	if at < 0 {
		return end, nil
	}
	return at, nil
}

// ErrTopicTooSmall is returned by CheckTopic for a topic that would refuse the largest audit entry.
var ErrTopicTooSmall = errors.New("kafka: the audit topic's max.message.bytes is below kafka.MaxMessageBytes")

// CheckTopic reads the topic's effective max.message.bytes (its own, else the broker's default) and returns
// ErrTopicTooSmall when it is below MaxMessageBytes: shipping would stop at the first entry that passes it.
// The shipper checks once when it starts; `fhirwall audit verify -kafka` says it too.
func CheckTopic(ctx context.Context, brokers []string, topic string) (int, error) {
	if len(brokers) == 0 {
		return 0, errors.New("kafka: no brokers")
	}
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := c.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"max.message.bytes"}}}})
	if err != nil {
		return 0, fmt.Errorf("kafka: config of topic %s: %w", topic, err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("kafka: config of topic %s: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName != "max.message.bytes" {
				continue
			}
			n, err := strconv.Atoi(e.ConfigValue)
			if err != nil {
				return 0, fmt.Errorf("kafka: topic %s: max.message.bytes %q: %w", topic, e.ConfigValue, err)
			}
			if n < MaxMessageBytes {
				return n, fmt.Errorf("%w: topic %s takes %d bytes, an audit entry needs up to %d (kafka-configs --alter --entity-type topics --entity-name %s --add-config max.message.bytes=%d)",
					ErrTopicTooSmall, topic, n, MaxMessageBytes, topic, MaxMessageBytes)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("kafka: topic %s: no max.message.bytes in its config", topic)
}

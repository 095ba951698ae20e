package stackaudit

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/fhirwall/fhirwall/adapters/auditsink/kafka"
)

// ErrNoBroker is Kafka not answering on Broker.
var ErrNoBroker = errors.New("kafka not reachable")

// NewTopic makes a topic of a suite's own on Broker, named prefix.<nanoseconds>, with parts partitions and
// sized like the audit topic (kafka.MaxMessageBytes), and waits until every partition has a leader. An error that
// wraps ErrNoBroker means Kafka could not be reached (the stack is down).
func NewTopic(prefix string, parts int) (string, error) {
	name := fmt.Sprintf("%s.%d", prefix, time.Now().UnixNano())
	conn, err := kafkago.Dial("tcp", Broker)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNoBroker, Broker, err)
	}
	defer conn.Close()
	ctl, err := conn.Controller()
	if err != nil {
		return "", err
	}
	cc, err := kafkago.Dial("tcp", fmt.Sprintf("%s:%d", ctl.Host, ctl.Port))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	if err := cc.CreateTopics(kafkago.TopicConfig{Topic: name, NumPartitions: parts, ReplicationFactor: 1,
		ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: fmt.Sprint(kafka.MaxMessageBytes)}}}); err != nil {
		return "", err
	}
	if err := WaitForLeaders(context.Background(), Broker, name, parts); err != nil {
		return "", err
	}
	return name, nil
}

// WaitForLeaders waits up to 15 s until each of the first parts partitions of topic on broker has a leader (a
// topic just created has none for a moment, and a write to it fails).
func WaitForLeaders(ctx context.Context, broker, topic string, parts int) error {
	for p := range parts {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			l, err := kafkago.DialLeader(ctx, "tcp", broker, topic, p)
			if err == nil {
				l.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("partition %d of %s has no leader: %w", p, topic, err)
			}
		}
	}
	return nil
}

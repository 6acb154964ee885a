package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReadTopic returns every message of topic, partition after partition, from
// each one's first offset to its end when asked, logged in with cfg's SASL
// and TLS and in no consumer group: the log as any reader of it sees it.
func ReadTopic(ctx context.Context, brokers []string, cfg Config, topic string) ([]Message, error) {
	if len(brokers) == 0 {
		return nil, errors.New("read topic: no brokers")
	}
	dialer := cfg.dialer(10 * time.Second)
	parts, err := dialer.LookupPartitions(ctx, "tcp", brokers[0], topic)
	if err != nil {
		return nil, fmt.Errorf("read topic %s: %w", topic, err)
	}
	var out []Message
	for _, p := range parts {
		if out, err = readPartition(ctx, brokers, dialer, topic, p.ID, out); err != nil {
			return nil, fmt.Errorf("read topic %s partition %d: %w", topic, p.ID, err)
		}
	}
	return out, nil
}

// readPartition appends the messages of one partition to out.
func readPartition(ctx context.Context, brokers []string, dialer *kafka.Dialer, topic string, partition int, out []Message) ([]Message, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition, Dialer: dialer, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	lag, err := r.ReadLag(ctx)
	if err != nil {
		return out, err
	}
	for range lag {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return out, err
		}
		out = append(out, fromKafka(&m))
	}
	return out, nil
}

package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Producer writes messages and returns once all in-sync replicas have them (acks=all).
type Producer struct {
	w *kafka.Writer
}

// NewProducer returns a producer for brokers.
func NewProducer(brokers []string, cfg Config) *Producer {
	return &Producer{w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   16 << 20,
		MaxAttempts:  3,
		// Route actions may name topics of their own; brokers decide whether auto-creation is allowed.
		AllowAutoTopicCreation: true,
		WriteTimeout:           10 * time.Second,
		ReadTimeout:            10 * time.Second,
	}}
}

// Produce writes msgs (each with its Topic set) and waits for the broker's acknowledgement.
func (p *Producer) Produce(ctx context.Context, msgs ...kafka.Message) error {
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce to kafka: %w", err)
	}
	return nil
}

// Close flushes and closes the producer.
func (p *Producer) Close() error { return p.w.Close() }

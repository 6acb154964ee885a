package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// Producer writes messages and returns once all in-sync replicas have them (acks=all).
type Producer struct {
	w *kafka.Writer
	// transport carries cfg's SASL and TLS; its idle connections are closed with the producer.
	transport *kafka.Transport
}

// NewProducer returns a producer for brokers. Messages are spread over
// partitions by key, except on the ordered topics, whose messages all go to
// partition 0 so that their consumers see them in the order they were
// produced (a change log whose entries depend on each other).
func NewProducer(brokers []string, cfg Config, ordered ...string) *Producer {
	b := &orderedBalancer{ordered: map[string]bool{}, byKey: &kafka.Hash{}}
	for _, t := range ordered {
		b.ordered[t] = true
	}
	transport := cfg.transport()
	return &Producer{transport: transport, w: &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Balancer:     b,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: cfg.BatchTimeout,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   16 << 20,
		MaxAttempts:  3,
		// Route actions may name topics of their own; brokers decide whether auto-creation is allowed.
		AllowAutoTopicCreation: true,
		WriteTimeout:           10 * time.Second,
		ReadTimeout:            10 * time.Second,
		Transport:              transport,
	}}
}

// orderedBalancer sends the messages of ordered topics to their first
// partition and spreads the others by key.
type orderedBalancer struct {
	ordered map[string]bool
	byKey   kafka.Balancer
}

func (b *orderedBalancer) Balance(msg kafka.Message, partitions ...int) int {
	if b.ordered[msg.Topic] {
		return slices.Min(partitions)
	}
	return b.byKey.Balance(msg, partitions...)
}

// Produce writes msgs (each with its Topic set) and waits for the broker's acknowledgement.
func (p *Producer) Produce(ctx context.Context, msgs ...kafka.Message) error {
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce to kafka: %w", err)
	}
	return nil
}

// Close flushes and closes the producer.
func (p *Producer) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
}

// Reachable reports whether one of brokers answers a metadata request
// within timeout, logged in with cfg's SASL and TLS: whether this process
// can reach Kafka at all.
func Reachable(ctx context.Context, brokers []string, cfg Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errs []error
	for _, b := range brokers {
		conn, err := cfg.dialer(timeout).DialContext(ctx, "tcp", b)
		if err == nil {
			if dl, ok := ctx.Deadline(); ok {
				err = conn.SetDeadline(dl)
			}
			if err == nil {
				_, err = conn.Brokers()
			}
			conn.Close()
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", b, err))
	}
	return fmt.Errorf("kafka unreachable: %w", errors.Join(errs...))
}

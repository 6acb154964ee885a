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
	transport := cfg.transport()
	return &Producer{transport: transport, w: newWriter(brokers, cfg, transport, ordered)}
}

// newWriter returns an acks=all writer for brokers that batches for up to
// cfg.BatchTimeout (the linger) or cfg.BatchSize messages per partition.
func newWriter(brokers []string, cfg Config, transport *kafka.Transport, ordered []string) *kafka.Writer {
	b := &orderedBalancer{ordered: map[string]bool{}, byKey: &kafka.Hash{}}
	for _, t := range ordered {
		b.ordered[t] = true
	}
	return &kafka.Writer{
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
	}
}

// AsyncProducer writes messages without waiting for them: each message's
// completion is called once all in-sync replicas have it (acks=all) or the
// write failed. Messages sent concurrently from many callers share
// produce requests (a linger of cfg.BatchTimeout), and one partition's
// messages are written in the order they were sent.
type AsyncProducer struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewAsyncProducer returns an asynchronous producer for brokers, spreading
// messages over partitions by key.
func NewAsyncProducer(brokers []string, cfg Config) *AsyncProducer {
	transport := cfg.transport()
	w := newWriter(brokers, cfg, transport, nil)
	w.Async = true
	w.Completion = func(msgs []kafka.Message, err error) {
		if err != nil {
			err = fmt.Errorf("produce to kafka: %w", err)
		}
		for _, m := range msgs {
			if done, ok := m.WriterData.(func(error)); ok {
				done(err)
			}
		}
	}
	return &AsyncProducer{w: w, transport: transport}
}

// Send queues msg (its Topic set) and calls done exactly once, from a
// goroutine of the producer: with nil once Kafka acknowledged msg, or with
// the error. ctx bounds the queueing (a metadata look-up on a topic's first
// message). done must not block, and msg's bytes must stay unchanged until it ran.
func (p *AsyncProducer) Send(ctx context.Context, msg kafka.Message, done func(error)) {
	msg.WriterData = done
	if err := p.w.WriteMessages(ctx, msg); err != nil {
		done(fmt.Errorf("produce to kafka: %w", err))
	}
}

// Close flushes the queued messages (calling their completions) and closes the producer.
func (p *AsyncProducer) Close() error {
	err := p.w.Close()
	p.transport.CloseIdleConnections()
	return err
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

package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// Handler processes a batch of messages. When it returns nil the batch's
// offsets are committed; an error stops the consumer without committing, so
// the batch is delivered again (at-least-once).
type Handler func(ctx context.Context, batch []kafka.Message) error

// Consumer is a member of a consumer group reading one or more topics.
type Consumer struct {
	r       *kafka.Reader
	cfg     Config
	handler Handler
	log     *slog.Logger
}

// NewConsumer returns a consumer of topics in group, handing batches to h.
func NewConsumer(brokers []string, group string, topics []string, cfg Config, h Handler, log *slog.Logger) *Consumer {
	return &Consumer{
		r: kafka.NewReader(kafka.ReaderConfig{
			Brokers:           brokers,
			GroupID:           group,
			GroupTopics:       topics,
			MinBytes:          1,
			MaxBytes:          16 << 20,
			MaxWait:           cfg.FetchWait,
			QueueCapacity:     cfg.MaxBatch,
			CommitInterval:    0, // commit synchronously, only after the handler succeeded
			SessionTimeout:    cfg.SessionTimeout,
			HeartbeatInterval: cfg.SessionTimeout / 5,
			RebalanceTimeout:  cfg.SessionTimeout,
			JoinGroupBackoff:  time.Second,
			StartOffset:       kafka.FirstOffset,
			ReadBackoffMin:    10 * time.Millisecond,
			ReadBackoffMax:    200 * time.Millisecond,
			ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
				log.Debug("kafka reader: " + fmt.Sprintf(msg, args...))
			}),
		}),
		cfg:     cfg,
		handler: h,
		log:     log,
	}
}

// Lag returns the consumer's last known lag in messages.
func (c *Consumer) Lag() int64 { return c.r.Stats().Lag }

// Run consumes until ctx is cancelled (returning nil) or the handler fails.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.r.Close()
	batch := make([]kafka.Message, 0, c.cfg.MaxBatch)
	for {
		batch = batch[:0]
		m, err := c.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch from kafka: %w", err)
		}
		batch = append(batch, m)
		fill, cancel := context.WithTimeout(ctx, c.cfg.FetchWait)
		for len(batch) < c.cfg.MaxBatch {
			m, err := c.r.FetchMessage(fill)
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		cancel()
		if err := c.handler(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("handle batch: %w", err)
		}
		if err := c.r.CommitMessages(ctx, batch...); err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("commit offsets: %w", err)
		}
	}
}

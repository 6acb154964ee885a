package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// idleFetchWait bounds how long the broker holds a fetch of a partition with
// nothing new. A fetch returns as soon as data arrives, so this costs no
// latency; it spares the idle partitions of every group a poll every few ms.
const idleFetchWait = 250 * time.Millisecond

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

	// With a checkpoint, offsets are committed every checkpointEvery, right after checkpoint saved the handler's state.
	checkpoint      func(ctx context.Context) error
	checkpointEvery time.Duration
}

// WithCheckpoint makes the consumer commit offsets only every interval,
// each time right after save has persisted the state the handled messages
// built. A crash then replays from the last checkpoint into the state saved with it.
func (c *Consumer) WithCheckpoint(every time.Duration, save func(ctx context.Context) error) *Consumer {
	c.checkpoint, c.checkpointEvery = save, every
	return c
}

// NewConsumer returns a consumer of topics in group, handing batches to h.
func NewConsumer(brokers []string, group string, topics []string, cfg Config, h Handler, log *slog.Logger) *Consumer {
	rc := kafka.ReaderConfig{
		Brokers:           brokers,
		GroupID:           group,
		GroupTopics:       topics,
		MinBytes:          1,
		MaxBytes:          16 << 20,
		MaxWait:           idleFetchWait,
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
	}
	return &Consumer{r: kafka.NewReader(rc), cfg: cfg, handler: h, log: log}
}

// Lag returns the consumer's last known lag in messages.
func (c *Consumer) Lag() int64 { return c.r.Stats().Lag }

// Run consumes until ctx is cancelled (returning nil) or the handler fails.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.r.Close()
	batch := make([]kafka.Message, 0, c.cfg.MaxBatch)
	uncommitted := map[topicPartition]kafka.Message{}
	lastCheckpoint := time.Now()
	commit := func(ctx context.Context) error {
		if len(uncommitted) == 0 {
			return nil
		}
		if c.checkpoint != nil {
			if err := c.checkpoint(ctx); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
		msgs := make([]kafka.Message, 0, len(uncommitted))
		for _, m := range uncommitted {
			msgs = append(msgs, m)
		}
		if err := c.r.CommitMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("commit offsets: %w", err)
		}
		clear(uncommitted)
		lastCheckpoint = time.Now()
		return nil
	}
	defer func() {
		// A clean stop saves the state and commits what was handled.
		if c.checkpoint != nil {
			stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := commit(stop); err != nil {
				c.log.Warn("final checkpoint failed; the last messages will be replayed", "err", err)
			}
		}
	}()
	for {
		batch = batch[:0]
		m, err := c.r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Kafka away (restarting, partitioned): the reader reconnects underneath.
			c.log.Warn("fetch from kafka failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
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
		for _, m := range batch {
			uncommitted[topicPartition{m.Topic, m.Partition}] = m
		}
		if c.checkpoint != nil && time.Since(lastCheckpoint) < c.checkpointEvery {
			continue
		}
		if err := commit(ctx); err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			// The offsets stay uncommitted and go with the next batch's commit;
			// a crash before then replays them (at-least-once).
			c.log.Warn("commit failed; retrying with the next batch", "err", err)
		}
	}
}

type topicPartition struct {
	topic     string
	partition int
}

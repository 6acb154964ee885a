package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// idleFetchWait bounds how long the broker holds a fetch of a partition with
// nothing new. A fetch returns as soon as data arrives, so this costs no
// latency; it spares the idle partitions of every group a poll every few ms.
const idleFetchWait = 250 * time.Millisecond

// lagEvery is how often a consumer measures its group's lag.
const lagEvery = 5 * time.Second

// Handler processes a batch of messages. When it returns nil the batch's
// offsets are committed; an error stops the consumer without committing, so
// the batch is delivered again (at-least-once).
type Handler func(ctx context.Context, batch []Message) error

// Consumer is a member of a consumer group reading one or more topics.
type Consumer struct {
	r       *kafka.Reader
	cfg     Config
	handler Handler
	log     *slog.Logger

	lagClient *kafka.Client
	// lagTransport is lagClient's, closed when Run ends (kafka-go's default one is a package global).
	lagTransport *kafka.Transport
	group        string
	topics       []string
	lag          atomic.Int64
	lagEvery     time.Duration

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
		Dialer:            cfg.dialer(10 * time.Second),
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Debug("kafka reader: " + fmt.Sprintf(msg, args...))
		}),
	}
	transport := cfg.transport()
	c := &Consumer{
		r: kafka.NewReader(rc), cfg: cfg, handler: h, log: log,
		lagClient:    &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: lagEvery, Transport: transport},
		lagTransport: transport,
		group:        group, topics: topics, lagEvery: lagEvery,
	}
	c.lag.Store(-1)
	return c
}

// Lag returns how many messages of the group's topics lie past its committed
// offsets (not handled yet, or handled but not yet checkpointed), as measured
// at most a few seconds ago; -1 before the first measurement and while the
// brokers cannot be asked. It grows while the handler is held back, which
// the reader's own statistics do not show: its fetch lag stops once its
// queue is full.
func (c *Consumer) Lag() int64 { return c.lag.Load() }

// measureLag sets the lag every c.lagEvery until ctx is cancelled.
func (c *Consumer) measureLag(ctx context.Context) {
	t := time.NewTicker(c.lagEvery)
	defer t.Stop()
	for {
		if lag, err := c.groupLag(ctx); err == nil {
			c.lag.Store(lag)
		} else if ctx.Err() == nil {
			c.lag.Store(-1)
			c.log.Debug("measure consumer lag", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// groupLag asks the brokers for the end offsets of the group's partitions
// and its committed offsets (the oldest kept ones where it committed none).
func (c *Consumer) groupLag(ctx context.Context) (int64, error) {
	md, err := c.lagClient.Metadata(ctx, &kafka.MetadataRequest{Topics: c.topics})
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	partitions := map[string][]int{}
	firsts, lasts := map[string][]kafka.OffsetRequest{}, map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			partitions[t.Name] = append(partitions[t.Name], p.ID)
			firsts[t.Name] = append(firsts[t.Name], kafka.FirstOffsetOf(p.ID))
			lasts[t.Name] = append(lasts[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	committed, err := c.lagClient.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.group, Topics: partitions})
	if err == nil {
		err = committed.Error
	}
	if err != nil {
		return 0, fmt.Errorf("committed offsets: %w", err)
	}
	// Two requests: a partition may appear only once in a ListOffsets request.
	starts, err := c.lagClient.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: firsts})
	if err != nil {
		return 0, fmt.Errorf("first offsets: %w", err)
	}
	ends, err := c.lagClient.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: lasts})
	if err != nil {
		return 0, fmt.Errorf("last offsets: %w", err)
	}
	from := map[topicPartition]int64{}
	for topic, ps := range starts.Topics {
		for _, p := range ps {
			from[topicPartition{topic, p.Partition}] = p.FirstOffset
		}
	}
	for topic, ps := range committed.Topics {
		for _, p := range ps {
			if p.CommittedOffset >= 0 {
				from[topicPartition{topic, p.Partition}] = p.CommittedOffset
			}
		}
	}
	var lag int64
	for topic, ps := range ends.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return 0, fmt.Errorf("last offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			lag += max(0, p.LastOffset-from[topicPartition{topic, p.Partition}])
		}
	}
	return lag, nil
}

// Run consumes until ctx is cancelled (returning nil) or the handler fails.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.r.Close()
	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		c.measureLag(lagCtx)
	}()
	defer func() {
		stopLag()
		<-lagDone
		c.lagTransport.CloseIdleConnections()
	}()
	batch := make([]Message, 0, c.cfg.MaxBatch)
	// The last handled offset of each partition, committed as a message kafka-go knows.
	uncommitted := map[topicPartition]int64{}
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
		for tp, off := range uncommitted {
			msgs = append(msgs, kafka.Message{Topic: tp.topic, Partition: tp.partition, Offset: off})
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
		batch = append(batch, fromKafka(&m))
		fill, cancel := context.WithTimeout(ctx, c.cfg.FetchWait)
		for len(batch) < c.cfg.MaxBatch {
			m, err := c.r.FetchMessage(fill)
			if err != nil {
				break
			}
			batch = append(batch, fromKafka(&m))
		}
		cancel()
		if err := c.handler(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("handle batch: %w", err)
		}
		for i := range batch {
			uncommitted[topicPartition{batch[i].Topic, batch[i].Partition}] = batch[i].Offset
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

package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// SyncProducer writes each call's messages in one request and returns once
// all in-sync replicas have them (acks=all).
type SyncProducer struct {
	w *kafka.Writer
	// transport carries cfg's SASL and TLS; its idle connections are closed with the producer.
	transport *kafka.Transport
}

// NewSyncProducer returns a producer for brokers. Messages are spread over
// partitions by key, except on the ordered topics, whose messages all go to
// partition 0 so that their consumers see them in the order they were
// produced (a change log whose entries depend on each other).
func NewSyncProducer(brokers []string, cfg Config, ordered ...string) *SyncProducer {
	transport := cfg.transport()
	return &SyncProducer{transport: transport, w: newWriter(brokers, cfg, transport, ordered)}
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
// write failed.
//
// Messages are spread by key over lanes, one per partition (cfg.Partitions),
// with the writer's own key hash: when the topic has that many partitions a
// lane feeds exactly one partition. Each lane's goroutine takes every message
// queued on it meanwhile (up to laneBatch) and writes them in one call,
// waiting for it, so batches grow with the load and the produce latency, and
// the lanes' requests are in flight at the same time (one lane used to carry
// every partition: a write waited for the slowest partition and for the
// writer's linger before the next could start).
//
// Under load a lane lingers: when it comes back from a write and finds
// messages already queued (more arrived while the write was in flight), it
// waits cfg.BatchTimeout before taking them, so that one request carries
// what arrives meanwhile rather than a few messages each. A quiet lane (one
// that waited for its next message) writes it at once, so lingering adds no
// latency until there is load to batch. At 4,000 msgs/s this cut the
// node's CPU by 30 % (docs/benchmarks.md, "Session 7").
//
// Order: messages with the same key go to the same lane, which starts a
// write only after the previous one returned (retries included), so a key's
// messages reach Kafka in the order they were sent, as they did with one
// writer; across keys there is no order, which nothing relies on (a
// connection's PUBACKs are ordered by the broker's pipeline, whatever order
// Kafka's acknowledgements come back in).
type AsyncProducer struct {
	// writers are one writer per batch size class, smallest first (see batchClasses).
	writers   []*kafka.Writer
	transport *kafka.Transport
	max       int
	linger    time.Duration
	lanes     []chan queued
	lanesIdx  []int
	hash      kafka.Hash

	mu     sync.RWMutex // held for reading while sending, for writing to close
	closed bool
	wg     sync.WaitGroup // the lanes' goroutines

	writes, written atomic.Uint64 // write calls of the lanes, and the messages they carried
}

type queued struct {
	msg  Message
	done func(error)
}

// ErrClosed fails messages sent to a closed producer.
var ErrClosed = errors.New("producer closed")

// asyncWriteTimeout bounds one batch's write, retries included.
const asyncWriteTimeout = time.Minute

// laneBatch is the most messages one lane writes in one call. kafka-go
// allocates a batch of the writer's BatchSize messages (152 bytes each) for
// every partition a call writes to, however few it holds: with 2,000 that
// was 300 KB cleared per partition and call, the largest allocation of the
// ingest path.
const laneBatch = 256

// batchClasses are the batch sizes of the lanes' writers. kafka-go gives
// every batch room for its writer's BatchSize messages (152 bytes each) up
// front, however few it will hold, and at moderate rates a lane writes one to
// three messages a call: with one writer of laneBatch, that room was 39 KB a
// call and 61 % of all the node's allocation at 4,000 msgs/s. A call goes
// through the smallest writer whose size holds it, so the room is at most
// four times what it needs and a call is never split into several requests.
// A lane's calls follow one another, so changing writers keeps their order.
// Each writer holds one more than its class, so that a call's batch is never
// full below laneBatch and always waits the writer's linger, as with one
// writer: sending a batch of exactly a class's size at once made smaller
// requests under load (BenchmarkAsyncProducer 2.0 → 3.6 µs a message).
var batchClasses = []int{4, 16, 64, laneBatch}

// asyncLinger is the writer's batch timeout for the lanes. A lane has
// already gathered what was queued, and kafka-go adds all of one call's
// messages under the partition's lock before its timer can close the
// batch, so the batch goes out at once rather than after cfg.BatchTimeout.
const asyncLinger = 50 * time.Microsecond

// NewAsyncProducer returns an asynchronous producer for brokers, spreading
// messages over partitions by key; Close stops it.
func NewAsyncProducer(brokers []string, cfg Config) *AsyncProducer {
	transport := cfg.transport()
	n := max(1, cfg.Partitions)
	per := max(1, min(laneBatch, cfg.BatchSize))
	p := &AsyncProducer{
		transport: transport, max: per, linger: cfg.BatchTimeout,
		lanes: make([]chan queued, n), lanesIdx: make([]int, n),
	}
	for _, size := range batchClasses {
		wcfg := cfg
		wcfg.BatchTimeout, wcfg.BatchSize = asyncLinger, min(size+1, per)
		p.writers = append(p.writers, newWriter(brokers, wcfg, transport, nil))
		if size+1 >= per {
			break
		}
	}
	for i := range p.lanes {
		p.lanesIdx[i] = i
		p.lanes[i] = make(chan queued, max(per, cfg.BatchSize/n))
		p.wg.Add(1)
		go p.run(p.lanes[i])
	}
	return p
}

// Send queues msg (its Topic set) and calls done exactly once, from the
// producer's goroutine: with nil once Kafka acknowledged msg, or with the
// error. Send waits while the queue is full, at most until ctx ends. done
// must not block, and msg's bytes must stay unchanged until it ran.
func (p *AsyncProducer) Send(ctx context.Context, msg Message, done func(error)) {
	if p.TrySend(msg, done) { // a lane with room does not ask ctx for its Done channel, which costs one
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		done(ErrClosed)
		return
	}
	select {
	case p.lane(msg) <- queued{msg: msg, done: done}:
	case <-ctx.Done():
		done(fmt.Errorf("queue for kafka: %w", ctx.Err()))
	}
}

// TrySend is Send without the wait: it queues msg only if its lane has room
// now, and reports whether it took msg (done is then called as by Send; a
// closed producer takes msg and fails it). A caller that would bound the
// wait with a timer makes it only when TrySend returns false.
func (p *AsyncProducer) TrySend(msg Message, done func(error)) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		done(ErrClosed)
		return true
	}
	select {
	case p.lane(msg) <- queued{msg: msg, done: done}:
		return true
	default:
		return false
	}
}

// lane is the lane of msg's key.
func (p *AsyncProducer) lane(msg Message) chan queued {
	return p.lanes[p.hash.Balance(kafka.Message{Key: msg.Key}, p.lanesIdx...)]
}

// run writes the messages queued on lane in batches until it is closed and empty.
func (p *AsyncProducer) run(lane chan queued) {
	defer p.wg.Done()
	batch := make([]queued, 0, p.max)
	msgs := make([]kafka.Message, 0, p.max)
	busy := false // messages were queued when the lane came back from its last write
	for {
		if busy && len(lane) < p.max {
			time.Sleep(p.linger) // under load: let the batch fill
		}
		q, ok := <-lane
		if !ok {
			return
		}
		batch = append(batch[:0], q)
	more:
		for len(batch) < p.max {
			select {
			case q, ok := <-lane:
				if !ok {
					break more
				}
				batch = append(batch, q)
			default:
				break more
			}
		}
		msgs = msgs[:0]
		for i := range batch {
			msgs = append(msgs, batch[i].msg.toKafka())
		}
		ctx, cancel := context.WithTimeout(context.Background(), asyncWriteTimeout)
		err := p.writerFor(len(msgs)).WriteMessages(ctx, msgs...)
		cancel()
		var werrs kafka.WriteErrors
		perMessage := errors.As(err, &werrs) && len(werrs) == len(batch)
		for i, q := range batch {
			e := err
			if perMessage {
				e = werrs[i]
			}
			if e != nil {
				e = fmt.Errorf("produce to kafka: %w", e)
			}
			q.done(e)
		}
		p.writes.Add(1)
		p.written.Add(uint64(len(batch)))
		clear(batch)
		clear(msgs)
		busy = len(lane) > 0
	}
}

// Stats returns how many writes the lanes made and how many messages those carried.
func (p *AsyncProducer) Stats() (writes, messages uint64) {
	return p.writes.Load(), p.written.Load()
}

// RegisterStats registers Stats in reg as gale_kafka_ingest_writes_total and
// gale_kafka_ingest_messages_total; their ratio is the mean batch.
func (p *AsyncProducer) RegisterStats(reg prometheus.Registerer) error {
	return errors.Join(
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gale_kafka_ingest_writes_total",
			Help: "Produce calls of the ingest producer's lanes (one request per partition they touch).",
		}, func() float64 { return float64(p.writes.Load()) })),
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gale_kafka_ingest_messages_total",
			Help: "Messages the ingest producer's lanes wrote, acknowledged or not.",
		}, func() float64 { return float64(p.written.Load()) })))
}

// writerFor returns the writer of the smallest batch size class that holds n
// messages without filling up (the last one may fill: n is at most its size).
func (p *AsyncProducer) writerFor(n int) *kafka.Writer {
	for _, w := range p.writers {
		if w.BatchSize > n {
			return w
		}
	}
	return p.writers[len(p.writers)-1]
}

// Produce sends msgs and waits until Kafka acknowledged them all.
func (p *AsyncProducer) Produce(ctx context.Context, msgs ...Message) error {
	return SendAll(ctx, p.Send, msgs...)
}

// Close writes the messages still queued (calling their completions) and closes the producer.
func (p *AsyncProducer) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, l := range p.lanes {
			close(l)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	var errs []error
	for _, w := range p.writers {
		errs = append(errs, w.Close())
	}
	p.transport.CloseIdleConnections()
	return errors.Join(errs...)
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

// Produce writes msgs (each with its Topic set) in one request and waits for the broker's acknowledgement.
func (p *SyncProducer) Produce(ctx context.Context, msgs ...Message) error {
	km := make([]kafka.Message, len(msgs))
	for i := range msgs {
		km[i] = msgs[i].toKafka()
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		return fmt.Errorf("produce to kafka: %w", err)
	}
	return nil
}

// Send writes msg and calls done with the outcome before it returns.
func (p *SyncProducer) Send(ctx context.Context, msg Message, done func(error)) {
	done(p.Produce(ctx, msg))
}

// Close flushes and closes the producer.
func (p *SyncProducer) Close() error {
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

//go:build unix

package bus

// A measured comparison of the bus's Kafka client, kafka-go, with franz-go's
// kgo (issue 13: keep kafka-go unless another client is decisively better;
// docs/benchmarks.md, session 9, has the figures), as Gale uses them: against a fresh embedded kfake (in this process, as
// in Gale, so its CPU counts too), with the partitions of gale up on two
// cores, telemetry-sized records keyed by device. Every benchmark is one
// measurement, whatever b.N: it reports the process CPU (user+sys) per
// message over its window, allocations per message, the achieved rate and,
// for produce, the acknowledgement latency. Run each in its own process,
// alternating clients, e.g.
//
//	go test -c -o /tmp/bus.test ./platform/bus/
//	/tmp/bus.test -test.run '^$' -test.benchtime 1x -test.bench 'CompareProduce/12000/kafkago$' -bus.compare
//	/tmp/bus.test -test.run '^$' -test.benchtime 1x -test.bench 'CompareProduce/12000/kgo$' -bus.compare
//
// Without -bus.compare they are skipped: all of them take six minutes,
// which make bench need not spend on a decision taken.
//
// -bus.compare.requests counts the broker's requests by kind (a kfake
// control hook, which costs CPU of its own: count in runs of their own), and
// -bus.compare.cpuprofile profiles the measured window only.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/gale-iot/gale/internal/testkit"
)

var (
	cmpOn         = flag.Bool("bus.compare", false, "run the Kafka client comparisons")
	cmpWindow     = flag.Duration("bus.compare.window", 12*time.Second, "measured window of the produce and pipeline comparisons")
	cmpWarmup     = flag.Duration("bus.compare.warmup", 2*time.Second, "load before the measured window")
	cmpSenders    = flag.Int("bus.compare.senders", 1000, "concurrent senders (MQTT connections), each waiting for its acknowledgement")
	cmpRecords    = flag.Int("bus.compare.records", 300_000, "records the consume comparison reads")
	cmpPartitions = flag.Int("bus.compare.partitions", 2, "partitions of the topics (gale up: one per core, 2 to 8)")
	cmpRequests   = flag.Bool("bus.compare.requests", false, "count the broker's requests by kind (costs CPU of its own)")
	cmpProfile    = flag.String("bus.compare.cpuprofile", "", "write a CPU profile of the measured window to this file")
)

const (
	// cmpTopic stands for gale.telemetry.
	cmpTopic = "telemetry"
	// cmpValueSize is an encoded telemetry record's size.
	cmpValueSize = 600
	// cmpFillBatch is how many records each produce request carries when
	// the consume comparison's log is filled: about what the ingest
	// producer's lanes make at 12,000 msgs/s.
	cmpFillBatch = 50
)

// sendFunc is a producer's Send.
type sendFunc func(ctx context.Context, msg Message, done func(error))

// compareClient builds one client's producer and consumers the way the bus
// would; a nil function is a role the client does not play.
type compareClient struct {
	name     string
	producer func(tb testing.TB, brokers []string, cfg Config) sendFunc
	// consumer returns the Run of a consumer of topics in group handing
	// batches to h, committing after every batch, or with checkpoint > 0
	// every checkpoint (the rules engine's consumer).
	consumer func(tb testing.TB, brokers []string, group string, topics []string, cfg Config, h Handler, checkpoint time.Duration) func(context.Context) error
}

var compareClients = []compareClient{
	{name: "kafkago", producer: kafkaGoProducer, consumer: kafkaGoConsumer},
	{name: "kgo", producer: kgoProducer(0, true), consumer: kgoConsumer},
	{name: "kgo-linger2ms", producer: kgoProducer(2*time.Millisecond, true), consumer: kgoConsumer},
	// kgo-inflight1 is not idempotent, like the bus's writers, so that kgo
	// keeps one produce request in flight and batches what arrives meanwhile.
	{name: "kgo-inflight1", producer: kgoProducer(0, false), consumer: kgoConsumer},
	// harness acknowledges at once: the senders' own cost, and an idle broker's.
	{name: "harness", producer: func(testing.TB, []string, Config) sendFunc {
		return func(_ context.Context, _ Message, done func(error)) { done(nil) }
	}},
}

// kafkaGoProducer is the node's ingest producer.
func kafkaGoProducer(tb testing.TB, brokers []string, cfg Config) sendFunc {
	p := NewAsyncProducer(brokers, cfg)
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Error(err)
		}
	})
	return p.Send
}

// kafkaGoConsumer is the bus's Consumer.
func kafkaGoConsumer(_ testing.TB, brokers []string, group string, topics []string, cfg Config, h Handler, checkpoint time.Duration) func(context.Context) error {
	c := NewConsumer(brokers, group, topics, cfg, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if checkpoint > 0 {
		c.WithCheckpoint(checkpoint, func(context.Context) error { return nil })
	}
	return c.Run
}

// kgoProducer returns a kgo producer with acks=all and the given linger,
// uncompressed like the bus's writers. Idempotent (kgo's default, which
// kfake supports), it keeps up to 5 produce requests in flight; otherwise 1
// (kgo's default). Records are spread by key with kgo's default partitioner
// (murmur2), not kafka-go's FNV hash.
func kgoProducer(linger time.Duration, idempotent bool) func(testing.TB, []string, Config) sendFunc {
	return func(tb testing.TB, brokers []string, _ Config) sendFunc {
		opts := []kgo.Opt{
			kgo.SeedBrokers(brokers...),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(linger),
			kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.AllowAutoTopicCreation(),
		}
		if !idempotent {
			opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(cl.Close)
		return func(ctx context.Context, msg Message, done func(error)) {
			cl.Produce(ctx, &kgo.Record{Topic: msg.Topic, Key: msg.Key, Value: msg.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					err = fmt.Errorf("produce to kafka: %w", err)
				}
				done(err)
			})
		}
	}
}

// kgoConsumer is Consumer.Run ported to kgo: the same fetch settings, a
// batch filled for up to cfg.FetchWait or cfg.MaxBatch messages, handed to
// h, then committed synchronously (no lag measurement). Rebalances wait
// for the batch in hand (BlockRebalanceOnPoll), so that a commit never
// names a partition the member lost.
func kgoConsumer(tb testing.TB, brokers []string, group string, topics []string, cfg Config, h Handler, checkpoint time.Duration) func(context.Context) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(idleFetchWait),
		kgo.FetchMaxBytes(16<<20),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(cfg.SessionTimeout/5),
		kgo.RebalanceTimeout(cfg.SessionTimeout),
	)
	if err != nil {
		tb.Fatal(err)
	}
	return func(ctx context.Context) error {
		defer cl.CloseAllowingRebalance()
		batch := make([]Message, 0, cfg.MaxBatch)
		recs := make([]*kgo.Record, 0, cfg.MaxBatch)
		uncommitted := map[topicPartition]*kgo.Record{}
		last := time.Now()
		poll := func(ctx context.Context) error {
			f := cl.PollRecords(ctx, cfg.MaxBatch-len(batch))
			var errs []error
			f.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					errs = append(errs, err)
				}
			})
			f.EachPartition(func(p kgo.FetchTopicPartition) {
				for _, r := range p.Records {
					recs = append(recs, r)
					batch = append(batch, Message{Topic: r.Topic, Key: r.Key, Value: r.Value,
						Partition: int(r.Partition), Offset: r.Offset, HighWaterMark: p.HighWatermark})
				}
			})
			return errors.Join(errs...)
		}
		for {
			batch, recs = batch[:0], recs[:0]
			if err := poll(ctx); ctx.Err() != nil {
				return nil
			} else if err != nil {
				return fmt.Errorf("fetch from kafka: %w", err)
			}
			if len(batch) == 0 {
				cl.AllowRebalance()
				continue
			}
			fill, cancel := context.WithTimeout(ctx, cfg.FetchWait)
			for len(batch) < cfg.MaxBatch && fill.Err() == nil {
				_ = poll(fill) // errors come back with the next first poll
			}
			cancel()
			if err := h(ctx, batch); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("handle batch: %w", err)
			}
			for _, r := range recs {
				uncommitted[topicPartition{r.Topic, int(r.Partition)}] = r
			}
			if checkpoint == 0 || time.Since(last) >= checkpoint {
				commit := make([]*kgo.Record, 0, len(uncommitted))
				for _, r := range uncommitted {
					commit = append(commit, r)
				}
				if err := cl.CommitRecords(ctx, commit...); err != nil {
					if ctx.Err() != nil {
						return nil
					}
				} else {
					clear(uncommitted)
					last = time.Now()
				}
			}
			clear(recs)
			cl.AllowRebalance()
		}
	}
}

// startCompareKafka starts the embedded broker as gale up does: persisted
// to a data dir (without fsync), with a day's retention.
func startCompareKafka(b *testing.B) *Embedded {
	b.Helper()
	k, err := StartEmbeddedSecure("127.0.0.1:0", b.TempDir(), false, Log{
		Partitions: *cmpPartitions, Retention: 24 * time.Hour, RetentionBytes: 1 << 30,
		Retained: []string{cmpTopic},
	}, Security{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(k.Close)
	return k
}

func compareConfig() Config {
	cfg := DefaultConfig()
	cfg.Partitions = *cmpPartitions
	return cfg
}

// requestCounter counts the broker's requests by API key.
type requestCounter struct{ byKey [128]atomic.Int64 }

// countRequests counts k's requests when -bus.compare.requests is set, and returns nil otherwise.
func countRequests(k *Embedded) *requestCounter {
	if !*cmpRequests {
		return nil
	}
	rc := &requestCounter{}
	k.cluster.ControlKey(-1, func(req kmsg.Request) (kmsg.Response, error, bool) {
		if key := req.Key(); key >= 0 && int(key) < len(rc.byKey) {
			rc.byKey[key].Add(1)
		}
		return nil, nil, false // observe only: kfake answers
	})
	return rc
}

// usage is the process's use of the machine at one time.
type usage struct {
	at             time.Time
	cpu            time.Duration // user+sys
	mallocs, bytes uint64
	// requests by kind, when counted
	produce, fetch, commit, others int64
	counted                        bool
}

func takeUsage(rc *requestCounter) usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u := usage{at: time.Now(), cpu: testkit.CPUTime(), mallocs: ms.Mallocs, bytes: ms.TotalAlloc}
	if rc != nil {
		u.counted = true
		for key := range rc.byKey {
			n := rc.byKey[key].Load()
			switch int16(key) {
			case kmsg.Produce.Int16():
				u.produce += n
			case kmsg.Fetch.Int16():
				u.fetch += n
			case kmsg.OffsetCommit.Int16():
				u.commit += n
			default:
				u.others += n
			}
		}
	}
	return u
}

// window measures from start to stop, profiling it with -bus.compare.cpuprofile.
type window struct {
	rc      *requestCounter
	from    usage
	profile *os.File
}

func startWindow(b *testing.B, rc *requestCounter) *window {
	w := &window{rc: rc}
	if *cmpProfile != "" {
		f, err := os.Create(*cmpProfile)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		w.profile = f
	}
	w.from = takeUsage(rc)
	return w
}

// stop reports the window's use per message of msgs: CPU, allocations,
// requests, and the rate (also as ns/op).
func (w *window) stop(b *testing.B, msgs int64) {
	to := takeUsage(w.rc)
	if w.profile != nil {
		pprof.StopCPUProfile()
		if err := w.profile.Close(); err != nil {
			b.Error(err)
		}
	}
	if msgs <= 0 {
		b.Fatalf("no message in the window")
	}
	n, wall := float64(msgs), to.at.Sub(w.from.at)
	cpu := to.cpu - w.from.cpu
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-us/msg")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
	b.ReportMetric(float64(to.mallocs-w.from.mallocs)/n, "allocs/msg")
	b.ReportMetric(float64(to.bytes-w.from.bytes)/n, "B/msg")
	b.ReportMetric(n/wall.Seconds(), "msgs/s")
	b.ReportMetric(float64(wall.Nanoseconds())/n, "ns/op")
	if to.counted {
		b.ReportMetric(float64(to.produce-w.from.produce)/n, "produce-reqs/msg")
		b.ReportMetric(float64(to.fetch-w.from.fetch)/n, "fetch-reqs/msg")
		b.ReportMetric(float64(to.commit-w.from.commit)/n, "commit-reqs/msg")
		b.ReportMetric(float64(to.others-w.from.others)/n, "other-reqs/msg")
	}
}

// load is senders each sending one message at a time to cmpTopic and
// waiting for its acknowledgement, like MQTT connections publishing at
// QoS 1, at rate messages a second in all (0: as fast as they can).
type load struct {
	stopping, measuring atomic.Bool
	acked, failed       atomic.Int64
	latency             [][]time.Duration // each sender's, of the messages sent and acknowledged in the window
	wg                  sync.WaitGroup
}

func startLoad(send sendFunc, senders, rate int) *load {
	l := &load{latency: make([][]time.Duration, senders)}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(senders) / float64(rate) * float64(time.Second))
	}
	start := time.Now()
	for i := range senders {
		l.latency[i] = make([]time.Duration, 0, 2048)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			key := fmt.Appendf(nil, "turbine/WT%04d", i)
			value := make([]byte, cmpValueSize)
			for j := range value {
				value[j] = byte(i + j)
			}
			ack := make(chan error, 1)
			done := func(err error) { ack <- err }
			next := start.Add(interval * time.Duration(i) / time.Duration(senders))
			for !l.stopping.Load() {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					} else if -d > interval {
						next = time.Now() // fell behind: no burst to catch up
					}
					next = next.Add(interval)
				}
				in := l.measuring.Load()
				t := time.Now()
				send(context.Background(), Message{Topic: cmpTopic, Key: key, Value: value}, done)
				if err := <-ack; err != nil {
					l.failed.Add(1)
					continue
				}
				d := time.Since(t)
				l.acked.Add(1)
				if in && l.measuring.Load() {
					l.latency[i] = append(l.latency[i], d)
				}
			}
		}()
	}
	return l
}

// halt stops the senders once their messages in flight are answered.
func (l *load) halt() {
	l.stopping.Store(true)
	l.wg.Wait()
}

// stop stops the senders and reports the acknowledgement latency of the window.
func (l *load) stop(b *testing.B) {
	l.halt()
	all := slices.Concat(l.latency...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1e3 }
	b.ReportMetric(pct(0.50), "ack-p50-ms")
	b.ReportMetric(pct(0.99), "ack-p99-ms")
	if n := l.failed.Load(); n > 0 {
		b.Errorf("%d messages failed", n)
	}
}

// BenchmarkCompareProduce is the ingest path: -bus.compare.senders senders
// at 12,000 and 20,000 msgs/s (paced) and as fast as they can; one message
// is one sent and acknowledged (acks=all).
func BenchmarkCompareProduce(b *testing.B) {
	compareOn(b)
	for _, rate := range []int{12_000, 20_000, 0} {
		name := "max"
		if rate > 0 {
			name = strconv.Itoa(rate)
		}
		b.Run(name, func(b *testing.B) {
			for _, c := range compareClients {
				if c.producer != nil && (rate > 0 || c.name != "harness") { // unpaced, the harness only spins
					b.Run(c.name, func(b *testing.B) { benchProduce(b, c, rate) })
				}
			}
		})
	}
}

func benchProduce(b *testing.B, c compareClient, rate int) {
	k := startCompareKafka(b)
	rc := countRequests(k)
	send := c.producer(b, k.Addrs(), compareConfig())
	l := startLoad(send, *cmpSenders, rate)
	defer l.halt() // before the producer closes, when the benchmark fails
	time.Sleep(*cmpWarmup)
	from := l.acked.Load()
	l.measuring.Store(true)
	w := startWindow(b, rc)
	time.Sleep(*cmpWindow)
	l.measuring.Store(false)
	w.stop(b, l.acked.Load()-from)
	l.stop(b)
}

// BenchmarkCompareConsume is a consumer group reading -bus.compare.records
// records, produced beforehand in requests of cmpFillBatch, through to the
// end, handing batches to a handler that does nothing and committing after
// each; one message is one handled. The window starts as the consumer is
// made, so it includes joining the group.
func BenchmarkCompareConsume(b *testing.B) {
	compareOn(b)
	for _, c := range compareClients {
		if c.name == "kafkago" || c.name == "kgo" { // the consumer is the same for every kgo producer
			b.Run(c.name, func(b *testing.B) { benchConsume(b, c) })
		}
	}
}

func benchConsume(b *testing.B, c compareClient) {
	k := startCompareKafka(b)
	fillTopic(b, k.Addrs(), *cmpRecords)
	rc := countRequests(k)
	runtime.GC()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var handled int64
	var first, last time.Time
	w := startWindow(b, rc)
	start := time.Now()
	run := c.consumer(b, k.Addrs(), "bench", []string{cmpTopic}, compareConfig(), func(_ context.Context, batch []Message) error {
		if handled == 0 {
			first = time.Now()
		}
		handled += int64(len(batch))
		if handled >= int64(*cmpRecords) {
			last = time.Now()
			cancel()
		}
		return nil
	}, 0)
	if err := run(ctx); err != nil {
		b.Fatal(err)
	}
	w.stop(b, handled)
	if handled < int64(*cmpRecords) {
		b.Fatalf("handled %d of %d", handled, *cmpRecords)
	}
	b.ReportMetric(first.Sub(start).Seconds(), "first-msg-s")
	b.ReportMetric(float64(handled)/last.Sub(first).Seconds(), "read-msgs/s")
}

// fillTopic produces n telemetry records to cmpTopic, cmpFillBatch a request.
func fillTopic(b *testing.B, brokers []string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ManualFlushing(),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(cmpFillBatch))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, cmpValueSize)
	var failed atomic.Int64
	for i := 0; i < n; {
		for range min(cmpFillBatch, n-i) {
			r := &kgo.Record{Topic: cmpTopic, Key: fmt.Appendf(nil, "turbine/WT%04d", i%1000), Value: value}
			cl.Produce(b.Context(), r, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
				}
			})
			i++
		}
		if err := cl.Flush(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	if failed.Load() > 0 {
		b.Fatalf("%d records failed", failed.Load())
	}
}

// BenchmarkComparePipeline is the bus at 12,000 msgs/s as a node uses it:
// the senders produce to cmpTopic while two consumer groups tail it (the
// TSDB's, committing after every batch, and the rules engine's, every 5 s);
// one message is one produced, and consumed twice.
func BenchmarkComparePipeline(b *testing.B) {
	compareOn(b)
	for _, c := range compareClients {
		if c.consumer != nil {
			b.Run(c.name, func(b *testing.B) { benchPipeline(b, c, c, 12_000) })
		}
	}
}

// BenchmarkCompareTail is BenchmarkComparePipeline with the bus's own
// producer whatever the consumers' client: less
// BenchmarkCompareProduce/12000/kafkago, it is what tailing costs each
// client.
func BenchmarkCompareTail(b *testing.B) {
	compareOn(b)
	for _, c := range compareClients {
		if c.name == "kafkago" || c.name == "kgo" {
			b.Run(c.name, func(b *testing.B) { benchPipeline(b, compareClients[0], c, 12_000) }) // [0]: kafkago
		}
	}
}

// benchPipeline produces with p's producer and consumes with c's consumers.
func benchPipeline(b *testing.B, p, c compareClient, rate int) {
	k := startCompareKafka(b)
	rc := countRequests(k)
	cfg := compareConfig()
	ctx, cancel := context.WithCancel(b.Context())
	var consumed [2]atomic.Int64
	var wg sync.WaitGroup
	for i, checkpoint := range []time.Duration{0, 5 * time.Second} {
		run := c.consumer(b, k.Addrs(), "group"+strconv.Itoa(i), []string{cmpTopic}, cfg, func(_ context.Context, batch []Message) error {
			consumed[i].Add(int64(len(batch)))
			return nil
		}, checkpoint)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				b.Error(err)
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	send := p.producer(b, k.Addrs(), cfg)
	l := startLoad(send, *cmpSenders, rate)
	defer l.halt() // before the producer closes, when the benchmark fails
	for deadline := time.Now().Add(30 * time.Second); consumed[0].Load() == 0 || consumed[1].Load() == 0; {
		if time.Now().After(deadline) {
			b.Fatal("the consumers did not start within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(*cmpWarmup)
	from, from0, from1 := l.acked.Load(), consumed[0].Load(), consumed[1].Load()
	l.measuring.Store(true)
	w := startWindow(b, rc)
	time.Sleep(*cmpWindow)
	l.measuring.Store(false)
	produced := l.acked.Load() - from
	w.stop(b, produced)
	b.ReportMetric(float64(consumed[0].Load()-from0+consumed[1].Load()-from1)/float64(produced), "consumed/msg")
	l.stop(b)
}

// compareOn skips the comparison unless -bus.compare is set.
func compareOn(b *testing.B) {
	if !*cmpOn {
		b.Skip("the Kafka client comparison runs with -bus.compare")
	}
}

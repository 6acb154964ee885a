package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// benchValue is a telemetry record's size: a post of ten points.
var benchValue = make([]byte, 200)

// BenchmarkAsyncProducer is the broker's ingest producer against the
// embedded Kafka (in this process, so its allocations count too): one op
// is one message sent and acknowledged, from 16 senders.
//
//	go test -run '^$' -bench 'AsyncProducer|Consumer' -benchmem ./platform/bus/
func BenchmarkAsyncProducer(b *testing.B) {
	k := startKafka(b)
	cfg := DefaultConfig()
	cfg.Partitions = 3
	p := NewAsyncProducer(k.Addrs(), cfg)
	b.Cleanup(func() { require.NoError(b, p.Close()) })
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "wt/WT%04d", i)
	}
	var acked sync.WaitGroup
	var failed atomic.Int64
	done := func(err error) {
		if err != nil {
			failed.Add(1)
		}
		acked.Done()
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			acked.Add(1)
			p.Send(context.Background(), Message{Topic: "t", Key: keys[i%len(keys)], Value: benchValue}, done)
		}
	})
	acked.Wait()
	require.Zero(b, failed.Load())
}

// BenchmarkAsyncProducerOneAtATime is one sender that waits for each
// message's acknowledgement before it sends the next: every lane call carries
// one message, as at moderate rates, so the allocation a call costs shows.
func BenchmarkAsyncProducerOneAtATime(b *testing.B) {
	k := startKafka(b)
	cfg := DefaultConfig()
	cfg.Partitions = 3
	p := NewAsyncProducer(k.Addrs(), cfg)
	b.Cleanup(func() { require.NoError(b, p.Close()) })
	acked := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p.Send(context.Background(), Message{Topic: "t", Key: fmt.Appendf(nil, "wt/WT%04d", i%1000), Value: benchValue}, func(err error) { acked <- err })
		require.NoError(b, <-acked)
	}
}

// BenchmarkConsumer is a consumer group reading b.N messages, produced
// beforehand, from the embedded Kafka: one op is one message handed to the
// handler (its offset committed with its batch).
func BenchmarkConsumer(b *testing.B) {
	k := startKafka(b)
	cfg := DefaultConfig()
	p := NewSyncProducer(k.Addrs(), cfg)
	b.Cleanup(func() { require.NoError(b, p.Close()) })
	batch := make([]Message, 0, 1000)
	for sent := 0; sent < b.N; sent += len(batch) {
		batch = batch[:0]
		for i := sent; i < min(b.N, sent+cap(batch)); i++ {
			batch = append(batch, Message{Topic: "t", Key: fmt.Appendf(nil, "wt/WT%04d", i%1000), Value: benchValue})
		}
		require.NoError(b, p.Produce(context.Background(), batch...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	handled := 0
	c := NewConsumer(k.Addrs(), "bench", []string{"t"}, cfg, func(_ context.Context, batch []Message) error {
		handled += len(batch)
		if handled >= b.N {
			cancel()
		}
		return nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.ReportAllocs()
	b.ResetTimer()
	require.NoError(b, c.Run(ctx))
	b.StopTimer()
	require.GreaterOrEqual(b, handled, b.N)
}

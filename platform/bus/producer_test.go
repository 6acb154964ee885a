package bus

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAsyncProducerKeepsPartitionOrder: with as many lanes as the topic has
// partitions, each partition is fed by one lane, so every partition holds
// its records in the order they were sent, whatever their keys, while the
// lanes' requests are in flight at the same time. The messages come in
// bursts of growing size with pauses between them, so a lane's calls go
// through writers of every batch size class, one after the other.
func TestAsyncProducerKeepsPartitionOrder(t *testing.T) {
	k := startKafka(t) // topic "t" with 3 partitions
	cfg := DefaultConfig()
	cfg.Partitions = 3
	p := NewAsyncProducer(k.Addrs(), cfg)

	const n = 3000
	acked := make(chan error, n)
	bursts := []int{1, 3, 10, 40, 150, 700}
	for i, burst, left := 0, 0, bursts[0]; i < n; i++ {
		msg := Message{Topic: "t", Key: fmt.Appendf(nil, "device-%d", i%97), Value: []byte(strconv.Itoa(i))}
		p.Send(context.Background(), msg, func(err error) { acked <- err })
		if left--; left == 0 {
			burst = (burst + 1) % len(bursts)
			left = bursts[burst]
			time.Sleep(time.Millisecond)
		}
	}
	for range n {
		require.NoError(t, <-acked)
	}
	require.NoError(t, p.Close())

	msgs, err := ReadTopic(context.Background(), k.Addrs(), cfg, "t")
	require.NoError(t, err)
	require.Len(t, msgs, n)
	last := map[int]int{}
	for _, m := range msgs {
		i, err := strconv.Atoi(string(m.Value))
		require.NoError(t, err)
		if prev, ok := last[m.Partition]; ok {
			require.Greater(t, i, prev, "partition %d: record %d after %d", m.Partition, i, prev)
		}
		last[m.Partition] = i
	}
	require.Len(t, last, 3, "every partition has records")
}

// TestProducersAnswerBothWays: either producer writes with Produce (which
// waits) and with Send (which calls back), and a closed one refuses both.
func TestProducersAnswerBothWays(t *testing.T) {
	k := startKafka(t)
	cfg := DefaultConfig()
	ctx := context.Background()
	for _, p := range []interface {
		Producer
		Close() error
	}{NewSyncProducer(k.Addrs(), cfg), NewAsyncProducer(k.Addrs(), cfg)} {
		require.NoError(t, p.Produce(ctx, Message{Topic: "t", Key: []byte("a"), Value: []byte("1")}, Message{Topic: "t", Key: []byte("b"), Value: []byte("2")}))
		sent := make(chan error, 1)
		p.Send(ctx, Message{Topic: "t", Key: []byte("c"), Value: []byte("3")}, func(err error) { sent <- err })
		require.NoError(t, <-sent)
		require.NoError(t, p.Close())
	}
	msgs, err := ReadTopic(ctx, k.Addrs(), cfg, "t")
	require.NoError(t, err)
	require.Len(t, msgs, 6)

	closed := NewAsyncProducer(k.Addrs(), cfg)
	require.NoError(t, closed.Close())
	require.ErrorIs(t, closed.Produce(ctx, Message{Topic: "t"}, Message{Topic: "t"}), ErrClosed)
}

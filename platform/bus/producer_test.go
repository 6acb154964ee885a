package bus

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAsyncProducerKeepsPartitionOrder: with as many lanes as the topic has
// partitions, each partition is fed by one lane, so every partition holds
// its records in the order they were sent, whatever their keys, while the
// lanes' requests are in flight at the same time.
func TestAsyncProducerKeepsPartitionOrder(t *testing.T) {
	k := startKafka(t) // topic "t" with 3 partitions
	cfg := DefaultConfig()
	cfg.Partitions = 3
	p := NewAsyncProducer(k.Addrs(), cfg)

	const n = 3000
	acked := make(chan error, n)
	for i := range n {
		msg := Message{Topic: "t", Key: fmt.Appendf(nil, "device-%d", i%97), Value: []byte(strconv.Itoa(i))}
		p.Send(context.Background(), msg, func(err error) { acked <- err })
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

package bus

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
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
		msg := kafka.Message{Topic: "t", Key: fmt.Appendf(nil, "device-%d", i%97), Value: []byte(strconv.Itoa(i))}
		p.Send(context.Background(), msg, func(err error) { acked <- err })
	}
	for range n {
		require.NoError(t, <-acked)
	}
	require.NoError(t, p.Close())

	total := 0
	for part := range 3 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Addrs(), Topic: "t", Partition: part, MaxWait: 50 * time.Millisecond})
		t.Cleanup(func() { r.Close() })
		last := -1
		for {
			lag, err := r.ReadLag(context.Background())
			require.NoError(t, err)
			if lag == 0 {
				break
			}
			m, err := r.ReadMessage(context.Background())
			require.NoError(t, err)
			i, err := strconv.Atoi(string(m.Value))
			require.NoError(t, err)
			require.Greater(t, i, last, "partition %d: record %d after %d", part, i, last)
			last = i
			total++
		}
	}
	require.Equal(t, n, total)
}

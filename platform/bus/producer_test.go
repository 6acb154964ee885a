package bus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// TestAsyncProducerLingersOnlyUnderLoad: a lane that waited for its next
// message writes it at once, however long the linger (ten messages one
// after the other take well under one linger); a lane that finds messages
// queued when its write returns waits the linger for more, so what arrives
// meanwhile goes in the same write.
func TestAsyncProducerLingersOnlyUnderLoad(t *testing.T) {
	k := startKafka(t)
	cfg := DefaultConfig()
	cfg.Partitions = 1
	cfg.BatchTimeout = time.Second
	p := NewAsyncProducer(k.Addrs(), cfg)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	msg := Message{Topic: "t", Key: []byte("k"), Value: []byte("v")}

	quiet, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 10 {
		require.NoError(t, p.Produce(quiet, msg))
	}
	writes, msgs := p.Stats()
	require.Equal(t, [2]uint64{10, 10}, [2]uint64{writes, msgs}, "a quiet lane writes each message alone")

	send := func(n int) chan error {
		acked := make(chan error, n)
		for range n {
			p.Send(context.Background(), msg, func(err error) { acked <- err })
		}
		return acked
	}
	wait := func(acked chan error, n int) {
		for range n {
			require.NoError(t, <-acked)
		}
	}
	held := make(chan struct{})
	k.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.cluster.DropControl() // only the first write is held
		close(held)
		time.Sleep(300 * time.Millisecond) // the write is in flight while 20 messages queue
		return nil, nil, false
	})
	first := send(1)
	<-held
	queued := send(20)
	wait(first, 1) // the lane found 20 queued: it lingers
	time.Sleep(50 * time.Millisecond)
	late := send(20)
	wait(queued, 20)
	wait(late, 20)
	writes, msgs = p.Stats()
	require.Equal(t, [2]uint64{12, 51}, [2]uint64{writes, msgs},
		"the held message, then the queued and the late ones in one write")

	reg := prometheus.NewRegistry()
	require.NoError(t, p.RegisterStats(reg))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP gale_kafka_ingest_messages_total Messages the ingest producer's lanes wrote, acknowledged or not.
# TYPE gale_kafka_ingest_messages_total counter
gale_kafka_ingest_messages_total 51
# HELP gale_kafka_ingest_writes_total Produce calls of the ingest producer's lanes (one request per partition they touch).
# TYPE gale_kafka_ingest_writes_total counter
gale_kafka_ingest_writes_total 12
`)))
}

// TestAsyncProducerTrySendNeverWaits: TrySend takes a message only while its
// lane has room, and Send with the same full lane waits until its context
// ends; a closed producer takes and fails every message.
func TestAsyncProducerTrySendNeverWaits(t *testing.T) {
	k := startKafka(t)
	cfg := DefaultConfig()
	cfg.Partitions, cfg.BatchSize = 1, 4 // a lane holds 4 messages
	p := NewAsyncProducer(k.Addrs(), cfg)
	msg := Message{Topic: "t", Key: []byte("k"), Value: []byte("v")}
	acked := make(chan error, 10)
	ack := func(err error) { acked <- err }

	held, release := make(chan struct{}), make(chan struct{})
	k.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.cluster.DropControl()
		close(held)
		<-release // the lane's first write is in flight until released
		return nil, nil, false
	})
	require.True(t, p.TrySend(msg, ack))
	<-held
	for i := range 4 {
		require.True(t, p.TrySend(msg, ack), "message %d fits the lane", i)
	}
	require.False(t, p.TrySend(msg, ack), "the lane is full")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p.Send(ctx, msg, ack)
	require.ErrorIs(t, <-acked, context.DeadlineExceeded, "Send waited for room until its context ended")
	require.Empty(t, acked, "nothing else completed while the write was held")

	close(release)
	for range 5 {
		require.NoError(t, <-acked)
	}
	require.NoError(t, p.Close())
	require.True(t, p.TrySend(msg, ack))
	require.ErrorIs(t, <-acked, ErrClosed)
}

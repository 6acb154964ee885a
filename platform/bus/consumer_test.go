package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

// startKafka starts an embedded Kafka with topic "t" of three partitions.
func startKafka(t testing.TB) *Embedded {
	t.Helper()
	k, err := StartEmbedded("127.0.0.1:0", "", false, 3, "t")
	require.NoError(t, err)
	t.Cleanup(k.Close)
	return k
}

func TestLagGrowsWhileTheHandlerIsHeldBack(t *testing.T) {
	k := startKafka(t)
	cfg := DefaultConfig()
	p := NewSyncProducer(k.Addrs(), cfg)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	ctx := t.Context()
	produce := func(n int) {
		for range n {
			require.NoError(t, p.Produce(ctx, Message{Topic: "t", Value: []byte("x")}))
		}
	}

	release := make(chan struct{})
	c := NewConsumer(k.Addrs(), "g", []string{"t"}, cfg, func(ctx context.Context, batch []Message) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.lagEvery = 20 * time.Millisecond
	testkit.RunUntilEnd(t, c.Run)

	produce(10)
	require.Eventually(t, func() bool { return c.Lag() == 10 }, 20*time.Second, 10*time.Millisecond, "lag %d", c.Lag())
	produce(5)
	require.Eventually(t, func() bool { return c.Lag() == 15 }, 5*time.Second, 10*time.Millisecond, "lag %d", c.Lag())
	close(release)
	require.Eventually(t, func() bool { return c.Lag() == 0 }, 5*time.Second, 10*time.Millisecond, "lag %d", c.Lag())
}

func TestAsyncProducerAcknowledgesEveryMessageInOrder(t *testing.T) {
	k := startKafka(t)
	cfg := DefaultConfig()
	p := NewAsyncProducer(k.Addrs(), cfg)

	const senders, each = 8, 500
	acked := make(chan error, senders*each)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				msg := Message{Topic: "t", Key: []byte{byte(s)}, Value: fmt.Appendf(nil, "%d", i)}
				p.Send(context.Background(), msg, func(err error) { acked <- err })
			}
		}()
	}
	wg.Wait()
	for range senders * each {
		require.NoError(t, <-acked)
	}
	require.NoError(t, p.Close())
	p.Send(context.Background(), Message{Topic: "t"}, func(err error) { acked <- err })
	require.ErrorIs(t, <-acked, ErrClosed)

	// Every message is on Kafka, and each sender's messages in the order sent.
	next := make([]int, senders)
	msgs, err := ReadTopic(context.Background(), k.Addrs(), cfg, "t")
	require.NoError(t, err)
	for _, m := range msgs {
		require.Equal(t, strconv.Itoa(next[m.Key[0]]), string(m.Value), "sender %d", m.Key[0])
		next[m.Key[0]]++
	}
	for s := range senders {
		require.Equal(t, each, next[s], "sender %d", s)
	}
}

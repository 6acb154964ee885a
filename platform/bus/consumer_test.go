package bus

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

func TestLagGrowsWhileTheHandlerIsHeldBack(t *testing.T) {
	k, err := StartEmbedded("127.0.0.1:0", "", false, 3, "t")
	require.NoError(t, err)
	t.Cleanup(k.Close)
	cfg := DefaultConfig()
	p := NewProducer(k.Addrs(), cfg)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	ctx, cancel := context.WithCancel(context.Background())
	produce := func(n int) {
		for range n {
			require.NoError(t, p.Produce(ctx, kafka.Message{Topic: "t", Value: []byte("x")}))
		}
	}

	release := make(chan struct{})
	c := NewConsumer(k.Addrs(), "g", []string{"t"}, cfg, func(ctx context.Context, batch []kafka.Message) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.lagEvery = 20 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	produce(10)
	require.Eventually(t, func() bool { return c.Lag() == 10 }, 20*time.Second, 10*time.Millisecond, "lag %d", c.Lag())
	produce(5)
	require.Eventually(t, func() bool { return c.Lag() == 15 }, 5*time.Second, 10*time.Millisecond, "lag %d", c.Lag())
	close(release)
	require.Eventually(t, func() bool { return c.Lag() == 0 }, 5*time.Second, 10*time.Millisecond, "lag %d", c.Lag())
}

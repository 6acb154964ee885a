package bus

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestRegisterLagOncePerGroupUntilUnregistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := NewConsumer([]string{"127.0.0.1:1"}, "g1", []string{"t"}, DefaultConfig(), nil, slog.New(slog.DiscardHandler))
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	defer func() { require.NoError(t, c.Run(stopped)) }() // closes its reader
	unregister, err := RegisterLag(reg, c)
	require.NoError(t, err)
	_, err = RegisterLag(reg, c)
	require.Error(t, err, "a group's gauge registers once")
	require.Equal(t, 1, testutil.CollectAndCount(reg, "gale_kafka_consumer_lag"))
	unregister()
	require.Equal(t, 0, testutil.CollectAndCount(reg, "gale_kafka_consumer_lag"))
	_, err = RegisterLag(reg, c)
	require.NoError(t, err, "registers again after unregister")
}

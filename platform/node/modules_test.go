package node

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStartOrderFollowsTheModuleTable checks every role's start order: each
// component once, after its deps and the role's components it comes after.
func TestStartOrderFollowsTheModuleTable(t *testing.T) {
	for role := range roles {
		order, err := startOrder(role)
		require.NoError(t, err, role)
		for i, name := range order {
			require.Equal(t, i, slices.Index(order, name), "%s: %s twice", role, name)
			for _, d := range modules[name].deps {
				require.Contains(t, order[:i], d, "%s: %s before its dep %s", role, name, d)
			}
			for _, d := range modules[name].after {
				if slices.Contains(order, d) {
					require.Contains(t, order[:i], d, "%s: %s before %s", role, name, d)
				}
			}
		}
		require.Equal(t, modMemory, order[0], role)
	}
	ingest, _ := startOrder(RoleIngest)
	require.NotContains(t, ingest, modTSDB, "an ingest node stores nothing")
	process, _ := startOrder(RoleProcess)
	require.NotContains(t, process, modBroker, "a process node has no broker")
	require.Contains(t, process, modRoutes)
	_, err := startOrder("everything")
	require.ErrorIs(t, err, ErrConfig)
}

// TestNodeBuiltButNeverRunReleasesItsListeners builds a node of each role
// with listeners, closes it without running it and binds its addresses again.
func TestNodeBuiltButNeverRunReleasesItsListeners(t *testing.T) {
	for _, role := range []string{RoleAll, RoleIngest} {
		t.Run(role, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Role, cfg.DataDir = role, t.TempDir()
			cfg.HTTP.Addr, cfg.MQTT.Addr, cfg.Kafka.EmbeddedAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			n, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
			require.NoError(t, err)
			addrs := []string{n.HTTPAddr(), n.MQTTAddr(), n.KafkaAddrs()[0]}
			for _, a := range addrs {
				_, err := net.Listen("tcp", a)
				require.Error(t, err, "%s is bound while the node is open", a)
			}
			require.Error(t, n.readiness(), "a node never run is not ready")
			n.Close()
			for _, a := range addrs {
				l, err := net.Listen("tcp", a)
				require.NoError(t, err, "%s released by Close", a)
				require.NoError(t, l.Close())
			}
			n.Close() // twice is harmless
		})
	}
}

// TestNodeThatFailsToBuildReleasesWhatItBound takes the HTTP port: New fails
// naming it, having released the MQTT listener it bound before.
func TestNodeThatFailsToBuildReleasesWhatItBound(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	mqtt, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mqttAddr := mqtt.Addr().String()
	require.NoError(t, mqtt.Close())

	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr, cfg.MQTT.Addr, cfg.Kafka.EmbeddedAddr = taken.Addr().String(), mqttAddr, "127.0.0.1:0"
	_, err = New(context.Background(), cfg, slog.New(slog.DiscardHandler), nil)
	require.ErrorContains(t, err, "listen http on "+taken.Addr().String())
	require.ErrorContains(t, err, "address already in use")
	l, err := net.Listen("tcp", mqttAddr)
	require.NoError(t, err, "the MQTT listener was released")
	require.NoError(t, l.Close())
}

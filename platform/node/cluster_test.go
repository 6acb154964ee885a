package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

// TestClusterSharesRegistryAndRoutesCommands runs two nodes on one Kafka: A
// (all roles, with the embedded Kafka) and B (ingest only). A device created
// through A logs in at B; its telemetry lands in A's TSDB; a command called on
// A's API is delivered by B, which holds the session, and its reply answers A.
func TestClusterSharesRegistryAndRoutesCommands(t *testing.T) {
	a := nodetest.Start(t, nodetest.Config(t))
	cfgB := nodetest.Config(t)
	cfgB.NodeID, cfgB.Role = "b", node.RoleIngest
	cfgB.Kafka.Brokers = a.Node.KafkaAddrs()
	cfgB.ClusterKeyFile = a.Config.ClusterKeyFile // one cluster, one key
	b := nodetest.Start(t, cfgB)

	a.SetupProduct(t, "sensor", "Temp")
	require.Equal(t, http.StatusOK, a.Do(t, "PUT", "/api/v1/products/sensor", api.Product{Key: "sensor", Model: api.ThingModel{
		Measurepoints: []api.Measurepoint{{ID: "Temp", Type: api.TypeFloat}},
		Services:      []api.Service{{ID: "ping"}},
	}}, nil))
	d := a.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	require.Eventually(t, func() bool { _, ok := b.Node.Registry.Device("sensor", "d1"); return ok }, 10*time.Second, 20*time.Millisecond,
		"the device reaches B through the registry change log")
	require.Eventually(t, func() bool { m, ok := b.Node.Registry.Model("sensor"); _, svc := m.Service("ping"); return ok && svc },
		10*time.Second, 20*time.Millisecond, "and so does the product's latest model")
	var products []api.Product
	require.Equal(t, http.StatusOK, b.As(t, a.Token).Do(t, "GET", "/api/v1/products", nil, &products), "A's admin token works on B")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev, err := device.Connect(ctx, device.Config{Broker: b.MQTTAddr(), ProductKey: "sensor", DeviceKey: "d1", Secret: d.Secret,
		OnService: func(c device.ServiceCall) (int, string, any) {
			return api.CodeOK, "", map[string]string{"pong": c.DeviceKey}
		}})
	require.NoError(t, err)
	defer dev.Close()
	require.NoError(t, dev.Post(ctx, time.Now(), map[string]any{"Temp": 33.0}))
	require.Eventually(t, func() bool {
		s := a.Query(t, `Temp{device="d1"}`, time.Time{})
		return len(s) == 1 && s[0].Float() == 33
	}, 15*time.Second, 20*time.Millisecond, "posted at B, stored by A")

	var c api.Command
	require.Equal(t, http.StatusOK, a.Do(t, "POST", "/api/v1/devices/sensor/d1/services/ping?timeout=15s", nil, &c), "%+v", c)
	require.Equal(t, api.CommandSucceeded, c.Status)
	require.JSONEq(t, `{"pong":"d1"}`, string(c.Output))

	var e map[string]string
	require.Equal(t, http.StatusNotFound, b.Do(t, "GET", "/prometheus/api/v1/query?query=up", nil, &e), "an ingest node has no query API")
}

// TestNotReadyWithoutKafka stops the Kafka a node uses: the node answers
// /readyz 503 naming Kafka within a few checks (so a load balancer sends its
// devices elsewhere), and 200 again once Kafka is back on the same address.
func TestNotReadyWithoutKafka(t *testing.T) {
	kafkaDir := t.TempDir()
	k, err := bus.StartEmbedded("127.0.0.1:0", kafkaDir, false, 2, api.Topics()...)
	require.NoError(t, err)
	addr := k.Addrs()[0]
	cfg := nodetest.Config(t)
	cfg.Kafka.Brokers = []string{addr}
	h := nodetest.Start(t, cfg)
	readyz := func() (int, string) {
		resp, err := http.Get(h.BaseURL + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := readyz()
	require.Equal(t, http.StatusOK, code)

	k.Close()
	require.Eventually(t, func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "kafka unreachable")
	}, 10*time.Second, 100*time.Millisecond, "not ready without Kafka")

	k, err = bus.StartEmbedded(addr, kafkaDir, false, 2, api.Topics()...)
	require.NoError(t, err)
	t.Cleanup(k.Close)
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 10*time.Second, 100*time.Millisecond,
		"ready again with Kafka back")
}

package direct_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/direct"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
)

var quiet = slog.New(slog.DiscardHandler)

// fleetConfig is the demo farm with two turbines and met mast MM01: WT01
// behind gateway GW01, WT02 and MM01 connected directly.
func fleetConfig() twins.Config {
	fc := farm.DefaultConfig()
	fc.Count, fc.Rows = 2, 1
	return twins.Config{Seed: 1, Farms: []farm.Config{fc},
		Gateways: []modbus.Config{{ID: "GW01", Addr: "127.0.0.1:0", Units: []regmap.Unit{{Device: "WT01"}}}}}
}

func newFleet(t testing.TB) *twins.Fleet {
	f, err := twins.New(fleetConfig(), quiet)
	require.NoError(t, err)
	return f
}

// TestDirectDevicesAgainstNode runs the met mast and a direct turbine of a
// fleet against a node seeded with the demo registry: their points land in
// the TSDB with the registry's labels, a fault event reaches the broker, and
// a service call published to the turbine's topic changes the twin.
func TestDirectDevicesAgainstNode(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	require.NoError(t, node.SeedDemo(context.Background(), h.Node.Registry, node.Demo{Turbines: 2}))
	f := newFleet(t)
	secret := func(pk, dk string) (string, error) {
		d, ok := h.Node.Registry.Device(pk, dk)
		if !ok {
			return "", fmt.Errorf("no device %s/%s", pk, dk)
		}
		return d.Secret, nil
	}
	reg := prometheus.NewRegistry()
	r, err := direct.New(f, direct.Config{Broker: h.MQTTAddr(), Secret: secret, Interval: time.Second}, quiet, reg)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, f.Run(ctx)) })
	wg.Go(func() { require.NoError(t, r.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	for _, c := range []struct{ metric, device, product, point string }{
		{"WMET_HorWdSpd", "MM01", "met-mast", "WMET.HorWdSpd"},
		{"WTUR_W", "WT02", "wind-turbine", "WTUR.W"},
	} {
		var got []nodetest.Sample
		require.Eventually(t, func() bool {
			got = h.Query(t, fmt.Sprintf(`%s{device=%q}`, c.metric, c.device), time.Time{})
			return len(got) == 1
		}, 15*time.Second, 50*time.Millisecond, "%s of %s", c.metric, c.device)
		require.Equal(t, map[string]string{"__name__": c.metric, "point": c.point, "org": "demo", "site": "demo-farm",
			"product": c.product, "device": c.device}, got[0].Metric)
	}
	require.Empty(t, h.Query(t, `WTUR_W{device="WT01"}`, time.Time{}), "WT01 sits behind a gateway: not run directly")

	// A service call on the turbine's own topic, as the cloud sends it.
	require.NoError(t, h.Node.Publish("/sys/wind-turbine/WT02/thing/service/setPowerLimit",
		[]byte(`{"id":"7","method":"thing.service.setPowerLimit","params":{"limit":1500}}`)))
	wt02, _ := f.Turbine("WT02")
	require.Eventually(t, func() bool { return wt02.Points()[turbine.PointDmdW] == 1500 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		p := wt02.Points()
		return p[turbine.PointW] <= 1500 && p[turbine.PointTurSt] == float64(turbine.StateCurtailed)
	}, 10*time.Second, 20*time.Millisecond, "the turbine obeys the limit")
	require.Equal(t, 1.0, gathered(t, reg, `gale_twins_direct_service_calls_total{code="200"}`))
	require.Eventually(t, func() bool {
		s := h.Query(t, `WTUR_DmdW{device="WT02"}`, time.Time{})
		return len(s) == 1 && s[0].Float() == 1500
	}, 10*time.Second, 50*time.Millisecond, "the setpoint reaches the TSDB")

	// A fault: grid loss trips the turbine, which posts its fault event.
	require.NoError(t, wt02.Inject(turbine.FaultGridLoss))
	require.Eventually(t, func() bool { return h.Metric(t, `gale_broker_messages_total{kind="event"}`) >= 1 }, 10*time.Second, 50*time.Millisecond)

	require.Zero(t, gathered(t, reg, "gale_twins_direct_rejected_total"))
	require.Equal(t, 2.0, gathered(t, reg, "gale_twins_direct_connected"))
	require.GreaterOrEqual(t, gathered(t, reg, "gale_twins_direct_events_total"), 1.0)
}

// gathered is the sum of the samples series selects in reg, 0 when none.
func gathered(t testing.TB, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	v, _ := testkit.Gathered(t, reg, series)
	return v
}

package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
)

// childEnv names the config file of an edge the test binary runs as a
// child process (see TestMain), so tests can kill -9 a real edge.
const childEnv = "GALE_EDGE_CHILD_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

func runChild(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Load[edge.Config](path)
	if err == nil {
		var e *edge.Edge
		if e, err = edge.New(cfg, log); err == nil {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
			defer stop()
			err = e.Run(ctx)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge:", err)
		return 1
	}
	return 0
}

func quiet() *slog.Logger {
	if os.Getenv("GALE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cloud is a Gale node with the shipped products, gateway GW01 and its
// sub-devices WT01, WT02 and MM01, behind a proxy that can cut the edge off.
type cloud struct {
	h       *nodetest.Harness
	proxy   *testkit.MQTTProxy
	secrets map[string]string // device key → secret
}

func startCloud(t *testing.T) *cloud {
	t.Helper()
	return startCloudWith(t, nodetest.Config(t))
}

// startCloudWith is startCloud with node config cfg.
func startCloudWith(t *testing.T, cfg node.Config) *cloud {
	t.Helper()
	h := nodetest.Start(t, cfg)
	for _, a := range []api.Asset{{ID: "test", Kind: api.AssetOrg}, {ID: "test-site", Kind: api.AssetSite, Parent: "test"}} {
		require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/assets", a, nil))
	}
	products, err := registry.ShippedProducts()
	require.NoError(t, err)
	for _, p := range products {
		require.Equal(t, http.StatusCreated, h.Do(t, http.MethodPost, "/api/v1/products", p, nil))
	}
	c := &cloud{h: h, proxy: testkit.NewMQTTProxy(t, h.MQTTAddr()), secrets: map[string]string{}}
	for _, d := range []api.Device{
		{ProductKey: "modbus-gateway", DeviceKey: "GW01"},
		{ProductKey: "wind-turbine", DeviceKey: "WT01"},
		{ProductKey: "wind-turbine", DeviceKey: "WT02"},
		{ProductKey: "met-mast", DeviceKey: "MM01"},
	} {
		d.Site = "test-site"
		c.secrets[d.DeviceKey] = h.CreateDevice(t, d).Secret
	}
	return c
}

// startFleet runs two turbines and met mast MM01 behind twin gateway GW01
// (units 1, 2, 3) on clk, or in real time when clk is nil.
func startFleet(t *testing.T, clk *clock.Clock) *twins.Fleet {
	t.Helper()
	fc := farm.DefaultConfig()
	fc.Count, fc.Rows = 2, 1
	fc.Wind.MeanSpeed, fc.Wind.Iref, fc.Wind.GustsPerDay = 14, 0.05, 0
	cfg := twins.Config{Seed: 1, Farms: []farm.Config{fc}, Gateways: []modbus.Config{{
		ID: "GW01", Addr: "127.0.0.1:0", TimeoutHold: time.Second,
		Units: []regmap.Unit{{Device: "WT01", ID: 1}, {Device: "WT02", ID: 2}, {Device: "MM01", ID: 3}},
	}}}
	var opts []twins.Option
	if clk != nil {
		opts = append(opts, twins.WithClock(clk))
	}
	f, err := twins.New(cfg, quiet(), opts...)
	require.NoError(t, err)
	testkit.RunUntilEnd(t, f.Run)
	select {
	case <-f.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("twin fleet not ready")
	}
	return f
}

// edgeConfig is the config of an edge for GW01 of f, talking to c through its proxy.
func edgeConfig(t *testing.T, c *cloud, f *twins.Fleet, dataDir string) edge.Config {
	t.Helper()
	gw, ok := f.Gateway("GW01")
	require.True(t, ok)
	unit := func(dk string, id uint8, m string) edge.Unit {
		return edge.Unit{Unit: regmap.Unit{Device: dk, ID: id, Map: m}, Secret: c.secrets[dk]}
	}
	return edge.Config{
		DataDir: dataDir,
		Gateway: edge.Identity{ProductKey: "modbus-gateway", DeviceKey: "GW01", Secret: c.secrets["GW01"]},
		Cloud: edge.CloudConfig{MQTTAddr: c.proxy.Addr(), APIURL: c.h.BaseURL, Token: c.h.Token,
			PublishTimeout: 10 * time.Second, ReconnectMax: 500 * time.Millisecond},
		Targets: []edge.Target{{Name: "GW01", Addr: gw.Addr(), Timeout: 300 * time.Millisecond, Units: []edge.Unit{
			unit("WT01", 1, "wind-turbine"), unit("WT02", 2, "wind-turbine"), unit("MM01", 3, "met-mast"),
		}}},
	}
}

// runEdge runs an edge until the returned stop is called or the test ends.
func runEdge(t *testing.T, cfg edge.Config, opts ...edge.Option) (*edge.Edge, func()) {
	t.Helper()
	e, err := edge.New(cfg, quiet(), opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return e, stop
}

// metric sums the edge's series of a metric whose labels include match.
func metric(t *testing.T, e *edge.Edge, name string, match map[string]string) float64 {
	t.Helper()
	var ms []string
	for k, v := range match {
		ms = append(ms, fmt.Sprintf("%s=%q", k, v))
	}
	v, _ := testkit.Gathered(t, e.Gatherer(), name+"{"+strings.Join(ms, ",")+"}")
	return v
}

func waitMetric(t *testing.T, e *edge.Edge, name string, match map[string]string, ok func(float64) bool, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return ok(metric(t, e, name, match)) }, 20*time.Second, 5*time.Millisecond, msg)
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func equal(n float64) func(float64) bool   { return func(v float64) bool { return v == n } }

// steppedEdge runs an edge of fleet f on clock clk against cloud c, waits
// until it has logged in, and returns it with a stepper of its clock.
func steppedEdge(t *testing.T, clk *clock.Clock, c *cloud, f *twins.Fleet) (*edge.Edge, *stepper) {
	t.Helper()
	e, _ := runEdge(t, edgeConfig(t, c, f, t.TempDir()), edge.WithClock(clk))
	waitMetric(t, e, "gale_edge_uplink_connected", nil, equal(1), "edge did not log in")
	return e, newStepper(t, clk, e)
}

// stepper steps a manual clock one second at a time and waits until the
// edge has polled every unit's groups that fall due, after it polled every
// group once at start.
type stepper struct {
	t   *testing.T
	clk *clock.Clock
	e   *edge.Edge
	// groups polled every second and every 10 s
	fast, slow int
	ticks      int
}

// newStepper steps the rig's edge: the fast groups of WT01 and WT02 and
// MM01's default group every second, the turbines' slow groups every 10 s.
func newStepper(t *testing.T, clk *clock.Clock, e *edge.Edge) *stepper {
	return &stepper{t: t, clk: clk, e: e, fast: 3, slow: 2}
}

func (s *stepper) step(n int) {
	s.t.Helper()
	for range n {
		s.clk.Step(time.Second)
		s.ticks++
		want := float64(s.fast + s.slow + s.fast*s.ticks + s.slow*(s.ticks/10))
		require.Eventually(s.t, func() bool { return metric(s.t, s.e, "gale_edge_polls_total", nil) >= want },
			10*time.Second, time.Millisecond, "edge did not poll tick %d", s.ticks)
	}
}

// point is a TSDB sample.
type point struct {
	T int64 // Unix ms
	V float64
}

// series runs a range-vector query at time at and returns each series'
// samples by its "point" label, or by metric name for quality series.
func series(t *testing.T, h *nodetest.Harness, expr string, at time.Time) map[string][]point {
	t.Helper()
	m, err := h.API.Prom.Matrix(context.Background(), expr, at)
	require.NoError(t, err)
	out := map[string][]point{}
	for _, r := range m {
		key := string(r.Metric["point"])
		if name := string(r.Metric[model.MetricNameLabel]); strings.HasSuffix(name, "_quality") {
			key = name
		}
		for _, v := range r.Values {
			out[key] = append(out[key], point{T: int64(v.Timestamp), V: float64(v.Value)})
		}
	}
	return out
}

// latest returns the newest sample of device (pk, dk) carrying point that
// the proxy saw, posted (alone or in gateway GW01's post/batch) or resumed.
func (c *cloud) latest(t *testing.T, pk, dk, point string) api.MeasurepointParams {
	t.Helper()
	var newest api.MeasurepointParams
	for _, topic := range []string{api.MeasurepointPostTopic(pk, dk), api.MeasurepointResumeBatchTopic(pk, dk)} {
		for _, m := range c.proxy.Published(topic) {
			var req struct {
				Params json.RawMessage `json:"params"`
			}
			require.NoError(t, json.Unmarshal(m.Payload, &req))
			batch := []api.MeasurepointParams{{}}
			if req.Params[0] == '[' {
				require.NoError(t, json.Unmarshal(req.Params, &batch))
			} else {
				require.NoError(t, json.Unmarshal(req.Params, &batch[0]))
			}
			for _, s := range batch {
				if _, ok := s.Measurepoints[point]; ok && s.Time > newest.Time {
					newest = s
				}
			}
		}
	}
	for _, m := range c.proxy.Published(api.MeasurepointPostBatchTopic("modbus-gateway", "GW01")) {
		var req struct {
			Params []api.SubDeviceMeasurepoints `json:"params"`
		}
		require.NoError(t, json.Unmarshal(m.Payload, &req))
		for _, s := range req.Params {
			if _, ok := s.Measurepoints[point]; ok && s.ProductKey == pk && s.DeviceKey == dk && s.Time > newest.Time {
				newest = api.MeasurepointParams{Measurepoints: s.Measurepoints, Time: s.Time}
			}
		}
	}
	require.NotZero(t, newest.Time, "no sample of %s with %s", dk, point)
	return newest
}

package twins

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
)

var t0 = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testConfig is a small fleet: four turbines and a mast, the first two
// turbines behind a gateway on a free port, and a gearbox fault on WT02 at 10 minutes.
func testConfig() Config {
	fc := farm.DefaultConfig()
	fc.Count = 4
	fc.Wind.MeanSpeed = 11
	return Config{
		Seed:  3,
		Farms: []farm.Config{fc},
		Gateways: []modbus.Config{{ID: "GW01", Addr: "127.0.0.1:0",
			Units: []regmap.Unit{{Device: "WT01"}, {Device: "WT02"}}}},
		Faults: []ScheduledFault{
			{At: 10 * time.Minute, Device: "WT02", Fault: modbus.Fault{Kind: modbus.FaultKind(turbine.FaultGearboxOverheat)}},
			{At: 5 * time.Minute, Gateway: "GW01", Fault: modbus.Fault{Kind: modbus.FaultException, Code: 6, Unit: 2}},
		},
	}
}

// startFleet runs a fleet on a manual clock until the test ends.
func startFleet(tb testing.TB, cfg Config) (*Fleet, *clock.Clock) {
	tb.Helper()
	c := clock.NewManual(t0)
	f, err := New(cfg, quiet(), WithClock(c))
	require.NoError(tb, err)
	testkit.RunUntilEnd(tb, f.Run)
	require.Eventually(tb, func() bool {
		select {
		case <-f.Ready():
			return true
		default:
			return false
		}
	}, 5*time.Second, time.Millisecond)
	return f, c
}

// advance steps the manual clock and waits for the physics to catch up.
func advance(tb testing.TB, f *Fleet, c *clock.Clock, d time.Duration) {
	tb.Helper()
	c.Step(d)
	require.Eventually(tb, func() bool { return !f.Now().Before(c.Now()) }, 20*time.Second, time.Millisecond)
}

func TestFleetRunsOnTheClock(t *testing.T) {
	f, c := startFleet(t, testConfig())
	require.Equal(t, t0, f.Now())
	devices := f.Devices()
	require.Len(t, devices, 5)
	require.Equal(t, DeviceInfo{Key: "WT02", Product: ProductTurbine, Site: "demo-farm", Model: "nrel-5mw", Gateway: "GW01", Unit: 2}, devices[1])
	require.Equal(t, DeviceInfo{Key: "MM01", Product: ProductMast, Site: "demo-farm"}, devices[4])

	p, at, err := f.Points("MM01")
	require.NoError(t, err)
	require.Equal(t, t0, at, "points exist before the first step")
	require.Contains(t, p, turbine.PointMetWdSpd)

	advance(t, f, c, time.Hour)
	require.Equal(t, t0.Add(time.Hour), f.Now())
	p, at, err = f.Points("WT01")
	require.NoError(t, err)
	require.Equal(t, t0.Add(time.Hour), at)
	require.Greater(t, p[turbine.PointW], 0.0)

	// the scheduled gearbox fault has heated WT02 past its band and tripped it, and said so
	require.Equal(t, turbine.StateFault, f.byKey["WT02"].State())
	var events []turbine.Event
	for len(f.Events()) > 0 {
		events = append(events, <-f.Events())
	}
	require.GreaterOrEqual(t, len(events), 2)
	for i, code := range []int{turbine.CodeGearboxOilHigh, turbine.CodeGearboxOilTrip} {
		require.Equal(t, "WT02", events[i].Device)
		require.Equal(t, code, events[i].Code)
		require.True(t, events[i].Active)
	}

	// the gateway serves on its port: heartbeat one per step, and the scheduled exception on unit 2
	cl, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + f.gateways[0].Addr(), Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, cl.Open())
	defer cl.Close()
	require.NoError(t, cl.SetUnitId(1))
	hb, err := cl.ReadRegister(0, mb.INPUT_REGISTER)
	require.NoError(t, err)
	require.Equal(t, uint16(3600), hb)
	require.NoError(t, cl.SetUnitId(2))
	_, err = cl.ReadRegister(0, mb.INPUT_REGISTER)
	require.ErrorIs(t, err, mb.ErrServerDeviceBusy)

	// services
	require.NoError(t, f.Invoke("WT01", turbine.ServiceSetPowerLimit, map[string]any{turbine.ParamPowerLimit: 1000.0}))
	advance(t, f, c, time.Minute)
	p, _, _ = f.Points("WT01")
	require.LessOrEqual(t, p[turbine.PointW], 1000.0)
	require.ErrorIs(t, f.Invoke("WT99", turbine.ServiceStop, nil), ErrUnknownDevice)
	require.ErrorIs(t, f.Invoke("WT01", "fly", nil), turbine.ErrUnknownService)
	_, _, err = f.Points("WT99")
	require.ErrorIs(t, err, ErrUnknownDevice)
	require.NoError(t, f.byKey["WT03"].Inject(turbine.FaultOffline))
	_, _, err = f.Points("WT03")
	require.ErrorIs(t, err, turbine.ErrOffline)
}

func TestFleetIsDeterministic(t *testing.T) {
	run := func(seed uint64) map[string]float64 {
		cfg := testConfig()
		cfg.Seed = seed
		f, c := startFleet(t, cfg)
		for range 12 {
			advance(t, f, c, 10*time.Minute) // how the steps are batched must not matter
		}
		p, _, err := f.Points("WT04")
		require.NoError(t, err)
		return p
	}
	a := run(5)
	require.Equal(t, a, run(5))
	require.NotEqual(t, a, run(6))
}

func TestFleetAtSpeed(t *testing.T) {
	c, err := clock.New(t0, clock.MaxSpeed)
	require.NoError(t, err)
	f, err := New(testConfig(), quiet(), WithClock(c))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	// ten sim minutes take 60 ms of wall time at ×10000
	require.Eventually(t, func() bool { return f.Now().After(t0.Add(10 * time.Minute)) }, 10*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Speed = -1
	_, err := New(cfg, quiet())
	require.ErrorIs(t, err, ErrSpeed)
	// a port in use fails Run
	cfg = testConfig()
	f, _ := startFleet(t, cfg)
	cfg.Gateways[0].Addr = f.gateways[0].Addr()
	g, err := New(cfg, quiet())
	require.NoError(t, err)
	require.Error(t, g.Run(context.Background()))
}

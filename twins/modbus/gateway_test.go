package modbus

import (
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/turbine"
	"github.com/gale-iot/gale/twins/wind"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// rig is a gateway on 127.0.0.1 with turbines WT01 (unit 1) and WT02 (unit 2)
// and met mast MM01 (unit 3) behind it, stepped by hand.
type rig struct {
	gw       *Gateway
	wt1, wt2 *turbine.Turbine
	mast     *turbine.MetMast
}

func newRig(tb testing.TB, edit ...func(*Config)) *rig {
	tb.Helper()
	mk := func(id string, seed uint64) *turbine.Turbine {
		return turbine.New(turbine.Config{ID: id, Site: "s", Model: turbine.NREL5MW(), Start: t0, Rand: rand.New(rand.NewPCG(seed, 0))})
	}
	r := &rig{wt1: mk("WT01", 1), wt2: mk("WT02", 2),
		mast: turbine.NewMetMast(turbine.MastConfig{ID: "MM01", Site: "s", Start: t0, Rand: rand.New(rand.NewPCG(3, 0))})}
	devices := map[string]Device{"WT01": r.wt1, "WT02": r.wt2, "MM01": r.mast}
	cfg := Config{ID: "GW01", Addr: "127.0.0.1:0", TimeoutHold: time.Minute, Units: []regmap.Unit{
		{Device: "WT01", ID: 1, Map: "wind-turbine"}, {Device: "WT02", ID: 2, Map: "wind-turbine"}, {Device: "MM01", ID: 3, Map: "met-mast"}}}
	for _, e := range edit {
		e(&cfg)
	}
	gw, err := New(cfg, func(k string) (Device, bool) { d, ok := devices[k]; return d, ok }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(tb, err)
	require.NoError(tb, gw.Start())
	tb.Cleanup(func() { require.NoError(tb, gw.Stop()) })
	r.gw = gw
	r.step(10*time.Minute, 9)
	return r
}

// step advances the devices at 1 s with a steady westerly, ticking the heartbeat.
func (r *rig) step(d time.Duration, speed float64) {
	w, a := wind.Sample{Speed: speed, Direction: 270}, wind.Ambient{Temp: 15, Pressure: 1013.25, Humidity: 70}
	for range int(d / time.Second) {
		r.wt1.Step(time.Second, w, a)
		r.wt2.Step(time.Second, w, a)
		r.mast.Step(time.Second, w, a)
		r.gw.Tick()
	}
}

func (r *rig) client(tb testing.TB, unit uint8, timeout time.Duration) *mb.ModbusClient {
	tb.Helper()
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + r.gw.Addr(), Timeout: timeout})
	require.NoError(tb, err)
	require.NoError(tb, c.Open())
	require.NoError(tb, c.SetUnitId(unit))
	tb.Cleanup(func() { c.Close() })
	return c
}

func shipped(tb testing.TB, name string) *regmap.Map {
	m, err := regmap.Shipped(name)
	require.NoError(tb, err)
	return m
}

// decodeAll reads the whole input register span of unit and decodes every point.
func decodeAll(tb testing.TB, c *mb.ModbusClient, m *regmap.Map, order func(regmap.Register) regmap.Order) map[string]float64 {
	tb.Helper()
	lo, hi := m.Span(regmap.AreaInput)
	words, err := c.ReadRegisters(uint16(lo), uint16(hi-lo), mb.INPUT_REGISTER)
	require.NoError(tb, err)
	out := map[string]float64{}
	for _, reg := range append(m.Registers, *m.Heartbeat) {
		if reg.Area != regmap.AreaInput {
			continue
		}
		o := reg.Order
		if order != nil {
			o = order(reg)
		}
		v, err := reg.DecodeAs(words[int(reg.Address)-lo:reg.End()-lo], o)
		require.NoError(tb, err)
		out[reg.Point] = v
	}
	return out
}

func TestReadsMatchPoints(t *testing.T) {
	r := newRig(t)
	m := shipped(t, "wind-turbine")
	c := r.client(t, 1, time.Second)
	got := decodeAll(t, c, m, nil)
	want := r.wt1.Points()
	for _, reg := range m.Registers {
		if reg.Area != regmap.AreaInput {
			continue
		}
		tol := reg.Scale/2 + 1e-9
		if reg.Type == regmap.TypeFloat32 {
			tol = reg.Resolution/2 + 1e-3*(1+math.Abs(want[reg.Point]))
		}
		require.InDelta(t, want[reg.Point], got[reg.Point], tol, reg.Point)
	}
	require.Equal(t, 600.0, got["heartbeat"], "one heartbeat per step")
	require.Greater(t, got[turbine.PointW], 2000.0)

	w, err := c.ReadFloat32(2, mb.INPUT_REGISTER)
	require.NoError(t, err)
	require.InDelta(t, want[turbine.PointW], float64(w), 1e-3*want[turbine.PointW])
	dmd, err := c.ReadFloat32(0, mb.HOLDING_REGISTER)
	require.NoError(t, err)
	require.Equal(t, float32(5000), dmd)
	ice, err := c.ReadDiscreteInputs(0, 1)
	require.NoError(t, err)
	require.Equal(t, []bool{false}, ice)
	coils, err := c.ReadCoils(0, 3)
	require.NoError(t, err)
	require.Equal(t, []bool{false, false, false}, coils, "command coils read back 0")

	mast := r.client(t, 3, time.Second)
	mp := decodeAll(t, mast, shipped(t, "met-mast"), nil)
	require.InDelta(t, 9, mp[turbine.PointMetWdSpd], 0.3)
	require.InDelta(t, 1013.25, mp[turbine.PointMetPres], 0.5)

	r.step(5*time.Second, 9)
	hb, err := c.ReadRegister(0, mb.INPUT_REGISTER)
	require.NoError(t, err)
	require.Equal(t, uint16(605), hb)
}

func TestWritesReachTheTurbine(t *testing.T) {
	r := newRig(t)
	c := r.client(t, 1, time.Second)

	require.NoError(t, c.WriteFloat32(0, 1500)) // FC 16
	r.step(time.Minute, 12)
	p := r.wt1.Points()
	require.Equal(t, 1500.0, p[turbine.PointDmdW])
	require.LessOrEqual(t, p[turbine.PointW], 1500.0)
	require.InDelta(t, 1500, p[turbine.PointW], 1)
	require.Equal(t, 5000.0, r.wt2.Points()[turbine.PointDmdW], "unit 2 untouched")

	require.NoError(t, c.WriteCoil(1, true)) // FC 5: stop
	r.step(time.Minute, 12)
	require.Equal(t, turbine.StateStopped, r.wt1.State())
	require.NoError(t, c.WriteCoils(0, []bool{true, false, false})) // FC 15: start
	r.step(time.Minute, 12)
	require.Equal(t, turbine.StateCurtailed, r.wt1.State())

	tests := []struct {
		name  string
		write func() error
		err   error
	}{
		{"FC 6 on half a float", func() error { return c.WriteRegister(0, 0x4500) }, mb.ErrIllegalDataAddress},
		{"setpoint above rating", func() error { return c.WriteFloat32(0, 6000) }, mb.ErrIllegalDataValue},
		{"past the map", func() error { return c.WriteRegisters(2, []uint16{1, 2}) }, mb.ErrIllegalDataAddress},
		{"coil past the map", func() error { return c.WriteCoil(7, true) }, mb.ErrIllegalDataAddress},
		{"read past the map", func() error { _, err := c.ReadRegisters(20, 10, mb.INPUT_REGISTER); return err }, mb.ErrIllegalDataAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { require.ErrorIs(t, tt.write(), tt.err) })
	}

	require.NoError(t, r.wt1.Inject(turbine.FaultGridLoss))
	r.step(time.Second, 12)
	require.ErrorIs(t, c.WriteCoil(0, true), mb.ErrServerDeviceFailure, "start refused while a fault is latched")
	require.NoError(t, r.wt1.Clear(turbine.FaultGridLoss))
	r.step(2*time.Minute, 12)
	require.NoError(t, c.WriteCoil(2, true), "resetFault with the cause gone")
}

func TestExceptionFaults(t *testing.T) {
	r := newRig(t)
	tests := []struct {
		code uint8
		err  error
	}{
		{0x02, mb.ErrIllegalDataAddress},
		{0x04, mb.ErrServerDeviceFailure},
		{0x06, mb.ErrServerDeviceBusy},
		{0x0A, mb.ErrGWPathUnavailable},
		{0x0B, mb.ErrGWTargetFailedToRespond},
	}
	c1, c2 := r.client(t, 1, time.Second), r.client(t, 2, time.Second)
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			require.NoError(t, r.gw.Inject(Fault{Kind: FaultException, Code: tt.code, Unit: 2}))
			_, err := c2.ReadRegisters(0, 4, mb.INPUT_REGISTER)
			require.ErrorIs(t, err, tt.err)
			_, err = c2.ReadCoils(0, 1)
			require.ErrorIs(t, err, tt.err)
			_, err = c1.ReadRegisters(0, 4, mb.INPUT_REGISTER)
			require.NoError(t, err, "only unit 2 is affected")
			require.NoError(t, r.gw.Inject(Fault{Kind: FaultException, Code: tt.code}))
			_, err = c1.ReadDiscreteInputs(0, 1)
			require.ErrorIs(t, err, tt.err, "unit 0 means every unit")
			require.NoError(t, r.gw.Clear(FaultException, 0))
			_, err = c2.ReadRegisters(0, 4, mb.INPUT_REGISTER)
			require.NoError(t, err)
		})
	}

	unknown := r.client(t, 9, time.Second)
	_, err := unknown.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.ErrorIs(t, err, mb.ErrGWTargetFailedToRespond, "unknown unit id")

	require.NoError(t, r.wt1.Inject(turbine.FaultOffline))
	_, err = c1.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.ErrorIs(t, err, mb.ErrGWTargetFailedToRespond, "offline turbine")
}

func TestTimeoutFault(t *testing.T) {
	r := newRig(t)
	require.NoError(t, r.gw.Inject(Fault{Kind: FaultTimeout, Unit: 1}))
	c1 := r.client(t, 1, 200*time.Millisecond)
	_, err := c1.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.ErrorIs(t, err, mb.ErrRequestTimedOut)
	c2 := r.client(t, 2, time.Second)
	_, err = c2.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.NoError(t, err, "unit 2 still answers")

	require.NoError(t, r.gw.Clear(FaultTimeout, 1))
	require.Empty(t, r.gw.Faults())
	require.Eventually(t, func() bool {
		c := r.client(t, 1, time.Second)
		_, err := c.ReadRegisters(0, 1, mb.INPUT_REGISTER)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
}

func TestStaleFaultStopsHeartbeat(t *testing.T) {
	r := newRig(t)
	m := shipped(t, "wind-turbine")
	c := r.client(t, 1, time.Second)
	before := decodeAll(t, c, m, nil)
	require.NoError(t, r.gw.Inject(Fault{Kind: FaultStale, Unit: 1}))
	r.step(time.Minute, 14)
	stale := decodeAll(t, c, m, nil)
	require.Equal(t, before["heartbeat"], stale["heartbeat"], "heartbeat stopped")
	require.Equal(t, before[turbine.PointW], stale[turbine.PointW], "values frozen")
	require.Greater(t, r.wt1.Points()[turbine.PointW], before[turbine.PointW]+500, "while the turbine moved on")
	hb2, err := r.client(t, 2, time.Second).ReadRegister(0, mb.INPUT_REGISTER)
	require.NoError(t, err)
	require.Equal(t, uint16(before["heartbeat"]+60), hb2, "unit 2 is fresh")

	require.NoError(t, r.gw.Clear(FaultStale, 0))
	r.step(time.Second, 14)
	fresh := decodeAll(t, c, m, nil)
	require.Equal(t, before["heartbeat"]+1, fresh["heartbeat"], "the counter resumes")
	require.InDelta(t, r.wt1.Points()[turbine.PointW], fresh[turbine.PointW], 1)
}

func TestMaxClientsFault(t *testing.T) {
	r := newRig(t)
	require.NoError(t, r.gw.Inject(Fault{Kind: FaultMaxClients, Clients: 1}))
	a := r.client(t, 1, time.Second)
	_, err := a.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.NoError(t, err)
	b := r.client(t, 2, time.Second)
	_, err = b.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.Error(t, err, "the second connection is refused")

	require.NoError(t, r.gw.Clear(FaultMaxClients, 0))
	c, d := r.client(t, 1, time.Second), r.client(t, 2, time.Second)
	_, err = c.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.NoError(t, err)
	_, err = d.ReadRegisters(0, 1, mb.INPUT_REGISTER)
	require.NoError(t, err)
}

func TestByteOrderFault(t *testing.T) {
	r := newRig(t)
	m := shipped(t, "wind-turbine")
	c := r.client(t, 1, time.Second)
	good := decodeAll(t, c, m, nil)

	require.NoError(t, r.gw.Inject(Fault{Kind: FaultByteOrder}))
	naive := decodeAll(t, c, m, nil)
	require.NotEqual(t, good[turbine.PointW], naive[turbine.PointW], "32-bit values arrive word-swapped")
	require.Equal(t, good[turbine.PointTurSt], naive[turbine.PointTurSt], "16-bit values keep their bytes")
	swapped := decodeAll(t, c, m, func(reg regmap.Register) regmap.Order { return reg.Order.WordSwapped() })
	require.Equal(t, good, swapped)

	require.NoError(t, r.gw.Inject(Fault{Kind: FaultByteOrder, Order: regmap.OrderDCBA}))
	st, err := c.ReadRegister(1, mb.INPUT_REGISTER)
	require.NoError(t, err)
	require.Equal(t, uint16(good[turbine.PointTurSt])<<8, st, "16-bit values byte-swapped")
	require.Len(t, r.gw.Faults(), 1, "a fault of the same kind and unit replaces the old one")
}

func TestFaultAndConfigValidation(t *testing.T) {
	r := newRig(t)
	for _, f := range []Fault{
		{Kind: "gremlins"},
		{Kind: FaultException, Code: 7},
		{Kind: FaultException},
		{Kind: FaultMaxClients},
		{Kind: FaultMaxClients, Clients: 2, Unit: 1},
		{Kind: FaultByteOrder, Order: "ABDC"},
		{Kind: FaultStale, Unit: 42},
	} {
		require.ErrorIs(t, r.gw.Inject(f), ErrFault, "%+v", f)
	}
	require.ErrorIs(t, r.gw.Clear("gremlins", 0), ErrFault)

	base := func() Config {
		c := Config{ID: "GW", Addr: "127.0.0.1:0", Units: []regmap.Unit{{Device: "WT01", ID: 1, Map: "wind-turbine"}}}
		c.Default()
		return c
	}
	tests := []testkit.Edit[Config]{
		testkit.Case("ok", func(*Config) {}, nil),
		testkit.Case("no id", func(c *Config) { c.ID = "" }, ErrID),
		testkit.Case("no port", func(c *Config) { c.Addr = "localhost" }, ErrAddr),
		testkit.Case("clients", func(c *Config) { c.MaxClients = -1 }, ErrMaxClients),
		testkit.Case("hold", func(c *Config) { c.TimeoutHold = -time.Second }, ErrTimeouts),
		testkit.Case("no units", func(c *Config) { c.Units = nil }, ErrNoUnits),
		testkit.Case("bad unit", func(c *Config) { c.Units[0].ID = 0 }, regmap.ErrUnit),
		testkit.Case("unknown map", func(c *Config) { c.Units[0].Map = "toaster" }, regmap.ErrUnknownMap),
	}
	testkit.Edits(t, base, (*Config).Validate, tests)
	_, err := New(base(), func(string) (Device, bool) { return nil, false }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.Error(t, err, "unknown device")
}

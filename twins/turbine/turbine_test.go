package turbine

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gale-iot/gale/twins/wind"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// std is ISA sea-level air: 15 °C and 1013.25 hPa give 1.225 kg/m³.
var std = wind.Ambient{Temp: 15, Pressure: 1013.25, Humidity: 70}

type rig struct {
	tb     testing.TB
	t      *Turbine
	events []Event
}

func newRig(tb testing.TB, m Model, seed uint64) *rig {
	r := &rig{tb: tb}
	r.t = New(Config{ID: "WT01", Site: "test", Model: m, Start: t0,
		Rand: rand.New(rand.NewPCG(seed, 2)), OnEvent: func(e Event) { r.events = append(r.events, e) }})
	return r
}

// run steps for d at 1 s with a steady wind from the west.
func (r *rig) run(d time.Duration, speed float64, a wind.Ambient) {
	for range int(d / time.Second) {
		r.t.Step(time.Second, wind.Sample{Speed: speed, Direction: 270}, a)
	}
}

// runUntil steps at 1 s until cond holds, failing after limit of sim time;
// it returns the sim time it took.
func (r *rig) runUntil(limit time.Duration, speed float64, a wind.Ambient, cond func(map[string]float64) bool) time.Duration {
	r.tb.Helper()
	for i := range int(limit / time.Second) {
		r.t.Step(time.Second, wind.Sample{Speed: speed, Direction: 270}, a)
		if cond(r.t.Points()) {
			return time.Duration(i+1) * time.Second
		}
	}
	r.tb.Fatalf("condition not met within %v of sim time; points %v", limit, r.t.Points())
	return 0
}

func (r *rig) p(name string) float64 { return r.t.Points()[name] }

func (r *rig) hasEvent(code int, active bool) bool {
	return slices.ContainsFunc(r.events, func(e Event) bool { return e.Code == code && e.Active == active })
}

func TestSteadyPowerAndStates(t *testing.T) {
	for _, m := range []Model{NREL5MW(), Onshore2300()} {
		tests := []struct {
			speed float64
			state State
		}{
			{0, StateRunning}, {2, StateRunning}, {m.CutIn - 0.1, StateRunning}, {5, StateRunning},
			{8, StateRunning}, {m.RatedSpeed, StateRunning}, {15, StateRunning}, {24, StateRunning},
			{m.CutOut + 1, StateStorm}, {32, StateStorm},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/%gms", m.Name, tt.speed), func(t *testing.T) {
				r := newRig(t, m, 1)
				r.run(30*time.Minute, tt.speed, std)
				p := r.t.Points()
				require.Equal(t, float64(tt.state), p[PointTurSt])
				want := m.Power(tt.speed)
				if tt.speed < m.CutIn || tt.speed >= m.CutOut {
					require.Zero(t, p[PointW], "zero below cut-in and above cut-out")
				}
				require.InDelta(t, want, p[PointW], 0.01*m.RatedPower+1e-9, "on the power curve")
				require.LessOrEqual(t, p[PointW], m.RatedPower)
				if tt.state == StateStorm {
					for _, b := range []string{PointPtAngBl1, PointPtAngBl2, PointPtAngBl3} {
						require.Equal(t, 90.0, p[b], "feathered in a storm")
					}
					require.InDelta(t, 0, p[PointRotSpd], 0.01)
				}
				if tt.speed > m.RatedSpeed && tt.state == StateRunning {
					require.Greater(t, p[PointPtAngBl1], 0.0, "pitching above rated")
					require.InDelta(t, m.RatedRotorSpeed, p[PointRotSpd], 0.01)
					require.InDelta(t, m.RatedRotorSpeed*m.GearRatio, p[PointGnSpd], 1)
				}
				if tt.speed >= m.CutIn && tt.speed <= m.RatedSpeed {
					require.Zero(t, p[PointPtAngBl1], "no pitch below rated")
				}
				oil := p[PointGbxOil]
				if p[PointW] > 0 {
					require.True(t, oil >= 45 && oil <= 65, "gearbox oil %.1f °C in the normal band", oil)
				}
			})
		}
	}
}

func TestPowerNeverAboveRatedOrSetpoint(t *testing.T) {
	for _, m := range []Model{NREL5MW(), Onshore2300()} {
		t.Run(m.Name, func(t *testing.T) {
			r := newRig(t, m, 9)
			rng := rand.New(rand.NewPCG(3, 4))
			v := 10.0
			for i := range 86400 {
				if i%600 == 0 {
					limit := m.RatedPower
					if rng.IntN(2) == 0 {
						limit = rng.Float64() * m.RatedPower
					}
					require.NoError(t, r.t.SetPowerLimit(limit))
				}
				// a gusty random walk from calm to storm
				v = math.Max(0, math.Min(35, v+rng.NormFloat64()*0.8))
				r.t.Step(time.Second, wind.Sample{Speed: v, Direction: 270 + 20*rng.NormFloat64()}, wind.Ambient{Temp: -10, Pressure: 1040})
				p := r.t.Points()
				require.LessOrEqual(t, p[PointW], m.RatedPower, "step %d", i)
				require.LessOrEqual(t, p[PointW], p[PointDmdW], "step %d", i)
				require.GreaterOrEqual(t, p[PointW], 0.0)
			}
		})
	}
}

func TestStormHysteresis(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 15, std)
	require.Equal(t, StateRunning, r.t.State())
	r.run(10*time.Minute, 27, std)
	require.Equal(t, StateStorm, r.t.State())
	require.True(t, r.hasEvent(CodeStorm, true))
	r.run(time.Hour, 22, std)
	require.Equal(t, StateStorm, r.t.State(), "no restart between restart and cut-out speed")
	require.Zero(t, r.p(PointW))
	r.run(30*time.Minute, 18, std)
	require.Equal(t, StateRunning, r.t.State())
	require.True(t, r.hasEvent(CodeStorm, false))
	require.InDelta(t, 5000, r.p(PointW), 1)
}

func TestGearboxOverheat(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(3*time.Hour, 13, std)
	oil := r.p(PointGbxOil)
	require.True(t, oil >= 45 && oil <= 65, "warm gearbox in its normal band at rated power: %.1f °C", oil)

	require.NoError(t, r.t.Inject(FaultGearboxOverheat))
	took := r.runUntil(10*time.Minute, 13, std, func(p map[string]float64) bool { return p[PointGbxOil] > 65 })
	t.Logf("oil above the 65 °C band %v after injection", took)

	r.runUntil(2*time.Hour, 13, std, func(p map[string]float64) bool { return p[PointTurSt] == float64(StateFault) })
	require.True(t, r.hasEvent(CodeGearboxOilHigh, true), "derate warning before the trip")
	require.True(t, r.hasEvent(CodeGearboxOilTrip, true))
	require.InDelta(t, 80, r.p(PointGbxOil), 0.5)
	require.Zero(t, r.p(PointW))
	code, _ := r.t.LatchedFault()
	require.Equal(t, CodeGearboxOilTrip, code)

	require.ErrorIs(t, r.t.ResetFault(), ErrCauseActive, "cooling still failing")
	require.ErrorIs(t, r.t.Start(), ErrFaultActive)
	require.NoError(t, r.t.Clear(FaultGearboxOverheat))
	require.ErrorIs(t, r.t.ResetFault(), ErrCauseActive, "oil still hot")
	r.runUntil(time.Hour, 13, std, func(p map[string]float64) bool { return p[PointGbxOil] < 70 })
	require.NoError(t, r.t.ResetFault())
	require.True(t, r.hasEvent(CodeGearboxOilTrip, false))
	r.run(10*time.Minute, 13, std)
	require.Equal(t, StateRunning, r.t.State())
	require.InDelta(t, 5000, r.p(PointW), 1)
}

func TestPitchFault(t *testing.T) {
	r := newRig(t, NREL5MW(), 5)
	r.run(10*time.Minute, 9, std)
	require.Greater(t, r.p(PointW), 1000.0)
	require.NoError(t, r.t.Inject(FaultPitch))
	r.runUntil(30*time.Second, 9, std, func(p map[string]float64) bool { return p[PointTurSt] == float64(StateFault) })
	require.True(t, r.hasEvent(CodePitchAsymmetry, true))
	require.Zero(t, r.p(PointW))
	r.run(20*time.Second, 9, std)
	p := r.t.Points()
	angles := []float64{p[PointPtAngBl1], p[PointPtAngBl2], p[PointPtAngBl3]}
	slices.Sort(angles)
	require.Less(t, angles[0], 10.0, "the faulty blade stays where it stuck")
	require.Equal(t, []float64{90, 90}, angles[1:], "the others feather")

	require.ErrorIs(t, r.t.ResetFault(), ErrCauseActive)
	require.NoError(t, r.t.Clear(FaultPitch))
	require.NoError(t, r.t.ResetFault())
	r.run(5*time.Minute, 9, std)
	require.Equal(t, StateRunning, r.t.State())
	p = r.t.Points()
	require.Equal(t, p[PointPtAngBl1], p[PointPtAngBl2])
	require.Equal(t, p[PointPtAngBl2], p[PointPtAngBl3])
}

func TestIcing(t *testing.T) {
	cold := wind.Ambient{Temp: -2, Pressure: 1013.25, Humidity: 95}
	warm := wind.Ambient{Temp: 8, Pressure: 1013.25, Humidity: 95}

	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 8, cold)
	clean := r.p(PointW)
	require.NoError(t, r.t.Inject(FaultIcing))
	r.run(time.Hour, 8, cold)
	require.Equal(t, 1.0, r.p(PointIceSt))
	require.Equal(t, StateIcing, r.t.State())
	require.Less(t, r.p(PointW), 0.75*clean, "power under the curve")
	require.True(t, r.hasEvent(CodeIcing, true))
	require.NoError(t, r.t.Clear(FaultIcing))
	r.run(3*time.Hour, 8, warm)
	require.Zero(t, r.p(PointIceSt), "ice melts above 0 °C")
	require.True(t, r.hasEvent(CodeIcing, false))

	r = newRig(t, NREL5MW(), 1)
	require.NoError(t, r.t.Inject(FaultIcing))
	r.run(time.Hour, 8, warm)
	require.Zero(t, r.p(PointIceSt), "no ice above 3 °C")
	require.Equal(t, StateRunning, r.t.State())
}

func TestGridLoss(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 10, std)
	require.InDelta(t, 50, r.p(PointHz), 0.2)
	require.InDelta(t, 690, r.p(PointGriPPV), 35)
	require.NoError(t, r.t.Inject(FaultGridLoss))
	r.run(time.Second, 10, std)
	require.Zero(t, r.p(PointW), "power drops at once")
	require.Equal(t, StateFault, r.t.State())
	require.Less(t, r.p(PointHz), 49.0)
	require.Less(t, r.p(PointGriPPV), 0.5*690)
	r.run(15*time.Second, 10, std)
	require.Equal(t, 90.0, r.p(PointPtAngBl1))
	require.ErrorIs(t, r.t.ResetFault(), ErrCauseActive)

	require.NoError(t, r.t.Clear(FaultGridLoss))
	r.run(30*time.Second, 10, std)
	require.Equal(t, StateFault, r.t.State(), "waits for a stable grid")
	r.run(2*time.Minute, 10, std)
	require.Equal(t, StateRunning, r.t.State(), "restarts by itself")
	require.Greater(t, r.p(PointW), 2000.0)
	require.True(t, r.hasEvent(CodeGridLoss, false))
}

func TestCurtailmentAndSetpoint(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 14, std)
	require.InDelta(t, 5000, r.p(PointW), 1)

	require.NoError(t, r.t.Inject(FaultCurtailment))
	r.run(time.Minute, 14, std)
	require.Equal(t, 2500.0, r.p(PointDmdW))
	require.LessOrEqual(t, r.p(PointW), 2500.0)
	require.InDelta(t, 2500, r.p(PointW), 1)
	require.Equal(t, StateCurtailed, r.t.State())
	require.NoError(t, r.t.Clear(FaultCurtailment))

	require.NoError(t, r.t.Invoke(ServiceSetPowerLimit, map[string]any{ParamPowerLimit: 1200.0}))
	r.run(time.Minute, 14, std)
	require.Equal(t, 1200.0, r.p(PointDmdW))
	require.InDelta(t, 1200, r.p(PointW), 1)
	require.Greater(t, r.p(PointPtAngBl1), NREL5MW().PitchAngle(14), "pitches further to shed power")

	require.ErrorIs(t, r.t.SetPowerLimit(6000), ErrOutOfRange)
	require.ErrorIs(t, r.t.SetPowerLimit(-1), ErrOutOfRange)
	require.ErrorIs(t, r.t.SetPowerLimit(math.NaN()), ErrOutOfRange)
	require.ErrorIs(t, r.t.Invoke(ServiceSetPowerLimit, map[string]any{}), ErrOutOfRange)
	require.ErrorIs(t, r.t.Invoke("selfDestruct", nil), ErrUnknownService)
	require.NoError(t, r.t.WritePoint(PointDmdW, 5000))
	r.run(time.Minute, 14, std)
	require.Equal(t, StateRunning, r.t.State())
	require.ErrorIs(t, r.t.WritePoint(PointW, 1), ErrReadOnly)
}

func TestStopStart(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 9, std)
	require.NoError(t, r.t.WritePoint(ServiceStop, 1))
	r.run(time.Minute, 9, std)
	require.Equal(t, StateStopped, r.t.State())
	require.Zero(t, r.p(PointW))
	require.Equal(t, 90.0, r.p(PointPtAngBl2))
	require.NoError(t, r.t.WritePoint(ServiceStart, 0), "writing 0 does nothing")
	require.Equal(t, StateStopped, r.t.State())
	require.NoError(t, r.t.Invoke(ServiceStart, nil))
	r.run(5*time.Minute, 9, std)
	require.Equal(t, StateRunning, r.t.State())
	require.InDelta(t, NREL5MW().Power(9), r.p(PointW), 30)
	require.NoError(t, r.t.ResetFault(), "nothing to reset")
}

func TestSensorFreezeStaleOffline(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 9, std)
	require.NoError(t, r.t.Inject(FaultSensorFreeze))
	frozen := r.p(PointWdSpd)
	r.run(time.Minute, 12, std)
	require.Equal(t, frozen, r.p(PointWdSpd), "anemometer frozen")
	require.InDelta(t, 5000, r.p(PointW), 1, "the turbine still follows the real wind")
	require.NoError(t, r.t.Clear(FaultSensorFreeze))
	r.run(time.Second, 12, std)
	require.InDelta(t, 12, r.p(PointWdSpd), 0.5)

	require.NoError(t, r.t.Inject(FaultStale))
	before, at := r.t.Points(), r.t.PointsTime()
	r.run(time.Minute, 7, std)
	require.Equal(t, before, r.t.Points(), "every point stale")
	require.Equal(t, at, r.t.PointsTime())
	require.NoError(t, r.t.Clear(FaultStale))
	r.run(time.Second, 7, std)
	require.Greater(t, r.p(PointTotWh), before[PointTotWh])

	require.NoError(t, r.t.Inject(FaultOffline))
	r.run(time.Second, 7, std)
	require.False(t, r.t.Online())
	require.Equal(t, StateOffline, r.t.State())
	require.Zero(t, r.p(PointW))
	require.ErrorIs(t, r.t.Start(), ErrOffline)
	require.ErrorIs(t, r.t.Stop(), ErrOffline)
	require.ErrorIs(t, r.t.SetPowerLimit(1), ErrOffline)
	require.ErrorIs(t, r.t.ResetFault(), ErrOffline)
	require.Equal(t, []Fault{FaultOffline}, r.t.Injected())
	r.t.ClearAll()
	require.True(t, r.t.Online())
	require.Empty(t, r.t.Injected())

	require.ErrorIs(t, r.t.Inject("meteor"), ErrUnknownFault)
	require.ErrorIs(t, r.t.Clear("meteor"), ErrUnknownFault)
	for _, f := range Faults() {
		got, err := ParseFault(string(f))
		require.NoError(t, err)
		require.Equal(t, f, got)
	}
	_, err := ParseFault("meteor")
	require.ErrorIs(t, err, ErrUnknownFault)
}

func TestYawTracksWithLag(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 9, std)
	require.InDelta(t, 270, r.p(PointNacDir), 1)
	step := func(d time.Duration) {
		for range int(d / time.Second) {
			r.t.Step(time.Second, wind.Sample{Speed: 9, Direction: 300}, std)
		}
	}
	step(10 * time.Second)
	require.InDelta(t, 270, r.p(PointNacDir), 3, "yaw lags")
	require.Equal(t, 300.0, r.p(PointWdDir))
	step(5 * time.Minute)
	require.InDelta(t, 300, r.p(PointNacDir), 1, "yaw caught up")
}

func TestEnergyCounter(t *testing.T) {
	r := newRig(t, NREL5MW(), 1)
	r.run(10*time.Minute, 14, std)
	before := r.p(PointTotWh)
	r.run(time.Hour, 14, std)
	require.InDelta(t, 5_000_000, r.p(PointTotWh)-before, 1, "one hour at 5 MW")
}

func TestStateNames(t *testing.T) {
	for s, name := range map[State]string{StateRunning: "running", StateStopped: "stopped", StateFault: "fault",
		StateCurtailed: "curtailed", StateStorm: "storm", StateIcing: "icing", StateOffline: "offline", 0: "state(0)"} {
		require.Equal(t, name, s.String())
	}
}

func TestDeterministicTurbine(t *testing.T) {
	hash := func(seed uint64) [32]byte {
		r := newRig(t, Onshore2300(), seed)
		h := sha256.New()
		var buf [8]byte
		names := []string{PointW, PointVAr, PointHz, PointGriPPV, PointWdSpd, PointGbxOil}
		for i := range 20000 {
			r.t.Step(time.Second, wind.Sample{Speed: 6 + 4*math.Sin(float64(i)/300), Direction: 270}, std)
			p := r.t.Points()
			for _, n := range names {
				binary.LittleEndian.PutUint64(buf[:], math.Float64bits(p[n]))
				h.Write(buf[:])
			}
		}
		return [32]byte(h.Sum(nil))
	}
	require.Equal(t, hash(1), hash(1))
	require.NotEqual(t, hash(1), hash(2))
}

func TestMetMast(t *testing.T) {
	m := NewMetMast(MastConfig{ID: "MM01", Site: "s", Start: t0, Rand: rand.New(rand.NewPCG(1, 1))})
	m.Step(time.Second, wind.Sample{Speed: 8, Direction: 10}, std)
	p := m.Points()
	require.Len(t, p, 5)
	require.InDelta(t, 8, p[PointMetWdSpd], 0.3)
	require.InDelta(t, 15, p[PointMetTmp], 0.3)
	require.InDelta(t, 1013.25, p[PointMetPres], 0.3)
	require.InDelta(t, 70, p[PointMetHum], 2)
	require.Equal(t, t0.Add(time.Second), m.PointsTime())
	require.True(t, m.Online())
	require.ErrorIs(t, m.WritePoint(PointMetWdSpd, 1), ErrReadOnly)
}

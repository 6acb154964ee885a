// Package turbine simulates wind turbines and met masts: power curve, storm
// shutdown with hysteresis, rotor and generator speed, pitch and yaw control,
// thermal lags, grid measurements, energy counter, a state machine, injectable
// faults and the services setPowerLimit, start, stop and resetFault. Points
// carry IEC 61400-25 names.
package turbine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gale-iot/gale/twins/wind"
)

// Protection and control settings shared by the models.
const (
	oilDerate      = 75.0 // °C: gearbox oil warning, power derated
	oilTrip        = 80.0 // °C: gearbox oil fault stop
	oilReset       = 70.0 // °C: derate lifted, gearbox fault resettable
	oilFaultHeat   = 0.02 // °C/s of extra heat while the gearbox fault is injected and the shaft turns
	oilTau         = 1800 // s
	bearingTau     = 2400 // s
	statorTau      = 900  // s
	powerTau       = 3    // s: converter and rotor inertia
	rotorTau       = 8    // s
	pitchRate      = 8.0  // °/s, NREL 5 MW maximum
	faultPitchRate = 0.5  // °/s drift of a faulty blade
	asymmetryTrip  = 4.0  // ° between the faulty blade and the others
	yawRate        = 0.3  // °/s
	yawStart       = 8.0  // ° of filtered misalignment before yawing
	yawStop        = 0.5  // °
	gridRestart    = 60.0 // s of healthy grid before an automatic restart
	icingTemp      = 3.0  // °C: ice builds below this when icing conditions are present
	curtailShare   = 0.5  // share of rated power the grid operator allows during curtailment
	curtailPitch   = 25.0 // ° of extra pitch to shed all aerodynamic power (approximation)
	feathered      = 90.0 // °
)

// Config configures one turbine.
type Config struct {
	// ID is the device key (e.g. WT01).
	ID string
	// Site is the farm the turbine belongs to.
	Site string
	// Model is the turbine type.
	Model Model
	// Start is the sim time before the first Step.
	Start time.Time
	// Rand is the turbine's own random stream (sensor noise, grid, faults); required.
	Rand *rand.Rand
	// OnEvent receives fault events, outside the turbine's lock; nil drops them.
	OnEvent func(Event)
}

// Turbine is a simulated wind turbine. It is safe for concurrent use: the farm
// steps it while services, fault injection and readers run on other goroutines.
type Turbine struct {
	mu      sync.Mutex
	cfg     Config
	m       Model
	rng     *rand.Rand
	now     time.Time
	started bool

	injected     uint16 // bit set of injected Faults
	runRequested bool
	demand       float64 // operator power setpoint, kW
	fault        int     // latched fault code, 0 when none
	faultText    string
	derated      bool
	iced         bool
	storm        bool

	windFast, windSlow float64 // 30 s and 600 s means of the hub wind
	gridOK             bool
	gridOKFor          float64 // s
	hz, volt           float64 // normalised grid noise
	freq, voltage      float64 // measured
	yawErr             float64 // filtered misalignment
	yawing             bool
	nacelle            float64
	rotor              float64 // rpm
	pitch              [3]float64
	stuckBlade         int // faulty blade, -1 when none
	power, reactive    float64
	ct                 float64
	oil, bearing       float64
	stator             float64
	ice                float64 // 0…1
	energy             float64 // Wh
	anemo              wind.Sample
	ambient            wind.Ambient
	snap               snapshot
	pending            []Event
}

// New returns a turbine in service (start requested, setpoint at rated power)
// that spins up on its first steps.
func New(cfg Config) *Turbine {
	return &Turbine{
		cfg:          cfg,
		m:            cfg.Model,
		rng:          cfg.Rand,
		now:          cfg.Start,
		runRequested: true,
		demand:       cfg.Model.RatedPower,
		gridOK:       true,
		gridOKFor:    gridRestart,
		pitch:        [3]float64{feathered, feathered, feathered},
		stuckBlade:   -1,
		// a turbine with some years of service behind it
		energy: 5e9 + 4e10*cfg.Rand.Float64(),
	}
}

// ID returns the device key.
func (t *Turbine) ID() string { return t.cfg.ID }

// Site returns the farm's site name.
func (t *Turbine) Site() string { return t.cfg.Site }

// Model returns the turbine type.
func (t *Turbine) Model() Model { return t.m }

func (t *Turbine) has(f Fault) bool { return t.injected&f.bit() != 0 }

func lag(x, target, s, tau float64) float64 { return target + (x-target)*math.Exp(-s/tau) }

func (t *Turbine) ou(x, s, tau float64) float64 {
	a := math.Exp(-s / tau)
	return a*x + math.Sqrt(1-a*a)*t.rng.NormFloat64()
}

// angleDiff returns a − b wrapped to (−180, 180].
func angleDiff(a, b float64) float64 {
	d := math.Mod(a-b, 360)
	switch {
	case d > 180:
		d -= 360
	case d <= -180:
		d += 360
	}
	return d
}

func (t *Turbine) event(code int, sev Severity, active bool, format string, args ...any) {
	t.pending = append(t.pending, Event{Device: t.cfg.ID, Time: t.now, Code: code,
		Text: fmt.Sprintf(format, args...), Severity: sev, Active: active})
}

func (t *Turbine) trip(code int, format string, args ...any) {
	t.fault, t.faultText = code, fmt.Sprintf(format, args...)
	t.event(code, SeverityCritical, true, "%s", t.faultText)
}

func (t *Turbine) clearFault(text string) {
	t.event(t.fault, SeverityCritical, false, "%s cleared: %s", t.faultText, text)
	if t.fault == CodePitchAsymmetry {
		t.stuckBlade = -1
	}
	t.fault, t.faultText = 0, ""
}

// unlock releases the lock and delivers pending events.
func (t *Turbine) unlock() {
	ev := t.pending
	t.pending = nil
	t.mu.Unlock()
	if t.cfg.OnEvent != nil {
		for _, e := range ev {
			t.cfg.OnEvent(e)
		}
	}
}

// limit is the power the turbine may produce: the operator setpoint, the grid
// operator's curtailment and the gearbox derate.
func (t *Turbine) limit() float64 {
	l := math.Min(t.demand, t.m.RatedPower)
	if t.has(FaultCurtailment) {
		l = math.Min(l, curtailShare*t.m.RatedPower)
	}
	if t.derated {
		l = math.Min(l, 0.5*t.m.RatedPower)
	}
	return l
}

// demandLimit is WTUR.DmdW: the setpoint the turbine obeys (operator and grid operator).
func (t *Turbine) demandLimit() float64 {
	if t.has(FaultCurtailment) {
		return math.Min(t.demand, curtailShare*t.m.RatedPower)
	}
	return t.demand
}

// Step advances the turbine by dt with wind w at the hub (waked) and ambient weather a.
func (t *Turbine) Step(dt time.Duration, w wind.Sample, a wind.Ambient) {
	t.mu.Lock()
	defer t.unlock()
	t.now = t.now.Add(dt)
	t.step(dt.Seconds(), w, a)
}

// step advances the physics by s seconds, subsystem by subsystem in the
// order below (each reads what the ones before it left).
func (t *Turbine) step(s float64, w wind.Sample, a wind.Ambient) {
	if !t.started {
		t.started = true
		t.windFast, t.windSlow = w.Speed, w.Speed
		t.nacelle = w.Direction
		t.oil, t.bearing, t.stator = 50, a.Temp+15, a.Temp+40
		t.anemo = w
	}
	t.ambient = a
	t.windFast = lag(t.windFast, w.Speed, s, 30)
	t.windSlow = lag(t.windSlow, w.Speed, s, 600)
	online := !t.has(FaultOffline)
	t.stepGrid(s)
	t.stepThermal(s, a)
	t.stepIcing(s, a)
	t.stepStorm()
	t.stepFaultyBlade()
	producing := online && t.runRequested && t.fault == 0 && !t.storm && t.gridOK
	limit := t.limit()
	if online && t.gridOK { // yaw needs the controller and the grid
		t.stepYaw(s, w)
	}
	misalign := angleDiff(w.Direction, t.nacelle) * math.Pi / 180
	powerTarget, pitchTarget, rotorTarget := t.targets(producing, w.Speed, misalign, limit, a)
	if t.stepPitch(s, pitchTarget) {
		producing = false
	}
	t.stepDriveTrain(s, producing, online, powerTarget, rotorTarget, limit)

	// sensors
	if !t.has(FaultSensorFreeze) {
		t.anemo = wind.Sample{Speed: math.Max(0, w.Speed+0.1*t.rng.NormFloat64()), Direction: w.Direction}
	}
	if !t.has(FaultStale) {
		t.snap = t.snapshot()
	}
}

// stepGrid follows the grid's frequency and voltage; a grid loss trips the
// turbine, which restarts once the grid is back for gridRestart.
func (t *Turbine) stepGrid(s float64) {
	m := t.m
	if t.has(FaultGridLoss) {
		t.gridOK, t.gridOKFor = false, 0
		t.freq, t.voltage = m.Frequency-2.5, 0.15*m.Voltage
	} else {
		t.gridOK = true
		t.gridOKFor += s
		t.hz, t.volt = t.ou(t.hz, s, 60), t.ou(t.volt, s, 30)
		t.freq, t.voltage = m.Frequency+0.02*t.hz, m.Voltage*(1+0.01*t.volt)
	}
	if !t.gridOK && t.fault == 0 {
		t.trip(CodeGridLoss, "grid loss: %.2f Hz, %.0f V", t.freq, t.voltage)
	}
	if t.fault == CodeGridLoss && t.gridOKFor >= gridRestart {
		t.clearFault("grid restored, automatic restart")
	}
}

// stepThermal moves the temperatures (thermal lags, driven by the last
// step's load); hot gearbox oil derates, then trips, the turbine.
func (t *Turbine) stepThermal(s float64, a wind.Ambient) {
	m := t.m
	p := t.power / m.RatedPower
	rs := t.rotor / m.RatedRotorSpeed
	rotating := t.rotor > 0.5
	oilTarget := math.Max(a.Temp, 20) // standstill: heaters keep the oil above 20 °C
	if rotating {
		oilTarget = 45 + 15*p + 0.25*(a.Temp-10) // thermostat and cooler
		if t.has(FaultGearboxOverheat) {
			oilTarget += oilFaultHeat * oilTau
		}
	}
	if rotating {
		t.oil = lag(t.oil, oilTarget, s, oilTau)
	} else {
		t.oil = lag(t.oil, oilTarget, s, 3*oilTau) // no oil circulation: the sump cools slowly
	}
	t.bearing = lag(t.bearing, a.Temp+8+22*rs*(0.5+0.5*p), s, bearingTau)
	t.stator = lag(t.stator, a.Temp+20*rs+60*p*p, s, statorTau)
	if t.oil >= oilTrip && t.fault == 0 {
		t.trip(CodeGearboxOilTrip, "gearbox oil overtemperature %.1f °C", t.oil)
	}
	if !t.derated && t.oil >= oilDerate {
		t.derated = true
		t.event(CodeGearboxOilHigh, SeverityWarning, true, "gearbox oil %.1f °C: power derated to 50%%", t.oil)
	}
	if t.derated && t.oil < oilReset {
		t.derated = false
		t.event(CodeGearboxOilHigh, SeverityWarning, false, "gearbox oil %.1f °C: derate lifted", t.oil)
	}
}

// stepIcing builds ice in icing conditions below 3 °C and melts it above 0 °C.
func (t *Turbine) stepIcing(s float64, a wind.Ambient) {
	switch {
	case t.has(FaultIcing) && a.Temp < icingTemp:
		t.ice = math.Min(1, t.ice+s/3600)
	case a.Temp > 0:
		t.ice = math.Max(0, t.ice-s/7200)
	}
	if !t.iced && t.ice > 0.05 {
		t.iced = true
		t.event(CodeIcing, SeverityWarning, true, "ice detected on the rotor at %.1f °C", a.Temp)
	}
	if t.iced && t.ice == 0 {
		t.iced = false
		t.event(CodeIcing, SeverityWarning, false, "rotor free of ice")
	}
}

// stepStorm shuts the turbine down above cut-out, with hysteresis.
func (t *Turbine) stepStorm() {
	if !t.storm && t.windFast > t.m.CutOut {
		t.storm = true
		t.event(CodeStorm, SeverityInfo, true, "storm shutdown at %.1f m/s", t.windFast)
	}
	if t.storm && t.windFast < t.m.Restart && t.windSlow < t.m.Restart {
		t.storm = false
		t.event(CodeStorm, SeverityInfo, false, "storm over at %.1f m/s, restarting", t.windSlow)
	}
}

// stepFaultyBlade picks the blade a pitch fault sticks, and frees it once
// the fault and its trip are cleared.
func (t *Turbine) stepFaultyBlade() {
	if t.has(FaultPitch) && t.stuckBlade < 0 {
		t.stuckBlade = t.rng.IntN(3)
	}
	if !t.has(FaultPitch) && t.fault != CodePitchAsymmetry {
		t.stuckBlade = -1
	}
}

// stepYaw turns the nacelle into the wind once the yaw error passes yawStart.
func (t *Turbine) stepYaw(s float64, w wind.Sample) {
	t.yawErr = lag(t.yawErr, angleDiff(w.Direction, t.nacelle), s, 30)
	if !t.yawing && math.Abs(t.yawErr) > yawStart {
		t.yawing = true
	}
	if t.yawing {
		e := angleDiff(w.Direction, t.nacelle)
		t.nacelle = math.Mod(t.nacelle+math.Copysign(math.Min(math.Abs(e), yawRate*s), e)+360, 360)
		if math.Abs(angleDiff(w.Direction, t.nacelle)) < yawStop {
			t.yawing = false
		}
	}
}

// targets are the controller's power, pitch and rotor speed targets at wind
// speed v (and the thrust coefficient, set on t): feathered unless producing.
func (t *Turbine) targets(producing bool, v, misalign, limit float64, a wind.Ambient) (power, pitch, rotor float64) {
	m := t.m
	t.ct = 0
	if !producing {
		return 0, feathered, 0
	}
	density := a.Pressure * 100 / (287.05 * (a.Temp + 273.15)) / 1.225
	avail := math.Min(m.Power(v)*density, m.RatedPower) * math.Pow(math.Cos(misalign), 2) * (1 - 0.35*t.ice)
	if t.windFast < m.CutIn {
		avail = 0 // waiting for wind
	}
	power = math.Min(avail, limit)
	pitch = m.PitchAngle(v)
	if avail > 0 {
		rotor = m.RotorSpeed(v)
		if avail > limit {
			pitch += curtailPitch * (1 - limit/avail)
		}
		t.ct = m.Thrust(v) * power / avail
	}
	return power, pitch, rotor
}

// stepPitch moves the pitch actuators toward target; a stuck blade drifts
// until the asymmetry trips the turbine, which stepPitch reports.
func (t *Turbine) stepPitch(s, target float64) (tripped bool) {
	for b := range t.pitch {
		if b == t.stuckBlade {
			if t.fault != CodePitchAsymmetry { // drifts until the trip locks it
				dir := 1.0
				if t.pitch[b] > 45 {
					dir = -1
				}
				t.pitch[b] += dir * faultPitchRate * s
			}
			continue
		}
		d := target - t.pitch[b]
		t.pitch[b] += math.Copysign(math.Min(math.Abs(d), pitchRate*s), d)
	}
	if b := t.stuckBlade; b >= 0 && t.fault == 0 {
		others := (t.pitch[0] + t.pitch[1] + t.pitch[2] - t.pitch[b]) / 2
		if math.Abs(t.pitch[b]-others) > asymmetryTrip {
			t.trip(CodePitchAsymmetry, "pitch asymmetry: blade %d at %.1f° while the others are at %.1f°", b+1, t.pitch[b], others)
			return true
		}
	}
	return false
}

// stepDriveTrain moves the rotor and the converter's power toward their
// targets (or stops them), and the reactive power and energy with them.
func (t *Turbine) stepDriveTrain(s float64, producing, online bool, powerTarget, rotorTarget, limit float64) {
	m := t.m
	t.rotor = lag(t.rotor, rotorTarget, s, rotorTau)
	if t.rotor < 0.01 {
		t.rotor = 0 // at standstill (the brake holds the rotor)
	}
	switch {
	case producing:
		t.power = lag(t.power, powerTarget, s, powerTau)
	case t.fault != 0 || !t.gridOK || !online:
		t.power = 0 // breaker opens
	default:
		t.power = lag(t.power, 0, s, powerTau) // controlled stop
	}
	t.power = math.Min(t.power, limit)
	if t.power < 0.1 {
		t.power = 0
	}
	t.reactive = 0
	if t.power > 0 {
		// voltage support: up to power factor 0.95 (33% of rated) at ±5% voltage
		dv := (t.voltage/m.Voltage - 1) / 0.05
		t.reactive = -math.Max(-1, math.Min(1, dv)) * 0.33 * m.RatedPower
	}
	t.energy += t.power * s / 3.6
}

// state returns the current WTUR.TurSt.
func (t *Turbine) state() State {
	switch {
	case t.has(FaultOffline):
		return StateOffline
	case t.fault != 0:
		return StateFault
	case !t.runRequested:
		return StateStopped
	case t.storm:
		return StateStorm
	case t.iced:
		return StateIcing
	case t.limit() < t.m.RatedPower:
		return StateCurtailed
	}
	return StateRunning
}

type snapshot struct {
	at                                     time.Time
	w, varr, state, dmd, wh                float64
	rotor, bl1, bl2, bl3, gen, stator      float64
	oil, bearing, wdSpd, wdDir, nac, exTmp float64
	ice, hz, volt                          float64
}

func (t *Turbine) snapshot() snapshot {
	ice := 0.0
	if t.iced {
		ice = 1
	}
	return snapshot{
		at: t.now, w: t.power, varr: t.reactive, state: float64(t.state()), dmd: t.demandLimit(), wh: t.energy,
		rotor: t.rotor, bl1: t.pitch[0], bl2: t.pitch[1], bl3: t.pitch[2], gen: t.rotor * t.m.GearRatio, stator: t.stator,
		oil: t.oil, bearing: t.bearing, wdSpd: t.anemo.Speed, wdDir: t.anemo.Direction, nac: t.nacelle,
		exTmp: t.ambient.Temp, ice: ice, hz: t.freq, volt: t.voltage,
	}
}

// Points returns the turbine's IEC 61400-25 points as of the last step, except
// the setpoint WTUR.DmdW, which reads back as soon as it is written. Every
// point freezes while stale_data is injected.
func (t *Turbine) Points() map[string]float64 {
	t.mu.Lock()
	s := t.snap
	if !t.has(FaultStale) {
		s.dmd = t.demandLimit()
	}
	t.mu.Unlock()
	return map[string]float64{
		PointW: s.w, PointVAr: s.varr, PointTurSt: s.state, PointDmdW: s.dmd, PointTotWh: s.wh,
		PointRotSpd: s.rotor, PointPtAngBl1: s.bl1, PointPtAngBl2: s.bl2, PointPtAngBl3: s.bl3,
		PointGnSpd: s.gen, PointGnTmpSta: s.stator, PointGbxOil: s.oil, PointShfBrg1: s.bearing,
		PointWdSpd: s.wdSpd, PointWdDir: s.wdDir, PointNacDir: s.nac, PointExTmp: s.exTmp,
		PointIceSt: s.ice, PointHz: s.hz, PointGriPPV: s.volt,
	}
}

// PointsTime returns the sim time of the values Points returns.
func (t *Turbine) PointsTime() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snap.at
}

// State returns the current state.
func (t *Turbine) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state()
}

// Online reports whether the controller is reachable.
func (t *Turbine) Online() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.has(FaultOffline)
}

// Thrust returns the rotor's thrust coefficient of the last step, for wakes.
func (t *Turbine) Thrust() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ct
}

// LatchedFault returns the code and text of the latched fault (0 when none).
func (t *Turbine) LatchedFault() (int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fault, t.faultText
}

// Inject starts an injected fault.
func (t *Turbine) Inject(f Fault) error {
	if f.bit() == 0 {
		return fmt.Errorf("%w: %q", ErrUnknownFault, f)
	}
	t.mu.Lock()
	defer t.unlock()
	t.injected |= f.bit()
	return nil
}

// Clear ends an injected fault. Latched faults it caused stay until reset.
func (t *Turbine) Clear(f Fault) error {
	if f.bit() == 0 {
		return fmt.Errorf("%w: %q", ErrUnknownFault, f)
	}
	t.mu.Lock()
	defer t.unlock()
	t.injected &^= f.bit()
	return nil
}

// ClearAll ends every injected fault.
func (t *Turbine) ClearAll() {
	t.mu.Lock()
	defer t.unlock()
	t.injected = 0
}

// Injected lists the injected faults.
func (t *Turbine) Injected() []Fault {
	t.mu.Lock()
	defer t.mu.Unlock()
	var fs []Fault
	for _, f := range Faults() {
		if t.has(f) {
			fs = append(fs, f)
		}
	}
	return fs
}

// SetPowerLimit sets the active power setpoint WTUR.DmdW (kW, 0…rated).
func (t *Turbine) SetPowerLimit(kW float64) error {
	t.mu.Lock()
	defer t.unlock()
	if t.has(FaultOffline) {
		return ErrOffline
	}
	if !(kW >= 0 && kW <= t.m.RatedPower) {
		return fmt.Errorf("%w: power limit %g kW not in 0…%g", ErrOutOfRange, kW, t.m.RatedPower)
	}
	t.demand = kW
	return nil
}

// Start puts the turbine in service. A latched fault must be reset first.
func (t *Turbine) Start() error {
	t.mu.Lock()
	defer t.unlock()
	if t.has(FaultOffline) {
		return ErrOffline
	}
	if t.fault != 0 {
		return fmt.Errorf("%w: %s", ErrFaultActive, t.faultText)
	}
	t.runRequested = true
	return nil
}

// Stop takes the turbine out of service: power ramps down and the blades feather.
func (t *Turbine) Stop() error {
	t.mu.Lock()
	defer t.unlock()
	if t.has(FaultOffline) {
		return ErrOffline
	}
	t.runRequested = false
	return nil
}

// ResetFault clears the latched fault if its cause is gone: the gearbox
// fault is repaired and the oil below 70 °C, the pitch fault repaired, or the
// grid back. Without a latched fault it does nothing.
func (t *Turbine) ResetFault() error {
	t.mu.Lock()
	defer t.unlock()
	if t.has(FaultOffline) {
		return ErrOffline
	}
	var cause string
	switch t.fault {
	case 0:
		return nil
	case CodeGearboxOilTrip:
		if t.has(FaultGearboxOverheat) {
			cause = "gearbox cooling still failing"
		} else if t.oil >= oilReset {
			cause = fmt.Sprintf("gearbox oil %.1f °C, not below %g °C", t.oil, oilReset)
		}
	case CodePitchAsymmetry:
		if t.has(FaultPitch) {
			cause = "pitch system still faulty"
		}
	case CodeGridLoss:
		if !t.gridOK {
			cause = "grid still out of range"
		}
	}
	if cause != "" {
		return fmt.Errorf("%w: %s", ErrCauseActive, cause)
	}
	t.clearFault("reset by operator")
	return nil
}

// Invoke runs a thing model service: setPowerLimit (param powerLimit, kW),
// start, stop or resetFault.
func (t *Turbine) Invoke(service string, params map[string]any) error {
	switch service {
	case ServiceSetPowerLimit:
		v, ok := params[ParamPowerLimit].(float64)
		if !ok {
			return fmt.Errorf("%w: %s needs a number %q", ErrOutOfRange, service, ParamPowerLimit)
		}
		return t.SetPowerLimit(v)
	case ServiceStart:
		return t.Start()
	case ServiceStop:
		return t.Stop()
	case ServiceResetFault:
		return t.ResetFault()
	}
	return fmt.Errorf("%w: %q", ErrUnknownService, service)
}

// WritePoint applies a Modbus write: WTUR.DmdW sets the power limit, and a
// non-zero value on start, stop or resetFault runs that service (zero does nothing).
func (t *Turbine) WritePoint(point string, v float64) error {
	switch point {
	case PointDmdW:
		return t.SetPowerLimit(v)
	case ServiceStart, ServiceStop, ServiceResetFault:
		if v == 0 {
			return nil
		}
		return t.Invoke(point, nil)
	}
	return fmt.Errorf("%w: %s", ErrReadOnly, point)
}

package turbine

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrUnknownModel is returned by ModelNamed for a name it does not know.
var ErrUnknownModel = errors.New("unknown turbine type")

// CurvePoint is one point of a power and thrust curve.
type CurvePoint struct {
	// Speed is the hub-height wind speed (m/s).
	Speed float64
	// Power is the electrical power (kW) at air density 1.225 kg/m³.
	Power float64
	// Ct is the thrust coefficient.
	Ct float64
}

// PitchPoint is one point of the above-rated pitch schedule.
type PitchPoint struct {
	// Speed is the wind speed (m/s).
	Speed float64
	// Angle is the collective blade pitch (degrees) that holds rated power.
	Angle float64
}

// Model is a turbine type: its ratings, curves and drive train.
type Model struct {
	// Name identifies the type in configuration (e.g. nrel-5mw).
	Name string
	// RatedPower is the rated electrical power (kW).
	RatedPower float64
	// CutIn, RatedSpeed and CutOut are wind speeds (m/s); Restart is the speed
	// below which a turbine in storm shutdown starts again (hysteresis).
	CutIn, RatedSpeed, CutOut, Restart float64
	// RotorDiameter and HubHeight are in metres.
	RotorDiameter, HubHeight float64
	// MinRotorSpeed and RatedRotorSpeed bound the variable-speed range (rpm).
	MinRotorSpeed, RatedRotorSpeed float64
	// TipSpeedRatio is the optimal tip speed ratio below rated.
	TipSpeedRatio float64
	// GearRatio is generator speed / rotor speed.
	GearRatio float64
	// Voltage is the nominal phase-to-phase grid voltage at the converter (V).
	Voltage float64
	// Frequency is the nominal grid frequency (Hz).
	Frequency float64
	// Curve is the power and thrust curve, by increasing speed from cut-in to cut-out.
	Curve []CurvePoint
	// Pitch is the above-rated pitch schedule, by increasing speed.
	Pitch []PitchPoint
}

// NREL5MW is the NREL offshore 5-MW baseline turbine (Jonkman et al., NREL/TP-500-38060):
// 126 m rotor, 90 m hub, 12.1 rpm, gearbox 97:1.
func NREL5MW() Model {
	return Model{
		Name:       "nrel-5mw",
		RatedPower: 5000,
		CutIn:      3, RatedSpeed: 11.4, CutOut: 25, Restart: 20,
		RotorDiameter: 126, HubHeight: 90,
		MinRotorSpeed: 6.9, RatedRotorSpeed: 12.1, TipSpeedRatio: 7.55,
		GearRatio: 97,
		Voltage:   690, Frequency: 50,
		Curve: []CurvePoint{
			{3, 40, 0.86}, {4, 178, 0.83}, {5, 404, 0.82}, {6, 730, 0.81}, {7, 1180, 0.80},
			{8, 1771, 0.80}, {9, 2516, 0.79}, {10, 3448, 0.79}, {11, 4562, 0.80}, {11.4, 5000, 0.81},
			{12, 5000, 0.62}, {13, 5000, 0.46}, {14, 5000, 0.37}, {15, 5000, 0.30}, {16, 5000, 0.25},
			{18, 5000, 0.18}, {20, 5000, 0.13}, {22, 5000, 0.10}, {25, 5000, 0.07},
		},
		Pitch: []PitchPoint{
			{11.4, 0}, {12, 3.83}, {13, 6.60}, {14, 8.70}, {15, 10.45}, {16, 12.06}, {17, 13.54},
			{18, 14.92}, {19, 16.23}, {20, 17.47}, {21, 18.70}, {22, 19.94}, {23, 21.18}, {24, 22.35}, {25, 23.47},
		},
	}
}

// Onshore2300 is a generic 2.3 MW onshore class turbine (IEC class IIA/IIIA):
// 113 m rotor, 99 m hub, cut-in 3.25 m/s, geared.
func Onshore2300() Model {
	return Model{
		Name:       "onshore-2.3mw",
		RatedPower: 2300,
		CutIn:      3.25, RatedSpeed: 11, CutOut: 25, Restart: 20,
		RotorDiameter: 113, HubHeight: 99,
		MinRotorSpeed: 6, RatedRotorSpeed: 14, TipSpeedRatio: 8.5,
		GearRatio: 107,
		Voltage:   690, Frequency: 50,
		Curve: []CurvePoint{
			{3.25, 20, 0.87}, {4, 110, 0.85}, {5, 300, 0.83}, {6, 580, 0.82}, {7, 950, 0.81},
			{8, 1420, 0.80}, {9, 1950, 0.76}, {10, 2250, 0.68}, {11, 2300, 0.55}, {12, 2300, 0.43},
			{13, 2300, 0.34}, {14, 2300, 0.27}, {16, 2300, 0.18}, {18, 2300, 0.13}, {20, 2300, 0.10},
			{25, 2300, 0.05},
		},
		Pitch: []PitchPoint{
			{11, 0}, {12, 4.5}, {13, 7.4}, {14, 9.6}, {16, 13.0}, {18, 15.9}, {20, 18.5}, {25, 24.0},
		},
	}
}

// ModelNamed returns a built-in model by name: nrel-5mw or onshore-2.3mw.
func ModelNamed(name string) (Model, error) {
	for _, m := range []Model{NREL5MW(), Onshore2300()} {
		if m.Name == name {
			return m, nil
		}
	}
	return Model{}, fmt.Errorf("%w: %q (known: nrel-5mw, onshore-2.3mw)", ErrUnknownModel, name)
}

// curve interpolates the curve linearly; y picks the column.
func (m Model) curve(v float64, y func(CurvePoint) float64) float64 {
	c := m.Curve
	if v < c[0].Speed || v >= m.CutOut {
		return 0
	}
	i := sort.Search(len(c), func(i int) bool { return c[i].Speed >= v })
	if i == len(c) {
		return y(c[len(c)-1])
	}
	if c[i].Speed == v || i == 0 {
		return y(c[i])
	}
	a, b := c[i-1], c[i]
	return y(a) + (y(b)-y(a))*(v-a.Speed)/(b.Speed-a.Speed)
}

// Power returns the power curve (kW) at wind speed v: 0 below cut-in and at
// or above cut-out, linear between the curve points.
func (m Model) Power(v float64) float64 {
	return m.curve(v, func(p CurvePoint) float64 { return p.Power })
}

// Thrust returns the thrust coefficient at wind speed v (0 outside the operating range).
func (m Model) Thrust(v float64) float64 {
	return m.curve(v, func(p CurvePoint) float64 { return p.Ct })
}

// PitchAngle returns the scheduled collective pitch (degrees) at wind speed v:
// 0 up to rated, rising above it.
func (m Model) PitchAngle(v float64) float64 {
	p := m.Pitch
	if v <= p[0].Speed {
		return p[0].Angle
	}
	i := sort.Search(len(p), func(i int) bool { return p[i].Speed >= v })
	if i == len(p) {
		return p[len(p)-1].Angle
	}
	a, b := p[i-1], p[i]
	return a.Angle + (b.Angle-a.Angle)*(v-a.Speed)/(b.Speed-a.Speed)
}

// RotorSpeed returns the steady rotor speed (rpm) at wind speed v for a
// producing turbine: optimal tip speed ratio, limited to the variable-speed range.
func (m Model) RotorSpeed(v float64) float64 {
	rpm := m.TipSpeedRatio * v / (m.RotorDiameter / 2) * 60 / (2 * math.Pi)
	return math.Max(m.MinRotorSpeed, math.Min(m.RatedRotorSpeed, rpm))
}

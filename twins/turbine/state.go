package turbine

import (
	"errors"
	"fmt"
	"time"
)

// State is the turbine's operating state, published as WTUR.TurSt.
type State int

// WTUR.TurSt codes. The order of precedence, highest first, is offline,
// fault, stopped, storm, icing, curtailed, running.
const (
	// StateRunning: in service, producing whenever the wind allows (idling below cut-in).
	StateRunning State = 1
	// StateStopped: stopped by the operator (stop service); blades feathered.
	StateStopped State = 2
	// StateFault: stopped by a latched fault; needs its cause gone (and resetFault where not automatic).
	StateFault State = 3
	// StateCurtailed: running under a power limit below rated (setPowerLimit or grid curtailment).
	StateCurtailed State = 4
	// StateStorm: storm shutdown above cut-out; restarts when the wind drops below the restart speed.
	StateStorm State = 5
	// StateIcing: running with ice on the blades, producing under the power curve.
	StateIcing State = 6
	// StateOffline: controller powered down or unreachable; no data, no services.
	StateOffline State = 7
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StateStopped:
		return "stopped"
	case StateFault:
		return "fault"
	case StateCurtailed:
		return "curtailed"
	case StateStorm:
		return "storm"
	case StateIcing:
		return "icing"
	case StateOffline:
		return "offline"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Fault is a condition that can be injected into a turbine.
type Fault string

// The injectable faults.
const (
	// FaultGearboxOverheat: the gearbox oil heats beyond what the load explains
	// (failing cooler); derate at 75 °C, fault stop at 80 °C.
	FaultGearboxOverheat Fault = "gearbox_overheat"
	// FaultPitch: one blade stops following the pitch controller and drifts;
	// the asymmetry trips the turbine, which feathers the other blades.
	FaultPitch Fault = "pitch_fault"
	// FaultIcing: icing conditions; ice builds while the air is below 3 °C,
	// power falls under the curve and WNAC.IceSt is set.
	FaultIcing Fault = "icing"
	// FaultGridLoss: voltage and frequency step out of range; the turbine trips
	// (power 0, pitch 90°) and restarts by itself 60 s after the grid is back.
	FaultGridLoss Fault = "grid_loss"
	// FaultCurtailment: the grid operator limits the turbine to half its rating.
	FaultCurtailment Fault = "curtailment"
	// FaultSensorFreeze: the nacelle anemometer and vane freeze at their last reading.
	FaultSensorFreeze Fault = "sensor_freeze"
	// FaultStale: the controller's data stops refreshing; every point keeps its last value.
	FaultStale Fault = "stale_data"
	// FaultOffline: the controller goes offline.
	FaultOffline Fault = "offline"
)

// Faults lists every injectable fault.
func Faults() []Fault {
	return []Fault{FaultGearboxOverheat, FaultPitch, FaultIcing, FaultGridLoss,
		FaultCurtailment, FaultSensorFreeze, FaultStale, FaultOffline}
}

// ParseFault returns the fault called name, or ErrUnknownFault.
func ParseFault(name string) (Fault, error) {
	for _, f := range Faults() {
		if string(f) == name {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownFault, name)
}

func (f Fault) bit() uint16 {
	for i, g := range Faults() {
		if f == g {
			return 1 << i
		}
	}
	return 0
}

// Errors returned by the services and fault injection.
var (
	ErrUnknownFault   = errors.New("unknown fault")
	ErrUnknownService = errors.New("unknown service")
	ErrOutOfRange     = errors.New("value out of range")
	ErrOffline        = errors.New("turbine offline")
	ErrFaultActive    = errors.New("turbine has a latched fault; reset it first")
	ErrCauseActive    = errors.New("fault cause still present")
	ErrReadOnly       = errors.New("point is read-only")
)

// Event codes of fault events.
const (
	// CodeGearboxOilHigh: gearbox oil above 75 °C, power derated to half (warning).
	CodeGearboxOilHigh = 101
	// CodeGearboxOilTrip: gearbox oil at 80 °C, turbine stopped (critical, latched).
	CodeGearboxOilTrip = 102
	// CodePitchAsymmetry: one blade departs from the others (critical, latched).
	CodePitchAsymmetry = 201
	// CodeGridLoss: grid voltage or frequency out of range (critical, auto-reset).
	CodeGridLoss = 301
	// CodeIcing: ice detected on the rotor (warning).
	CodeIcing = 401
	// CodeStorm: storm shutdown above cut-out (info).
	CodeStorm = 501
)

// Severity grades an event.
type Severity string

// Event severities.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Event is a fault event of a device (thing model event "fault").
type Event struct {
	// Device is the device key.
	Device string `json:"device"`
	// Time is the sim time of the event.
	Time time.Time `json:"time"`
	// Code is one of the Code constants.
	Code int `json:"code"`
	// Text describes the event.
	Text string `json:"text"`
	// Severity grades the event.
	Severity Severity `json:"severity"`
	// Active is true when the condition is raised and false when it clears.
	Active bool `json:"active"`
}

// Thing model event identifiers of turbine events: EventID when a
// condition is raised, ClearedEventID when it clears.
const (
	EventID        = "fault"
	ClearedEventID = "faultCleared"
)

// ModelEvent is the thing model event identifier e is posted as.
func (e Event) ModelEvent() string {
	if e.Active {
		return EventID
	}
	return ClearedEventID
}

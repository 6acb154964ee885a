package wind

import (
	"cmp"
	"errors"
	"fmt"
)

// Sentinel errors of Config.Validate.
var (
	ErrMeanSpeed  = errors.New("mean_speed must be in (0, 30] m/s")
	ErrWeibullK   = errors.New("weibull_k must be in [1, 5]")
	ErrIref       = errors.New("iref must be in [0, 0.3]")
	ErrDirection  = errors.New("direction must be in [0, 360)")
	ErrSpread     = errors.New("direction_spread must be in [0, 90] degrees")
	ErrDiurnal    = errors.New("diurnal_amplitude must be in [0, 0.5]")
	ErrGusts      = errors.New("gusts_per_day must be in [0, 1000]")
	ErrWakeDecay  = errors.New("wake_decay must be in (0, 0.2]")
	ErrAmbient    = errors.New("ambient_temp must be in [-50, 50] °C and ambient_swing in [0, 20] °C")
	ErrNoSites    = errors.New("wind field needs at least one site")
	ErrSiteRotors = errors.New("rotor diameter must not be negative")
)

// Config describes the wind climate of one site at hub height.
type Config struct {
	// MeanSpeed is the long-term mean wind speed (m/s); the Weibull scale is
	// MeanSpeed/Γ(1+1/k), ≈1.13×MeanSpeed for k=2.
	MeanSpeed float64 `yaml:"mean_speed"`
	// WeibullK is the Weibull shape factor of the 10-minute means.
	WeibullK float64 `yaml:"weibull_k"`
	// Iref is the IEC 61400-1 reference turbulence intensity (0.12–0.16).
	Iref float64 `yaml:"iref"`
	// Direction is the prevailing wind direction (degrees, from north, where
	// the wind comes from).
	Direction float64 `yaml:"direction"`
	// DirectionSpread is the standard deviation (degrees) of the slow drift of
	// the wind direction around Direction.
	DirectionSpread float64 `yaml:"direction_spread"`
	// DiurnalAmplitude is the relative daily swing of the mean speed (peak at 15:00).
	DiurnalAmplitude float64 `yaml:"diurnal_amplitude"`
	// GustsPerDay is the mean rate of extreme operating gusts.
	GustsPerDay float64 `yaml:"gusts_per_day"`
	// WakeDecay is the Jensen/Park wake decay constant k (≈0.075 onshore, 0.04 offshore).
	WakeDecay float64 `yaml:"wake_decay"`
	// AmbientTemp is the mean air temperature (°C).
	AmbientTemp float64 `yaml:"ambient_temp"`
	// AmbientSwing is the daily temperature amplitude (°C, peak at 15:00).
	AmbientSwing float64 `yaml:"ambient_swing"`
}

// DefaultConfig is a moderate onshore climate: 8 m/s mean, k=2, Iref 0.14
// (IEC class B), westerly wind, 10 °C.
func DefaultConfig() Config {
	return Config{
		MeanSpeed:        8,
		WeibullK:         2,
		Iref:             0.14,
		Direction:        270,
		DirectionSpread:  20,
		DiurnalAmplitude: 0.1,
		GustsPerDay:      6,
		WakeDecay:        0.075,
		AmbientTemp:      10,
		AmbientSwing:     4,
	}
}

// Validate checks the ranges of the configuration.
func (c Config) Validate() error {
	switch {
	case !(c.MeanSpeed > 0 && c.MeanSpeed <= 30):
		return fmt.Errorf("%w: %g", ErrMeanSpeed, c.MeanSpeed)
	case !(c.WeibullK >= 1 && c.WeibullK <= 5):
		return fmt.Errorf("%w: %g", ErrWeibullK, c.WeibullK)
	case !(c.Iref >= 0 && c.Iref <= 0.3):
		return fmt.Errorf("%w: %g", ErrIref, c.Iref)
	case !(c.Direction >= 0 && c.Direction < 360):
		return fmt.Errorf("%w: %g", ErrDirection, c.Direction)
	case !(c.DirectionSpread >= 0 && c.DirectionSpread <= 90):
		return fmt.Errorf("%w: %g", ErrSpread, c.DirectionSpread)
	case !(c.DiurnalAmplitude >= 0 && c.DiurnalAmplitude <= 0.5):
		return fmt.Errorf("%w: %g", ErrDiurnal, c.DiurnalAmplitude)
	case !(c.GustsPerDay >= 0 && c.GustsPerDay <= 1000):
		return fmt.Errorf("%w: %g", ErrGusts, c.GustsPerDay)
	case !(c.WakeDecay > 0 && c.WakeDecay <= 0.2):
		return fmt.Errorf("%w: %g", ErrWakeDecay, c.WakeDecay)
	case !(c.AmbientTemp >= -50 && c.AmbientTemp <= 50 && c.AmbientSwing >= 0 && c.AmbientSwing <= 20):
		return fmt.Errorf("%w: %g ± %g", ErrAmbient, c.AmbientTemp, c.AmbientSwing)
	}
	return nil
}

// Default fills the fields whose zero value is not meaningful (mean speed,
// Weibull k, Iref, wake decay) from DefaultConfig. Zero stays zero for the
// others: direction 0 is a northerly, 0 °C a cold site.
func (c *Config) Default() {
	d := DefaultConfig()
	c.MeanSpeed = cmp.Or(c.MeanSpeed, d.MeanSpeed)
	c.WeibullK = cmp.Or(c.WeibullK, d.WeibullK)
	c.Iref = cmp.Or(c.Iref, d.Iref)
	c.WakeDecay = cmp.Or(c.WakeDecay, d.WakeDecay)
}

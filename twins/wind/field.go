// Package wind simulates the wind field over a farm: Weibull-distributed
// 10-minute means with diurnal variation, IEC 61400-1 turbulence as an
// Ornstein-Uhlenbeck process, extreme operating gusts, a slowly drifting
// direction, ambient weather, and Jensen/Park wakes between turbines.
//
// All randomness comes from one *rand.Rand, so the same seed, configuration
// and sequence of steps give the same series bit for bit.
package wind

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

const (
	// segment is the averaging period of the Weibull-distributed means.
	segment = 10 * time.Minute
	// segmentCorrelation is the correlation of successive 10-minute means
	// (a Gaussian copula), giving weather systems that last hours.
	segmentCorrelation = 0.97
	// lengthScale is the IEC 61400-1 Kaimal longitudinal integral scale
	// 8.1·Λ1 with Λ1 = 42 m (hub above 60 m); the turbulence time constant
	// is lengthScale/V.
	lengthScale = 340.2
	// gustDuration is the IEC extreme operating gust period.
	gustDuration = 10.5
	// Time constants of the slow processes.
	directionTau = 3 * time.Hour
	tempTau      = 6 * time.Hour
	pressureTau  = 12 * time.Hour
	humidityTau  = 6 * time.Hour
)

// Site is a point of the field: a turbine or a met mast.
type Site struct {
	// X and Y are the position in metres east and north of the farm origin.
	X, Y float64
	// Rotor is the rotor diameter in metres (0 for a met mast, which casts no wake).
	Rotor float64
}

// Sample is the wind at a site at hub height.
type Sample struct {
	// Speed is the horizontal wind speed (m/s).
	Speed float64
	// Direction is where the wind comes from (degrees from north, 0–360).
	Direction float64
}

// Ambient is the weather at the site.
type Ambient struct {
	// Temp is the air temperature (°C).
	Temp float64
	// Pressure is the air pressure (hPa).
	Pressure float64
	// Humidity is the relative humidity (%).
	Humidity float64
}

// Field is the wind field of one farm. It is not safe for concurrent use; the
// farm steps it from one goroutine.
type Field struct {
	cfg   Config
	rng   *rand.Rand
	sites []Site
	scale float64 // Weibull scale c

	now        time.Time
	segStart   time.Time
	z          float64 // copula state of the 10-minute means
	prev, next float64 // 10-minute means around now
	mean       float64 // current mean speed with diurnal variation
	dirDrift   float64 // normalised OU of the direction drift
	dir        float64

	turb    []float64 // normalised OU of the longitudinal turbulence per site
	dirTurb []float64 // normalised OU of the direction turbulence per site
	free    []Sample

	gusting bool
	gustAt  time.Time
	gustAmp float64

	temp, pres, hum float64 // normalised OU of the weather
	amb             Ambient
}

// New returns a field for the sites, at sim time start, drawing from rng.
func New(cfg Config, sites []Site, start time.Time, rng *rand.Rand) (*Field, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(sites) == 0 {
		return nil, ErrNoSites
	}
	for i, s := range sites {
		if s.Rotor < 0 {
			return nil, fmt.Errorf("%w: site %d", ErrSiteRotors, i)
		}
	}
	f := &Field{
		cfg:      cfg,
		rng:      rng,
		sites:    sites,
		scale:    cfg.MeanSpeed / math.Gamma(1+1/cfg.WeibullK),
		now:      start,
		segStart: start.Truncate(segment),
		turb:     make([]float64, len(sites)),
		dirTurb:  make([]float64, len(sites)),
		free:     make([]Sample, len(sites)),
	}
	// Start every process in its stationary distribution.
	f.z = rng.NormFloat64()
	f.prev = f.weibull(f.z)
	f.advanceSegment()
	f.dirDrift = rng.NormFloat64()
	for i := range sites {
		f.turb[i] = rng.NormFloat64()
		f.dirTurb[i] = rng.NormFloat64()
	}
	f.temp, f.pres, f.hum = rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()
	f.Step(0)
	return f, nil
}

// weibull maps a standard normal z to a Weibull(k, c) quantile.
func (f *Field) weibull(z float64) float64 {
	// survival = 1 − Φ(z), computed without cancellation for large z
	survival := 0.5 * math.Erfc(z/math.Sqrt2)
	return f.scale * math.Pow(-math.Log(survival), 1/f.cfg.WeibullK)
}

func (f *Field) advanceSegment() {
	f.z = segmentCorrelation*f.z + math.Sqrt(1-segmentCorrelation*segmentCorrelation)*f.rng.NormFloat64()
	f.next = f.weibull(f.z)
}

// ou advances a normalised Ornstein-Uhlenbeck state by s seconds with time constant tau.
func (f *Field) ou(x, s, tau float64) float64 {
	a := math.Exp(-s / tau)
	return a*x + math.Sqrt(1-a*a)*f.rng.NormFloat64()
}

// Step advances the field by dt.
func (f *Field) Step(dt time.Duration) {
	s := dt.Seconds()
	f.now = f.now.Add(dt)
	for !f.now.Before(f.segStart.Add(segment)) {
		f.segStart = f.segStart.Add(segment)
		f.prev = f.next
		f.advanceSegment()
	}
	frac := float64(f.now.Sub(f.segStart)) / float64(segment)
	daily := math.Cos(2 * math.Pi * (hourOfDay(f.now) - 15) / 24)
	f.mean = (f.prev + (f.next-f.prev)*frac) * (1 + f.cfg.DiurnalAmplitude*daily)

	f.dirDrift = f.ou(f.dirDrift, s, directionTau.Seconds())
	f.dir = normDeg(f.cfg.Direction + f.cfg.DirectionSpread*f.dirDrift)

	v := math.Max(f.mean, 1)
	sigma := f.cfg.Iref * (0.75*f.mean + 5.6) // IEC 61400-1 normal turbulence model
	a := math.Exp(-s * v / lengthScale)
	b := math.Sqrt(1 - a*a)
	// direction turbulence: σ_v = 0.8·σ_u (IEC Kaimal), as an angle
	dirSigma := math.Min(30, 0.8*sigma/v*180/math.Pi)

	if f.gusting && f.now.Sub(f.gustAt).Seconds() > gustDuration+f.farmDepth()/v {
		f.gusting = false
	}
	if !f.gusting && f.cfg.GustsPerDay > 0 && f.rng.Float64() < f.cfg.GustsPerDay*s/86400 {
		f.gusting, f.gustAt = true, f.now
		f.gustAmp = sigma * (2 + 1.3*f.rng.Float64()) // up to the IEC EOG's 3.3σ
	}
	ux, uy := flow(f.dir)
	front := math.Inf(1)
	if f.gusting {
		for _, st := range f.sites {
			front = math.Min(front, st.X*ux+st.Y*uy)
		}
	}
	for i, st := range f.sites {
		f.turb[i] = a*f.turb[i] + b*f.rng.NormFloat64()
		f.dirTurb[i] = a*f.dirTurb[i] + b*f.rng.NormFloat64()
		speed := f.mean + sigma*f.turb[i]
		if f.gusting {
			// the gust front reaches each site after travelling downstream at the mean speed
			t := f.now.Sub(f.gustAt).Seconds() - (st.X*ux+st.Y*uy-front)/v
			speed += eog(f.gustAmp, t)
		}
		f.free[i] = Sample{Speed: math.Max(0, speed), Direction: normDeg(f.dir + dirSigma*f.dirTurb[i])}
	}

	f.temp = f.ou(f.temp, s, tempTau.Seconds())
	f.pres = f.ou(f.pres, s, pressureTau.Seconds())
	f.hum = f.ou(f.hum, s, humidityTau.Seconds())
	f.amb = Ambient{
		Temp:     f.cfg.AmbientTemp + f.cfg.AmbientSwing*daily + 1.5*f.temp,
		Pressure: 1013.25 + 6*f.pres,
		Humidity: math.Max(5, math.Min(100, 75-15*daily+10*f.hum)),
	}
}

// farmDepth is the extent of the farm along the flow, for the gust's travel time.
func (f *Field) farmDepth() float64 {
	ux, uy := flow(f.dir)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, st := range f.sites {
		p := st.X*ux + st.Y*uy
		lo, hi = math.Min(lo, p), math.Max(hi, p)
	}
	return hi - lo
}

// eog is the IEC 61400-1 extreme operating gust shape at t seconds into the
// gust: a dip, a rise of 0.74·amplitude at mid-gust, and a dip.
func eog(amplitude, t float64) float64 {
	if t < 0 || t > gustDuration {
		return 0
	}
	return -0.37 * amplitude * math.Sin(3*math.Pi*t/gustDuration) * (1 - math.Cos(2*math.Pi*t/gustDuration))
}

// flow is the unit vector (east, north) the air moves along for a wind from dir degrees.
func flow(dir float64) (float64, float64) {
	r := dir * math.Pi / 180
	return -math.Sin(r), -math.Cos(r)
}

func hourOfDay(t time.Time) float64 {
	h, m, s := t.UTC().Clock()
	return float64(h) + float64(m)/60 + float64(s)/3600
}

func normDeg(d float64) float64 {
	d = math.Mod(d, 360)
	if d < 0 {
		d += 360
	}
	return d
}

// Deficit is the Jensen/Park fractional velocity deficit x metres behind a
// rotor of diameter d with thrust coefficient ct and wake decay k:
// (1 − √(1 − Ct))·(D/(D + 2kx))².
func Deficit(ct, d, x, k float64) float64 {
	ct = math.Max(0, math.Min(1, ct))
	r := d / (d + 2*k*x)
	return (1 - math.Sqrt(1-ct)) * r * r
}

// Free returns the undisturbed wind at site i.
func (f *Field) Free(i int) Sample { return f.free[i] }

// Waked returns the wind at site i behind the other sites' rotors, whose
// thrust coefficients are ct (same indexes as the sites; 0 for none). A site
// is waked by a rotor only when it lies inside that rotor's wake cone
// (radius D/2 + kx) for the current mean direction; deficits of several
// wakes combine as the root of the sum of squares.
func (f *Field) Waked(i int, ct []float64) Sample {
	ux, uy := flow(f.dir)
	k := f.cfg.WakeDecay
	si := f.sites[i]
	var sum float64
	for j, sj := range f.sites {
		if j == i || sj.Rotor <= 0 || ct[j] <= 0 {
			continue
		}
		dx, dy := si.X-sj.X, si.Y-sj.Y
		down := dx*ux + dy*uy
		if down <= 0 {
			continue
		}
		if lateral := math.Abs(dx*uy - dy*ux); lateral >= sj.Rotor/2+k*down {
			continue
		}
		d := Deficit(ct[j], sj.Rotor, down, k)
		sum += d * d
	}
	s := f.free[i]
	s.Speed *= math.Max(0, 1-math.Sqrt(sum))
	return s
}

// Ambient returns the current weather.
func (f *Field) Ambient() Ambient { return f.amb }

// Mean returns the current mean wind speed (the interpolated 10-minute mean
// with its diurnal variation, without turbulence or gusts).
func (f *Field) Mean() float64 { return f.mean }

// Now returns the field's sim time.
func (f *Field) Now() time.Time { return f.now }

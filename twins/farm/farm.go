// Package farm steps a wind farm: turbines in rows and a met mast in one wind
// field, all drawing from random streams derived from one seed.
package farm

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"

	"github.com/gale-iot/gale/twins/turbine"
	"github.com/gale-iot/gale/twins/wind"
)

// Farm is a wind farm. Step it from one goroutine; its turbines and mast may be
// read and commanded concurrently.
type Farm struct {
	cfg      Config
	field    *wind.Field
	layout   []wind.Site
	turbines []*turbine.Turbine
	mast     *turbine.MetMast
	ct       []float64
}

// stream returns the random stream called name of the given seed. Every
// source of randomness in the fleet has its own named stream, so adding a
// turbine does not change the others' series.
func stream(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// New builds the farm at sim time start. onEvent receives the turbines' fault
// events (it may be nil).
func New(cfg Config, seed uint64, start time.Time, onEvent func(turbine.Event)) (*Farm, error) {
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	model, _ := turbine.ModelNamed(cfg.TurbineType) // validated above
	f := &Farm{cfg: cfg, layout: Layout(cfg, model.RotorDiameter)}
	field, err := wind.New(cfg.Wind, f.layout, start, stream(seed, "wind/"+cfg.Site))
	if err != nil {
		return nil, err
	}
	f.field = field
	for _, key := range cfg.DeviceKeys() {
		f.turbines = append(f.turbines, turbine.New(turbine.Config{
			ID: key, Site: cfg.Site, Model: model, Start: start,
			Rand: stream(seed, "turbine/"+key), OnEvent: onEvent,
		}))
	}
	if cfg.Mast != "" {
		f.mast = turbine.NewMetMast(turbine.MastConfig{ID: cfg.Mast, Site: cfg.Site, Start: start,
			Rand: stream(seed, "mast/"+cfg.Mast)})
	}
	f.ct = make([]float64, len(f.layout))
	return f, nil
}

// Layout places the turbines of cfg (rotor diameter d) in rows across the
// prevailing wind, row 0 upwind, each row centred on the wind axis; a met
// mast, if any, comes last, 3 D upwind of row 0.
func Layout(cfg Config, d float64) []wind.Site {
	r := cfg.Wind.Direction * math.Pi / 180
	ux, uy := -math.Sin(r), -math.Cos(r) // downwind
	px, py := -uy, ux                    // across the wind
	perRow := (cfg.Count + cfg.Rows - 1) / cfg.Rows
	sites := make([]wind.Site, 0, cfg.Count+1)
	for k := range cfg.Count {
		row, col := k/perRow, k%perRow
		inRow := min(perRow, cfg.Count-row*perRow)
		along := float64(row) * cfg.RowSpacing * d
		across := (float64(col) - float64(inRow-1)/2) * cfg.TurbineSpacing * d
		sites = append(sites, wind.Site{X: along*ux + across*px, Y: along*uy + across*py, Rotor: d})
	}
	if cfg.Mast != "" {
		sites = append(sites, wind.Site{X: -3 * d * ux, Y: -3 * d * uy})
	}
	return sites
}

// Step advances the wind, then every turbine in the wakes the others cast on
// the previous step, then the met mast.
func (f *Farm) Step(dt time.Duration) {
	f.field.Step(dt)
	for i, t := range f.turbines {
		f.ct[i] = t.Thrust()
	}
	amb := f.field.Ambient()
	for i, t := range f.turbines {
		t.Step(dt, f.field.Waked(i, f.ct), amb)
	}
	if f.mast != nil {
		f.mast.Step(dt, f.field.Free(len(f.turbines)), amb)
	}
}

// Site returns the farm's site name.
func (f *Farm) Site() string { return f.cfg.Site }

// Turbines returns the turbines in device key order.
func (f *Farm) Turbines() []*turbine.Turbine { return f.turbines }

// Mast returns the met mast, or nil.
func (f *Farm) Mast() *turbine.MetMast { return f.mast }

// Free returns the undisturbed wind at the i-th turbine.
func (f *Farm) Free(i int) wind.Sample { return f.field.Free(i) }

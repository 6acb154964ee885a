package turbine

import (
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gale-iot/gale/twins/wind"
)

// MastConfig configures a met mast.
type MastConfig struct {
	// ID is the device key (e.g. MM01).
	ID string
	// Site is the farm the mast belongs to.
	Site string
	// Start is the sim time before the first Step.
	Start time.Time
	// Rand is the mast's own random stream (sensor noise); required.
	Rand *rand.Rand
}

// MetMast is a meteorological mast measuring the free wind and the weather
// with WMET points. It is safe for concurrent use.
type MetMast struct {
	mu     sync.Mutex
	cfg    MastConfig
	now    time.Time
	points map[string]float64
}

// NewMetMast returns a met mast.
func NewMetMast(cfg MastConfig) *MetMast {
	return &MetMast{cfg: cfg, now: cfg.Start, points: map[string]float64{}}
}

// ID returns the device key.
func (m *MetMast) ID() string { return m.cfg.ID }

// Site returns the farm's site name.
func (m *MetMast) Site() string { return m.cfg.Site }

// Step advances the mast by dt with the free wind w and the weather a.
func (m *MetMast) Step(dt time.Duration, w wind.Sample, a wind.Ambient) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(dt)
	r := m.cfg.Rand
	m.points[PointMetWdSpd] = math.Max(0, w.Speed+0.05*r.NormFloat64())
	m.points[PointMetWdDir] = math.Mod(w.Direction+0.5*r.NormFloat64()+360, 360)
	m.points[PointMetTmp] = a.Temp + 0.05*r.NormFloat64()
	m.points[PointMetPres] = a.Pressure + 0.05*r.NormFloat64()
	m.points[PointMetHum] = math.Max(0, math.Min(100, a.Humidity+0.3*r.NormFloat64()))
}

// Points returns the mast's WMET points.
func (m *MetMast) Points() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.points)
}

// PointsTime returns the sim time of the values Points returns.
func (m *MetMast) PointsTime() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Online reports true: the mast has no injectable faults.
func (m *MetMast) Online() bool { return true }

// WritePoint refuses every write: a mast has no setpoints.
func (m *MetMast) WritePoint(point string, _ float64) error { return ErrReadOnly }

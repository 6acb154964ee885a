package farm

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/twins/turbine"
	"github.com/gale-iot/gale/twins/wind"
)

var t0 = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func TestConfigValidate(t *testing.T) {
	tests := []testkit.Edit[Config]{
		testkit.Case("default", func(*Config) {}, nil),
		testkit.Case("no site", func(c *Config) { c.Site = "" }, ErrSite),
		testkit.Case("no turbines", func(c *Config) { c.Count = 0 }, ErrCount),
		testkit.Case("too many rows", func(c *Config) { c.Rows = 21 }, ErrRows),
		testkit.Case("tight rows", func(c *Config) { c.RowSpacing = 1 }, ErrSpacing),
		testkit.Case("tight turbines", func(c *Config) { c.TurbineSpacing = 1.5 }, ErrSpacing),
		testkit.Case("bad prefix", func(c *Config) { c.Prefix = "W T" }, ErrPrefix),
		testkit.Case("bad mast", func(c *Config) { c.Mast = "M/1" }, ErrMast),
		testkit.Case("unknown type", func(c *Config) { c.TurbineType = "v90" }, turbine.ErrUnknownModel),
		testkit.Case("bad wind", func(c *Config) { c.Wind.Iref = 1 }, wind.ErrIref),
	}
	testkit.Edits(t, DefaultConfig, (*Config).Validate, tests)
}

func TestDefaultsAndKeys(t *testing.T) {
	c := Config{Site: "s", Count: 3}
	c.Default()
	require.NoError(t, c.Validate())
	require.Equal(t, []string{"WT01", "WT02", "WT03"}, c.DeviceKeys())
	require.Equal(t, "nrel-5mw", c.TurbineType)
	require.Equal(t, 0.14, c.Wind.Iref)
	c.Count, c.Prefix = 120, "T"
	keys := c.DeviceKeys()
	require.Equal(t, "T001", keys[0])
	require.Equal(t, "T120", keys[119])
}

func TestLayout(t *testing.T) {
	c := DefaultConfig()
	c.Count, c.Rows, c.Wind.Direction = 5, 2, 270 // westerly: rows run north-south
	sites := Layout(c, 100)
	require.Len(t, sites, 6)
	// row 0: three turbines at x=0, 400 m apart; row 1: two turbines 700 m downwind (east)
	for i, want := range [][2]float64{{0, -400}, {0, 0}, {0, 400}, {700, -200}, {700, 200}, {-300, 0}} {
		require.InDelta(t, want[0], sites[i].X, 1e-9, "site %d x", i)
		require.InDelta(t, want[1], sites[i].Y, 1e-9, "site %d y", i)
	}
	require.Zero(t, sites[5].Rotor, "the mast casts no wake")
}

func newFarm(tb testing.TB, c Config, seed uint64) *Farm {
	tb.Helper()
	f, err := New(c, seed, t0, nil)
	require.NoError(tb, err)
	return f
}

func TestDownstreamRowProducesLess(t *testing.T) {
	c := DefaultConfig()
	c.Count, c.Rows = 10, 2
	c.Wind.Direction, c.Wind.DirectionSpread, c.Wind.MeanSpeed = 270, 0, 8
	c.Wind.DiurnalAmplitude = 0
	f := newFarm(t, c, 11)
	var power, free [2]float64
	const steps = 3 * 3600
	for range steps {
		f.Step(time.Second)
		for i, tb := range f.Turbines() {
			power[i/5] += tb.Points()[turbine.PointW]
			free[i/5] += f.Free(i).Speed
		}
	}
	require.InEpsilon(t, free[0], free[1], 0.03, "both rows see the same free wind")
	t.Logf("row 0: %.0f kW, row 1: %.0f kW mean", power[0]/5/steps, power[1]/5/steps)
	require.Less(t, power[1], 0.9*power[0], "the downstream row sits in the wakes")

}

func TestFarmPowerLimits(t *testing.T) {
	c := DefaultConfig()
	c.Wind.MeanSpeed = 11
	f := newFarm(t, c, 5)
	limits := map[string]float64{}
	for i, tb := range f.Turbines() {
		if i%3 == 0 {
			limits[tb.ID()] = float64(i) * 200
			require.NoError(t, tb.SetPowerLimit(limits[tb.ID()]))
		}
	}
	for range 2 * 3600 {
		f.Step(time.Second)
		for _, tb := range f.Turbines() {
			p := tb.Points()
			require.LessOrEqual(t, p[turbine.PointW], 5000.0)
			if l, ok := limits[tb.ID()]; ok {
				require.LessOrEqual(t, p[turbine.PointW], l)
			}
		}
	}
	require.NotNil(t, f.Mast())
	require.Len(t, f.Mast().Points(), 5)
}

// runHash runs a 20-turbine farm for d of sim time and hashes every point of
// every device at every step.
func runHash(tb testing.TB, seed uint64, d time.Duration) [32]byte {
	f := newFarm(tb, DefaultConfig(), seed)
	h := sha256.New()
	var buf [8]byte
	var names []string
	for range int(d / time.Second) {
		f.Step(time.Second)
		for _, t := range f.Turbines() {
			p := t.Points()
			if names == nil {
				for n := range p {
					names = append(names, n)
				}
				slices.Sort(names)
			}
			for _, n := range names {
				binary.LittleEndian.PutUint64(buf[:], math.Float64bits(p[n]))
				h.Write(buf[:])
			}
		}
	}
	return [32]byte(h.Sum(nil))
}

func TestSameSeedSameSeries(t *testing.T) {
	a := runHash(t, 42, 2*time.Hour)
	require.Equal(t, a, runHash(t, 42, 2*time.Hour), "same seed: identical series")
	require.NotEqual(t, a, runHash(t, 43, 2*time.Hour), "different seed: different series")
}

func TestEventsReachTheCallback(t *testing.T) {
	var got []turbine.Event
	f, err := New(DefaultConfig(), 1, t0, func(e turbine.Event) { got = append(got, e) })
	require.NoError(t, err)
	require.NoError(t, f.Turbines()[3].Inject(turbine.FaultGridLoss))
	f.Step(time.Second)
	require.Len(t, got, 1)
	require.Equal(t, "WT04", got[0].Device)
	require.Equal(t, turbine.CodeGridLoss, got[0].Code)
	require.Equal(t, t0.Add(time.Second), got[0].Time)
}

// BenchmarkFarmDay steps a 20-turbine farm with met mast through 24 hours of
// sim time in 1 s steps.
func BenchmarkFarmDay(b *testing.B) {
	for b.Loop() {
		f := newFarm(b, DefaultConfig(), 1)
		for range 86400 {
			f.Step(time.Second)
		}
	}
	b.ReportMetric(float64(b.N)*86400*20/b.Elapsed().Seconds(), "turbine-steps/s")
}

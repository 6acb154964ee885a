package wind

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newField(tb testing.TB, cfg Config, sites []Site, seed uint64) *Field {
	tb.Helper()
	f, err := New(cfg, sites, t0, rand.New(rand.NewPCG(seed, 1)))
	require.NoError(tb, err)
	return f
}

func TestConfigValidate(t *testing.T) {
	tests := []testkit.Edit[Config]{
		testkit.Case("default", func(*Config) {}, nil),
		testkit.Case("zero mean", func(c *Config) { c.MeanSpeed = 0 }, ErrMeanSpeed),
		testkit.Case("k", func(c *Config) { c.WeibullK = 0.5 }, ErrWeibullK),
		testkit.Case("iref", func(c *Config) { c.Iref = 0.5 }, ErrIref),
		testkit.Case("direction 360", func(c *Config) { c.Direction = 360 }, ErrDirection),
		testkit.Case("spread", func(c *Config) { c.DirectionSpread = -1 }, ErrSpread),
		testkit.Case("diurnal", func(c *Config) { c.DiurnalAmplitude = 0.9 }, ErrDiurnal),
		testkit.Case("gusts", func(c *Config) { c.GustsPerDay = -1 }, ErrGusts),
		testkit.Case("wake", func(c *Config) { c.WakeDecay = 0 }, ErrWakeDecay),
		testkit.Case("ambient", func(c *Config) { c.AmbientTemp = 80 }, ErrAmbient),
		testkit.Case("NaN mean", func(c *Config) { c.MeanSpeed = math.NaN() }, ErrMeanSpeed),
	}
	testkit.Edits(t, DefaultConfig, (*Config).Validate, tests)
	_, err := New(DefaultConfig(), nil, t0, rand.New(rand.NewPCG(1, 1)))
	require.ErrorIs(t, err, ErrNoSites)
}

func TestDeficit(t *testing.T) {
	tests := []struct {
		ct, d, x, k, want float64
	}{
		{0.81, 126, 0, 0.075, 1 - math.Sqrt(0.19)},
		{0.81, 126, 7 * 126, 0.075, (1 - math.Sqrt(0.19)) * math.Pow(126/(126+2*0.075*7*126), 2)},
		{0, 126, 500, 0.075, 0},
		{1, 100, 0, 0.075, 1},
		{1.5, 100, 0, 0.075, 1}, // thrust above 1 is clipped
	}
	for _, tt := range tests {
		require.InDelta(t, tt.want, Deficit(tt.ct, tt.d, tt.x, tt.k), 1e-12)
	}
}

func TestWakes(t *testing.T) {
	const d = 126.0
	cfg := DefaultConfig()
	cfg.DirectionSpread = 0
	cfg.GustsPerDay = 0
	// three turbines in a west-east line 7 D apart, and one 7 D north of the first
	sites := []Site{{0, 0, d}, {7 * d, 0, d}, {14 * d, 0, d}, {0, 7 * d, d}}
	ct := []float64{0.8, 0.8, 0.8, 0.8}
	k := cfg.WakeDecay
	one := Deficit(0.8, d, 7*d, k)
	two := math.Sqrt(math.Pow(Deficit(0.8, d, 14*d, k), 2) + one*one)
	tests := []struct {
		name string
		dir  float64
		want []float64 // speed ratios waked/free
	}{
		{"westerly: row waked in turn", 270, []float64{1, 1 - one, 1 - two, 1}},
		{"easterly: the other way round", 90, []float64{1 - two, 1 - one, 1, 1}},
		{"northerly: only the first behind the north one", 0, []float64{1 - one, 1, 1, 1}},
		{"45 degrees: outside every cone", 225, []float64{1, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg.Direction = tt.dir
			f := newField(t, cfg, sites, 7)
			for i, want := range tt.want {
				require.InDelta(t, want*f.Free(i).Speed, f.Waked(i, ct).Speed, 1e-9, "site %d", i)
			}
		})
	}
	// a stopped rotor (ct 0) casts no wake, and a mast (rotor 0) never does
	cfg.Direction = 270
	f := newField(t, cfg, []Site{{0, 0, 0}, {7 * d, 0, d}}, 7)
	require.Equal(t, f.Free(1).Speed, f.Waked(1, []float64{0.8, 0.8}).Speed)
	f = newField(t, cfg, sites, 7)
	require.Equal(t, f.Free(1).Speed, f.Waked(1, []float64{0, 0.8, 0.8, 0.8}).Speed)
}

func TestWeibullMeansAndTurbulence(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DiurnalAmplitude = 0
	cfg.GustsPerDay = 0
	f := newField(t, cfg, []Site{{0, 0, 126}}, 42)

	// 10-minute means over a simulated year
	var sum float64
	below := 0
	const n = 365 * 144
	for range n {
		f.Step(10 * time.Minute)
		sum += f.Mean()
		if f.Mean() < cfg.MeanSpeed {
			below++
		}
	}
	require.InEpsilon(t, cfg.MeanSpeed, sum/n, 0.1, "long-term mean")
	// Weibull k=2: P(V < mean) = 1 − exp(−(mean/c)²) = 1 − exp(−π/4) ≈ 0.544
	require.InDelta(t, 1-math.Exp(-math.Pi/4), float64(below)/n, 0.06)

	// 1 s turbulence over a day: (V − mean)/σ(mean) has unit variance
	var sq float64
	const m = 86400
	for range m {
		f.Step(time.Second)
		sigma := cfg.Iref * (0.75*f.Mean() + 5.6)
		x := (f.Free(0).Speed - f.Mean()) / sigma
		sq += x * x
	}
	require.InDelta(t, 1, math.Sqrt(sq/m), 0.15, "turbulence intensity follows IEC 61400-1")
}

func TestGustsAndWeatherRanges(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GustsPerDay = 500
	f := newField(t, cfg, []Site{{0, 0, 126}, {100, 0, 126}}, 3)
	gusts := 0
	for range 86400 {
		f.Step(time.Second)
		if f.gusting && f.gustAt.Equal(f.Now()) {
			gusts++
		}
		a := f.Ambient()
		require.True(t, a.Humidity >= 5 && a.Humidity <= 100)
		require.InDelta(t, 1013, a.Pressure, 60)
		require.InDelta(t, cfg.AmbientTemp, a.Temp, 20)
		for i := range 2 {
			s := f.Free(i)
			require.GreaterOrEqual(t, s.Speed, 0.0)
			require.True(t, s.Direction >= 0 && s.Direction < 360)
		}
	}
	require.InDelta(t, 450, gusts, 100, "a gust blocks new ones while it crosses the farm")
}

func hashRun(tb testing.TB, seed uint64, steps int) [32]byte {
	cfg := DefaultConfig()
	f := newField(tb, cfg, []Site{{0, 0, 126}, {882, 0, 126}, {0, 500, 0}}, seed)
	h := sha256.New()
	ct := []float64{0.8, 0.8, 0}
	var buf [8]byte
	for range steps {
		f.Step(time.Second)
		for i := range 3 {
			s := f.Waked(i, ct)
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(s.Speed))
			h.Write(buf[:])
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(s.Direction))
			h.Write(buf[:])
		}
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(f.Ambient().Temp))
		h.Write(buf[:])
	}
	return [32]byte(h.Sum(nil))
}

func TestDeterminism(t *testing.T) {
	a := hashRun(t, 1, 20000)
	require.Equal(t, a, hashRun(t, 1, 20000), "same seed, same series")
	require.NotEqual(t, a, hashRun(t, 2, 20000), "different seed, different series")
}

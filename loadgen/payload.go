package loadgen

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// payload builds one device's thing.measurepoint.post requests: Seq plus
// points P0..P{n-1}, valued by the profile. Not safe for concurrent use.
type payload struct {
	points  int
	turbine *turbine // nil: synthetic values
}

func newPayload(cfg Config, device int) *payload {
	p := &payload{points: cfg.Points}
	if cfg.Profile == ProfileTurbine {
		p.turbine = newTurbine(rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(device))))
	}
	return p
}

// build returns the request for message seq measured at ts (Unix ms).
// Each message gets its own buffer: the MQTT client keeps it until acknowledged.
func (p *payload) build(seq, ts int64) []byte {
	b := make([]byte, 0, 96+p.points*12)
	b = append(b, `{"id":"`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"`+SeqPoint+`":`...)
	b = strconv.AppendInt(b, seq, 10)
	if p.turbine != nil {
		p.turbine.step()
	}
	for j := range p.points {
		b = append(b, `,"P`...)
		b = strconv.AppendInt(b, int64(j), 10)
		b = append(b, `":`...)
		if p.turbine != nil {
			v, prec := p.turbine.value(j)
			b = strconv.AppendFloat(b, v, 'f', prec, 64)
		} else {
			b = strconv.AppendInt(b, seq%1000+int64(j), 10)
		}
	}
	b = append(b, `},"time":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, `}}`...)
}

// turbine is a rough 5 MW turbine (NREL-like power curve) driven by a
// mean-reverting random wind, enough for realistic value shapes and digits.
type turbine struct {
	rng                 *rand.Rand
	wind, dir, oil, gen float64
	power, rotor, pitch float64
}

func newTurbine(rng *rand.Rand) *turbine {
	t := &turbine{rng: rng, wind: 4 + 8*rng.Float64(), dir: 360 * rng.Float64(), oil: 50, gen: 60}
	t.step()
	return t
}

const (
	cutIn, rated, cutOut = 3.0, 11.4, 25.0 // m/s
	ratedPower           = 5000.0          // kW
	ratedRotor           = 12.1            // rpm
)

func (t *turbine) step() {
	t.wind += 0.05*(8-t.wind) + 0.4*t.rng.NormFloat64()
	t.wind = math.Max(0, t.wind)
	t.dir = math.Mod(t.dir+2*t.rng.NormFloat64()+360, 360)
	switch {
	case t.wind < cutIn || t.wind > cutOut:
		t.power, t.rotor, t.pitch = 0, 0, 90
	case t.wind < rated:
		f := (math.Pow(t.wind, 3) - math.Pow(cutIn, 3)) / (math.Pow(rated, 3) - math.Pow(cutIn, 3))
		t.power = ratedPower * f * (1 + 0.01*t.rng.NormFloat64())
		t.rotor = 6.9 + (ratedRotor-6.9)*(t.wind-cutIn)/(rated-cutIn)
		t.pitch = 0
	default:
		t.power = ratedPower * (1 + 0.005*t.rng.NormFloat64())
		t.rotor = ratedRotor
		t.pitch = 2.5 * (t.wind - rated)
	}
	load := t.power / ratedPower
	t.oil += 0.02 * (45 + 20*load - t.oil)
	t.gen += 0.02 * (50 + 40*load - t.gen)
}

// value returns point j's value and its decimals.
func (t *turbine) value(j int) (float64, int) {
	switch j % 8 {
	case 0:
		return t.power, 1
	case 1:
		return t.wind, 2
	case 2:
		return t.rotor, 2
	case 3:
		return t.pitch, 2
	case 4:
		return t.oil + 0.05*t.rng.NormFloat64(), 2
	case 5:
		return t.gen + 0.05*t.rng.NormFloat64(), 2
	case 6:
		return t.dir, 1
	default:
		return 50 + 0.02*t.rng.NormFloat64(), 3
	}
}

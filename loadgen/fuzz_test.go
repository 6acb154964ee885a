package loadgen

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gale-iot/gale/platform/api"
)

// FuzzParseSLO parses arbitrary SLO expressions: an error wrapping ErrSLO,
// or clauses of a known metric, a known operator and a number, which parse
// again to the same SLO from their text and evaluate against any report.
func FuzzParseSLO(f *testing.F) {
	for _, s := range []string{
		"p99_e2e<250ms,loss=0,errors=0", "loss=0,errors=0", "p99_e2e<250ms,loss=0,rate>=9500,errors=0",
		" p50_puback <= 1.5s , rate >= 9500, errors==0, max_connect>2, p999_send_lag<300us",
		"p99_e2e", "<5", "loss=", "loss=0,", "rate>=NaN", "max_ack_gap<1e309", "p90_reconnect=>5s", "p99_e2e<<5",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		slo, err := ParseSLO(expr)
		if err != nil {
			if !errors.Is(err, ErrSLO) {
				t.Fatalf("%q: %v does not wrap ErrSLO", expr, err)
			}
			return
		}
		texts := make([]string, len(slo))
		for i, c := range slo {
			if !slices.Contains([]string{"<", "<=", ">", ">=", "="}, c.Op) {
				t.Fatalf("%q: operator %q", c.Text, c.Op)
			}
			if _, _, lat := latencyMetric(c.Metric); !lat && !slices.Contains([]string{"loss", "duplicates", "errors", "rate"}, c.Metric) {
				t.Fatalf("%q: metric %q", c.Text, c.Metric)
			}
			if math.IsNaN(c.Value) {
				t.Fatalf("%q: NaN, which no measurement meets", c.Text)
			}
			texts[i] = c.Text
		}
		again, err := ParseSLO(strings.Join(texts, ","))
		if err != nil || !slices.Equal(again, slo) {
			t.Fatalf("%q parses to %v, its clauses to %v (%v)", expr, slo, again, err)
		}
		r := &Report{Latency: map[string]Latency{"e2e": {Count: 1, P99: 100, Max: 200}}, Errors: map[string]int64{"x": 1}}
		if res := slo.Evaluate(r); len(res) != len(slo) {
			t.Fatalf("%d results for %d clauses", len(res), len(slo))
		}
	})
}

// FuzzParseIdentities reads arbitrary devices files: an error wrapping
// ErrDevicesFile, or devices with a product key, device key and secret,
// each listed once and valid UTF-8, that read back the same from a JSON array.
func FuzzParseIdentities(f *testing.F) {
	for _, s := range []string{
		"pk,d1,s1\npk,d2,s2\n", "productKey,deviceKey,secret\n# two devices\npk, d1, s1\npk,d2,s2\n",
		`[{"productKey":"pk","deviceKey":"d1","secret":"s1"},{"productKey":"pk","deviceKey":"d2","secret":"s2","site":"x"}]`,
		"pk,d1\n", "pk,d1,\n", "pk,d1,s1\npk,d1,s2\n", "\n", `[{"productKey":1}]`, "\"pk\",\"d\"\"1\",s\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := parseIdentities(data, "devices")
		if err != nil {
			if !errors.Is(err, ErrDevicesFile) {
				t.Fatalf("%v does not wrap ErrDevicesFile", err)
			}
			return
		}
		seen := map[string]bool{}
		devs := make([]api.Device, len(ids))
		for i, id := range ids {
			if id.ProductKey == "" || id.DeviceKey == "" || id.Secret == "" || seen[id.Name()] {
				t.Fatalf("device %d: %+v empty or listed twice", i+1, id)
			}
			if !utf8.ValidString(id.ProductKey) || !utf8.ValidString(id.DeviceKey) || !utf8.ValidString(id.Secret) {
				t.Fatalf("device %d: %q not valid UTF-8", i+1, id)
			}
			seen[id.Name()] = true
			devs[i] = api.Device{ProductKey: id.ProductKey, DeviceKey: id.DeviceKey, Secret: id.Secret}
		}
		b, err := json.Marshal(devs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseIdentities(b, "devices.json")
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("%v written as JSON reads %v (%v)", ids, again, err)
		}
	})
}

// FuzzConfig validates configs with arbitrary rates, counts and phases, as
// the command line sets them: an error wrapping ErrConfig, or finite,
// positive rates whose device timetable yields its first message.
func FuzzConfig(f *testing.F) {
	f.Add(0.0, int64(time.Second), 200.0, 100, 10, int64(60*time.Second), 0, false, 1.25, 0.95)
	f.Add(9500.0, int64(0), 200.0, 1000, 5, int64(0), 10, false, 1.25, 0.95)
	f.Add(math.NaN(), int64(time.Second), math.NaN(), 1, 0, int64(time.Second), 0, true, math.NaN(), math.NaN())
	f.Add(math.Inf(1), int64(1), math.Inf(1), 1_000_000, 10_000, int64(1), 1, true, math.Inf(1), 1.0)
	f.Fuzz(func(t *testing.T, rate float64, interval int64, connectRate float64, devices, points int, duration int64,
		count int, step bool, factor, minRatio float64) {
		c := DefaultConfig()
		c.Token = "t"
		c.Rate, c.Interval, c.ConnectRate, c.Devices, c.Points = rate, time.Duration(interval), connectRate, devices, points
		c.Duration, c.Count = time.Duration(duration), count
		c.Step.Enabled, c.Step.Factor, c.Step.MinRatio = step, factor, minRatio
		if err := c.Validate(); err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("%v does not wrap ErrConfig", err)
			}
			return
		}
		for name, v := range map[string]float64{"rate per device": c.RatePerDevice(), "total rate": c.TotalRate(), "connect rate": c.ConnectRate} {
			if !(v > 0) || math.IsInf(v, 0) {
				t.Fatalf("a valid config has %s %g", name, v)
			}
		}
		if step && (!(c.Step.Factor > 1) || math.IsInf(c.Step.Factor, 0) || !(c.Step.MinRatio > 0)) {
			t.Fatalf("a valid step search has factor %g, min ratio %g", c.Step.Factor, c.Step.MinRatio)
		}
		s := Schedule{Rate: c.RatePerDevice(), RampUp: c.RampUp, Steady: c.Duration, RampDown: c.RampDown, Unbounded: c.Duration == 0}
		if at, ok := s.At(0); !ok || at < 0 {
			t.Fatalf("a valid config's first message is not due: %v %v", at, ok)
		}
	})
}

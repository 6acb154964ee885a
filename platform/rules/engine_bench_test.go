package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkEngine1000Rules10000Devices measures live samples/s through the
// event engine with 1,000 rules (threshold, for-durations, rate, all/any,
// count, nodata) over 10,000 devices of 10 points each: "steady" values stay
// in their normal band (the usual case), "storm" values swing across every
// threshold on every sample (an alert storm: transitions, messages).
func BenchmarkEngine1000Rules10000Devices(b *testing.B) {
	b.Run("steady", func(b *testing.B) { benchEngine(b, func(i, j int) float64 { return float64(20 + (i+j)%10) }) })
	b.Run("storm", func(b *testing.B) { benchEngine(b, func(i, j int) float64 { return float64((i*7 + j*13) % 100) }) })
}

func benchEngine(b *testing.B, value func(round, sample int) float64) {
	const devices, points, rules = 10_000, 10, 1_000
	var y strings.Builder
	y.WriteString("rules:\n")
	types := []string{
		"type: threshold\n    point: P%d\n    above: %d",
		"type: threshold\n    point: P%d\n    below: %d\n    for: 30s",
		"type: rate\n    point: P%d\n    above: %d",
		"type: all\n    conditions:\n      - {point: P%d, above: %d}\n      - {point: P0, below: 50}",
		"type: count\n    conditions:\n      - {point: P%d, above: %d}\n    atLeast: 3",
		"type: nodata\n    point: P%d\n    after: %ds",
	}
	for i := range rules {
		fmt.Fprintf(&y, "  - name: r%d\n    %s\n", i, fmt.Sprintf(types[i%len(types)], i%points, 60+i%40))
	}
	rs, err := Parse("bench.yaml", []byte(y.String()))
	require.NoError(b, err)
	e := NewEngine(rs, nil)
	base := time.Now().UnixMilli()
	samples := make([]Sample, 0, devices*points)
	for d := range devices {
		for p := range points {
			samples = append(samples, Sample{Org: "o", Product: "wind-turbine", Device: fmt.Sprintf("WT%05d", d),
				Site: fmt.Sprintf("site%d", d%50), Point: fmt.Sprintf("P%d", p)})
		}
	}
	b.ResetTimer()
	n := 0
	start := time.Now()
	for i := range b.N {
		for j := range samples {
			s := &samples[j]
			s.Time = base + int64(i)*1000
			s.Value = value(i, j)
			e.Observe(*s)
			n++
		}
		e.Advance(0)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "samples/s")
}

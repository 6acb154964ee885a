package loadgen

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

func TestParseSLO(t *testing.T) {
	testkit.Parses(t, ParseSLO, ErrSLO, []testkit.Parse[SLO]{
		{In: "", Want: nil},
		{In: "p99_e2e<250ms,loss=0", Want: SLO{
			{Text: "p99_e2e<250ms", Metric: "p99_e2e", Op: "<", Value: 250},
			{Text: "loss=0", Metric: "loss", Op: "=", Value: 0},
		}},
		{In: " p50_puback <= 1.5s , rate >= 9500, errors==0, max_connect>2, p999_send_lag<300us", Want: SLO{
			{Text: "p50_puback <= 1.5s", Metric: "p50_puback", Op: "<=", Value: 1500},
			{Text: "rate >= 9500", Metric: "rate", Op: ">=", Value: 9500},
			{Text: "errors==0", Metric: "errors", Op: "=", Value: 0},
			{Text: "max_connect>2", Metric: "max_connect", Op: ">", Value: 2},
			{Text: "p999_send_lag<300us", Metric: "p999_send_lag", Op: "<", Value: 0.3},
		}},
		{In: "p99_e2e", Bad: true},
		{In: "<5", Bad: true},
		{In: "p98_e2e<5ms", Bad: true},
		{In: "p99_alert<5ms", Bad: true},
		{In: "p99_e2e<fast", Bad: true},
		{In: "loss=none", Bad: true},
		{In: "loss=", Bad: true},
		{In: "throughput>5", Bad: true},
		{In: "loss=0,", Bad: true},
	})
}

func TestSLOEvaluate(t *testing.T) {
	rep := &Report{
		Latency: map[string]Latency{
			"puback": {Count: 10, P50: 2, P90: 4, P99: 8, P999: 9, Max: 12},
			"e2e":    {Count: 5, P50: 40, P99: 300},
		},
		Rate:   RateReport{Achieved: 9990},
		Errors: map[string]int64{"publish_timeout": 2, "connect_refused": 1},
		Ledger: LedgerReport{Checked: true, Missing: 1, WrongValue: 1, Duplicates: 0},
	}
	unchecked := &Report{Latency: map[string]Latency{}}
	steps := &Report{Steps: []StepReport{{Pass: true}}, MaxSustainedRate: 12000, Rate: RateReport{Achieved: 1}}
	for _, c := range []struct {
		expr     string
		rep      *Report
		pass     bool
		measured bool
		value    float64
	}{
		{"p99_puback<10ms", rep, true, true, 8},
		{"p99_puback<8ms", rep, false, true, 8},
		{"p99_puback<=8", rep, true, true, 8},
		{"max_puback>=12ms", rep, true, true, 12},
		{"p99_e2e<250ms", rep, false, true, 300},
		{"p50_e2e<250ms", rep, true, true, 40},
		{"p99_connect<1s", rep, false, false, 0},
		{"loss=0", rep, false, true, 2},
		{"loss<=2", rep, true, true, 2},
		{"duplicates=0", rep, true, true, 0},
		{"errors=0", rep, false, true, 3},
		{"rate>=9500", rep, true, true, 9990},
		{"rate>10000", rep, false, true, 9990},
		{"loss=0", unchecked, false, false, 0},
		{"p99_e2e<1s", unchecked, false, false, 0},
		{"errors=0", unchecked, true, true, 0},
		{"rate>=10000", steps, true, true, 12000},
	} {
		t.Run(c.expr, func(t *testing.T) {
			slo, err := ParseSLO(c.expr)
			require.NoError(t, err)
			res := slo.Evaluate(c.rep)
			require.Len(t, res, 1)
			require.Equal(t, c.pass, res[0].Pass, "%s", res[0])
			require.Equal(t, c.measured, res[0].Measured)
			require.Equal(t, c.value, res[0].Value)
		})
	}
}

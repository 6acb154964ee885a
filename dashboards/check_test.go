package dashboards

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestVariableValue(t *testing.T) {
	tests := []struct {
		name   string
		v      Variable
		values []string
		want   string
	}{
		{"single takes the first", Variable{}, []string{"WT02", "WT01"}, "WT01"},
		{"multi takes all, escaped for a PromQL regex string", Variable{Multi: true}, []string{"127.0.0.1:8080", "a"}, `(127\\.0\\.0\\.1:8080|a)`},
		{"All with an all value", Variable{IncludeAll: true, AllValue: ".*"}, []string{"a"}, ".*"},
		{"no values", Variable{Multi: true}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, variableValue(tc.v, tc.values))
		})
	}
}

func TestStepFor(t *testing.T) {
	tests := []struct {
		interval string
		span     time.Duration
		want     time.Duration
	}{
		{"", time.Hour, 18 * time.Second},
		{"", 5 * time.Minute, 15 * time.Second},
		{"10m", 5 * time.Minute, 10 * time.Minute},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, stepFor(tc.interval, CheckOptions{Range: tc.span, ScrapeInterval: 15 * time.Second}), "%q over %s", tc.interval, tc.span)
	}
}

func TestLabelValuesQuery(t *testing.T) {
	tests := []struct {
		q, sel, label string
		ok            bool
	}{
		{`label_values(WTUR_W{org=~"$org"}, site)`, `WTUR_W{org=~"$org"}`, "site", true},
		{`label_values(org)`, "", "org", true},
		{`query_result(up)`, "", "", false},
	}
	for _, tc := range tests {
		sel, label, ok := labelValuesQuery(tc.q)
		require.Equal(t, []any{tc.sel, tc.label, tc.ok}, []any{sel, label, ok}, tc.q)
	}
}

func TestSubstitute(t *testing.T) {
	vals := map[string]string{"org": "demo", "__range": "5m"}
	got := substitute(`x{org=~"$org", a="${org}", b="[[org]]", c="${org:regex}", d="$unknown"}[$__range]`, lookup(vals))
	require.Equal(t, `x{org=~"demo", a="demo", b="demo", c="demo", d="$unknown"}[5m]`, got)
}

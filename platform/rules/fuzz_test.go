package rules

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// addSeeds adds the files matching patterns and the seeds to f's corpus.
func addSeeds(f *testing.F, patterns []string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	for _, p := range patterns {
		files, err := filepath.Glob(p)
		require.NoError(f, err)
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(b)
		}
	}
}

// FuzzParse feeds the streaming rule file parser any bytes: it either
// returns valid rules or an ErrInvalid error, and never panics.
func FuzzParse(f *testing.F) {
	addSeeds(f, []string{"testdata/*.yaml", "shipped/*.yaml"},
		"rules:\n  - name: r\n    type: threshold\n    point: T\n    above: 1\n    message: '{{.Nope'\n",
		"rules:\n  - name: r\n    type: count\n    atLeast: 1\n    conditions: [{point: T, outside: [1, 2]}]\n",
		"rules:\n  - name: r\n    type: nodata\n    point: T\n    after: 9999999999h\n",
		"rules:\n  - name: r\n    type: event\n    event: e\n    resolveAfter: -1s\n",
		"rules: &a [*a]\n", "rules:\n  - !!binary AAAA\n", "rules:\n  - name: r\n    outside: [1]\n", "",
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		stuck := time.AfterFunc(2*time.Second, func() { panic(fmt.Sprintf("Parse takes more than 2s on %q", b)) })
		rs, err := Parse("fuzz.yaml", b)
		stuck.Stop()
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			return
		}
		for _, r := range rs {
			require.NotEmpty(t, r.Name)
			require.NotNil(t, r.tmpl, "a loaded rule has its message template")
			require.Positive(t, r.line, "rule %q has its line", r.Name)
		}
	})
}

// FuzzPromQLRuleFile feeds the PromQL rule file loader (rulefmt plus the
// engine's checks) any bytes: it either returns groups whose every expression
// the engine accepts, or errors that are ErrInvalid, and never panics.
func FuzzPromQLRuleFile(f *testing.F) {
	addSeeds(f, []string{"shipped/promql/*.yml"},
		goodPromQL,
		"groups:\n  - name: g\n    rules:\n      - record: r\n        expr: max_over_time(temp[5m:])\n",
		"groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: max_over_time(temp[1h:1ms]) > 0\n        for: 5m\n",
		"groups:\n  - name: g\n    interval: 0s\n    limit: -1\n    rules:\n      - alert: A\n        expr: temp\n        annotations: {s: '{{ $value | humanize'}\n",
		"groups:\n  - name: g\n    rules:\n      - record: r\n        alert: A\n        expr: temp\n",
		"groups:\n  - name: g\n    query_offset: -1m\n    rules:\n      - record: 'bad name'\n        expr: temp @ end() offset -1h\n",
		"groups:\n  - name: g\n    labels: {org: acme}\n    rules:\n      - record: r\n        expr: sum(rate(temp{org=\"beta\"}[5m])) or absent(x) or max_over_time(temp[5m:1m])\n        labels: {org: 'a\"b'}\n",
		"groups:\n  - name: g\n  - name: g\n", "groups: [{}]\n", "groups:\n  - rules: [{expr: ''}]\n", "---\n---\n",
	)
	l := ruleLoader{engine: testEngine(f), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f.Fuzz(func(t *testing.T, b []byte) {
		rgs, errs := l.parse("promql/fuzz.yml", b, false, model.UTF8Validation)
		if len(errs) > 0 {
			require.Nil(t, rgs)
			for _, err := range errs {
				require.ErrorIs(t, err, ErrInvalid)
			}
			return
		}
		for _, g := range rgs.Groups {
			for _, r := range g.Rules {
				require.NoError(t, l.engine.CheckExpr(r.Expr))
				_, err := l.Parse(r.Expr)
				require.NoError(t, err)
			}
		}
	})
}

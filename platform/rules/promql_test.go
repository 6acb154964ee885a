package rules

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/promql"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// memStore is an AlertStore in memory.
type memStore struct {
	mu     sync.Mutex
	alerts []api.Alert
}

func (m *memStore) FireAlert(_ context.Context, a api.Alert) (api.Alert, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alerts = append(m.alerts, a)
	return a, true, nil
}

func (m *memStore) ResolveAlert(context.Context, string, string, int64, int64, float64) (api.Alert, bool, error) {
	return api.Alert{}, false, nil
}
func (m *memStore) SaveRuleState(context.Context, string, []byte) error { return nil }
func (m *memStore) RuleState(context.Context, string) ([]byte, error)   { return nil, nil }

func testEngine(t testing.TB) *tsdb.Engine {
	return tsdbtest.NewEngine(t, tsdb.QueryConfig{MaxPoints: 1000}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
}

// testDB opens a TSDB with temp series of five devices.
func testDB(t testing.TB) *promtsdb.DB {
	db, _ := tsdbtest.OpenWithSeries(t, 5)
	return db
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
}

// TestPromQLRuleWithSubqueryWithoutStep is the regression test of the crash:
// reload accepted the rule, and its first evaluation panicked on a rule
// manager goroutine, stopping the node (again at every restart).
func TestPromQLRuleWithSubqueryWithoutStep(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, filepath.Join(dir, PromQLDir), map[string]string{"sub.yml": `groups:
  - name: sub
    interval: 100ms
    rules:
      - record: device:temp:max5m
        expr: max_over_time(temp[5m:])
`})
	db, engine := testDB(t), testEngine(t)
	runPromQLRules(t, dir, db, engine)
	require.Eventually(t, func() bool {
		q, err := engine.NewInstantQuery(context.Background(), db, nil, `device:temp:max5m`, time.Now())
		require.NoError(t, err)
		defer q.Close()
		res := q.Exec(context.Background())
		v, ok := res.Value.(promql.Vector)
		return res.Err == nil && ok && len(v) == 5 && v[0].F > 0
	}, 10*time.Second, 50*time.Millisecond, "the rule is evaluated and recorded, a series per device")
}

// runPromQLRules loads the PromQL rules of dir over db and evaluates them until the test ends.
func runPromQLRules(t *testing.T, dir string, db TSDB, engine QueryEngine) *PromQLRules {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := NewPromQLRules(ctx, dir, db, engine, &memStore{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return p
}

const goodPromQL = `groups:
  - name: good
    rules:
      - record: device:temp:max
        expr: max by (device) (temp)
`

func TestPromQLRuleFilesRefusedWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	bad := map[string]string{
		"syntax.yml": "groups:\n  - name: syntax\n    rules:\n      - record: r\n        expr: sum(temp\n",
		"limit.yml":  "groups:\n  - name: limit\n    rules:\n      - record: ok\n        expr: temp\n      - alert: Heavy\n        expr: max_over_time(temp[1h:1ms]) > 1\n",
		"yaml.yml":   "groups:\n  - name: yaml\n    rules: [\n",
		"field.yml":  "groups:\n  - name: field\n    rules:\n      - record: r\n        expr: temp\n        colour: red\n",
	}
	want := map[string]string{
		"syntax.yml": "promql/syntax.yml:5:",
		"limit.yml":  "promql/limit.yml:7: group \"limit\", rule \"Heavy\": query refused: subquery",
		"yaml.yml":   "promql/yaml.yml:3: yaml: line 3",
		"field.yml":  "promql/field.yml:6",
	}
	writeFiles(t, filepath.Join(dir, PromQLDir), map[string]string{"good.yml": goodPromQL})
	writeFiles(t, filepath.Join(dir, PromQLDir), bad)
	logs := &bytes.Buffer{} // written only while the constructor runs, on this goroutine
	reg := prometheus.NewRegistry()
	p, err := NewPromQLRules(context.Background(), dir, testDB(t), testEngine(t), &memStore{}, slog.New(slog.NewTextHandler(logs, nil)), reg)
	require.NoError(t, err, "a bad file does not keep the node from starting")
	groups := func() []string {
		var out []string
		for _, g := range p.RuleGroups() {
			out = append(out, g.Name())
		}
		return out
	}
	require.Equal(t, []string{"good"}, groups(), "the good file is loaded")
	for name := range want {
		require.Contains(t, logs.String(), "promql/"+name+":")
	}
	require.Equal(t, 4.0, testutil.ToFloat64(p.refused))

	err = p.Reload()
	require.ErrorIs(t, err, ErrInvalid)
	for name, w := range want {
		require.ErrorContains(t, err, w, name)
	}
	require.Equal(t, []string{"good"}, groups(), "the rules stay as they were")

	for name := range bad {
		require.NoError(t, os.Remove(filepath.Join(dir, PromQLDir, name)))
	}
	writeFiles(t, filepath.Join(dir, PromQLDir), map[string]string{"more.yml": "groups:\n  - name: more\n    rules:\n      - record: r\n        expr: max_over_time(temp[1h:1m])\n"})
	require.NoError(t, p.Reload())
	require.ElementsMatch(t, []string{"good", "more"}, groups())
	require.Equal(t, 0.0, testutil.ToFloat64(p.refused))
}

func TestStreamingRuleFileRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"good.yaml":   "rules:\n  - name: hot\n    type: threshold\n    point: T\n    above: 1\n",
		"bad.yaml":    "rules:\n  - name: ok\n    type: threshold\n    point: X\n    above: 1\n  - name: broken\n    type: threshold\n    point: X\n",
		"zdup.yaml":   "rules:\n  - name: hot\n    type: threshold\n    point: T\n    below: 1\n",
		"yaml.yaml":   "rules:\n  - name: [\n",
		"x_test.yaml": "not a rule file: tests are skipped\n",
	})
	logs := &bytes.Buffer{} // written only while the constructor runs, on this goroutine
	reg := prometheus.NewRegistry()
	s, err := NewService(context.Background(), dir, func(string) map[string]bool { return nil }, &memStore{}, nil, slog.New(slog.NewTextHandler(logs, nil)), reg)
	require.NoError(t, err, "bad files do not keep the node from starting")
	var names []string
	for _, r := range s.Rules() {
		names = append(names, r.Name+"@"+r.Location)
	}
	require.Equal(t, []string{"hot@good.yaml:2"}, names)
	for _, w := range []string{`bad.yaml:6: rule \"broken\": needs above`, `zdup.yaml:2: rule \"hot\" already defined in good.yaml:2`, "yaml.yaml"} {
		require.Contains(t, logs.String(), w)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(s.refused))

	err = s.Reload()
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "bad.yaml:6")
	require.ErrorContains(t, err, "zdup.yaml:2")
	require.Len(t, s.Rules(), 1, "the rules stay as they were")
}

func TestPromQLRuleEvaluationPanicBecomesItsError(t *testing.T) {
	p, err := NewPromQLRules(context.Background(), t.TempDir(), testDB(t), testEngine(t), &memStore{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	query := p.recovering(func(context.Context, string, time.Time) (promql.Vector, error) { panic("engine bug") })
	v, err := query(context.Background(), "up", time.Now())
	require.ErrorContains(t, err, "evaluation panicked: engine bug")
	require.Nil(t, v)
	require.Equal(t, 1.0, testutil.ToFloat64(p.panics))
}

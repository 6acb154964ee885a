package tsdb_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

func newEngine(t testing.TB, cfg tsdb.QueryConfig) (*tsdb.Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return tsdbtest.NewEngine(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg), reg
}

// value returns the value of metric name (a counter or gauge) whose first label has labelValue ("" when it has none), or -1.
func value(reg *prometheus.Registry, name, labelValue string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() == labelValue {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func refused(reg *prometheus.Registry, reason string) float64 {
	return value(reg, "gale_query_refused_total", reason)
}

// TestSubqueryWithoutStep is the regression test of the panic: the engine
// had no default subquery step, so x[5m:] dereferenced a nil function.
func TestSubqueryWithoutStep(t *testing.T) {
	db, now := tsdbtest.OpenWithSeries(t, 10)
	e, _ := newEngine(t, tsdb.QueryConfig{})
	for _, q := range []string{`max_over_time(temp[5m:])`, `rate(temp[10m:])`, `max_over_time(max_over_time(temp[5m:])[10m:])`} {
		t.Run(q, func(t *testing.T) {
			qry, err := e.NewInstantQuery(context.Background(), db, nil, q, now)
			require.NoError(t, err)
			defer qry.Close()
			res := qry.Exec(context.Background())
			require.NoError(t, res.Err)
			require.Len(t, res.Value.(promql.Vector), 10)
		})
	}
}

func TestQueryLimitsRefuseBeforeRunning(t *testing.T) {
	db, now := tsdbtest.OpenWithSeries(t, 10)
	e, reg := newEngine(t, tsdb.QueryConfig{MaxPoints: 1000})
	for _, tc := range []struct {
		name, query      string
		start            time.Time
		step             time.Duration
		reason, contains string
	}{
		{"range steps", `temp`, now.Add(-2 * time.Hour), time.Second, tsdb.ReasonTooManyPoints, "7201 points per series, more than 1000"},
		{"tiny subquery step", `max_over_time(temp[1h:1ms])`, now, 0, tsdb.ReasonSubqueryPoints, "more than 1000"},
		{"subquery over a range query", `max_over_time(temp[1m:1s])`, now.Add(-time.Hour), time.Minute, tsdb.ReasonSubqueryPoints, "3660 points"},
		{"nested subqueries add up", `max_over_time(max_over_time(temp[10m:1s])[10m:1m])`, now, 0, tsdb.ReasonSubqueryPoints, "1200 points"},
		{"default step", `max_over_time(temp[1y:])`, now, 0, tsdb.ReasonSubqueryPoints, "525600 points"},
		{"offset does not hide it", `max_over_time(temp[1h:1ms] offset -1h)`, now, 0, tsdb.ReasonSubqueryPoints, "more than 1000"},
		{"centuries do not overflow", `max_over_time(temp[290y:1ms])`, now, 0, tsdb.ReasonSubqueryPoints, "more than 1000"},
		{"duration expressions are resolved", `max_over_time(temp[1h:(1ms*2)])`, now, 0, tsdb.ReasonSubqueryPoints, "more than 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := refused(reg, tc.reason)
			var err error
			if tc.step > 0 {
				_, err = e.NewRangeQuery(context.Background(), db, nil, tc.query, tc.start, now, tc.step)
			} else {
				_, err = e.NewInstantQuery(context.Background(), db, nil, tc.query, now)
			}
			require.ErrorIs(t, err, tsdb.ErrQueryRefused)
			require.ErrorContains(t, err, tc.contains)
			require.Equal(t, tc.reason, tsdb.RefusalReason(err))
			require.Equal(t, before+1, refused(reg, tc.reason))
			if tc.step == 0 {
				require.ErrorIs(t, e.CheckExpr(tc.query), tsdb.ErrQueryRefused, "a rule with it is refused too")
			}
		})
	}
	// Over 2h at 1m: a subquery pinned with @ is evaluated over its own range only.
	for _, ok := range []string{`max_over_time(temp[10h:1m])`, `rate(temp[5m])`, `max_over_time(temp[16h:1m] @ end())`, `max_over_time(temp[16h:1m] @ 0)`} {
		t.Run("accepts "+ok, func(t *testing.T) {
			qry, err := e.NewRangeQuery(context.Background(), db, nil, ok, now.Add(-2*time.Hour), now, time.Minute)
			require.NoError(t, err)
			qry.Close()
			require.NoError(t, e.CheckExpr(ok))
		})
	}
}

func TestQueryCutAtSampleLimitAndTimeout(t *testing.T) {
	db, now := tsdbtest.OpenWithSeries(t, 10)
	for _, tc := range []struct {
		name, query, reason string
		cfg                 tsdb.QueryConfig
	}{
		{"samples", `temp[2h]`, tsdb.ReasonTooManySamples, tsdb.QueryConfig{MaxSamples: 500}},
		// Fifty million steps of an expression that selects nothing: time, few samples.
		{"timeout", `count_over_time((vector(time()) < 0)[50000s:1ms])`, tsdb.ReasonTimeout,
			tsdb.QueryConfig{Timeout: 300 * time.Millisecond, MaxQueueWait: 100 * time.Millisecond, MaxPoints: 1e9, MaxSamples: 1e9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, reg := newEngine(t, tc.cfg)
			qry, err := e.NewInstantQuery(context.Background(), db, nil, tc.query, now)
			require.NoError(t, err)
			defer qry.Close()
			start := time.Now()
			res := qry.Exec(context.Background())
			require.Error(t, res.Err)
			require.Equal(t, tc.reason, tsdb.RefusalReason(res.Err), res.Err.Error())
			require.Less(t, time.Since(start), 5*time.Second)
			require.Equal(t, 1.0, refused(reg, tc.reason))
		})
	}
}

func TestQueryConcurrencyCapWaitsBoundedTime(t *testing.T) {
	db, now := tsdbtest.OpenWithSeries(t, 10)
	e, reg := newEngine(t, tsdb.QueryConfig{MaxConcurrent: 1, MaxQueueWait: 100 * time.Millisecond})
	release, err := e.AcquireQuerySlot(context.Background(), "held")
	require.NoError(t, err)
	start := time.Now()
	_, err = e.NewInstantQuery(context.Background(), db, nil, `temp`, now)
	require.ErrorIs(t, err, tsdb.ErrQueryQueueFull)
	require.ErrorContains(t, err, "all 1 query slots stayed busy for 100ms")
	require.Less(t, time.Since(start), 2*time.Second)
	require.Equal(t, 1.0, value(reg, "prometheus_engine_queries_concurrent_max", ""))
	require.Equal(t, 1.0, refused(reg, tsdb.ReasonQueueFull))

	release()
	qry, err := e.NewInstantQuery(context.Background(), db, nil, `temp`, now)
	require.NoError(t, err, "a freed slot serves the next query")
	require.NoError(t, qry.Exec(context.Background()).Err)
	qry.Close()
}

func TestQueryConfigValidate(t *testing.T) {
	require.NoError(t, tsdb.DefaultQueryConfig().Validate())
	for name, mut := range map[string]func(*tsdb.QueryConfig){
		"timeout":       func(c *tsdb.QueryConfig) { c.Timeout = 0 },
		"maxSamples":    func(c *tsdb.QueryConfig) { c.MaxSamples = -1 },
		"maxConcurrent": func(c *tsdb.QueryConfig) { c.MaxConcurrent = 0 },
		"maxQueueWait":  func(c *tsdb.QueryConfig) { c.MaxQueueWait = time.Hour },
		"maxPoints":     func(c *tsdb.QueryConfig) { c.MaxPoints = 0 },
		"subqueryStep":  func(c *tsdb.QueryConfig) { c.DefaultSubqueryStep = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			c := tsdb.DefaultQueryConfig()
			mut(&c)
			require.ErrorIs(t, c.Validate(), tsdb.ErrConfig)
		})
	}
}

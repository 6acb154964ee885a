package selfmon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/tsdb"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openDB(t testing.TB) *promtsdb.DB {
	t.Helper()
	cfg := tsdb.DefaultConfig()
	cfg.Dir = t.TempDir()
	db, err := tsdb.Open(cfg, discard(), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// read returns every series matching the matchers as labels string → values in time order.
func read(t testing.TB, db *promtsdb.DB, ms ...*labels.Matcher) map[string][]float64 {
	t.Helper()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	out := map[string][]float64{}
	set := q.Select(context.Background(), true, nil, ms...)
	for set.Next() {
		s := set.At()
		it := s.Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			out[s.Labels().String()] = append(out[s.Labels().String()], v)
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, set.Err())
	return out
}

func name(n string) *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, n)
}

func TestScrapeWritesWhatPrometheusWould(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gale_test_total", Help: "h"}, []string{"reason", "job"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gale_test_seconds", Help: "h", Buckets: []float64{0.1, 1}})
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "gale_test_summary", Help: "h", Objectives: map[float64]float64{0.5: 0.05}})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "gale_test_gauge", Help: "h"})
	reg.MustRegister(c, h, s, g)
	c.WithLabelValues("bad_json", "inner").Add(3)
	h.Observe(0.05)
	h.Observe(5)
	s.Observe(2)
	g.Set(42)

	db := openDB(t)
	sc, err := New(Config{Instance: "127.0.0.1:8080"}, reg, db, discard())
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, sc.Scrape(context.Background(), now))

	tests := []struct {
		metric string
		want   map[string][]float64
	}{
		{"up", map[string][]float64{`{__name__="up", instance="127.0.0.1:8080", job="gale"}`: {1}}},
		{"gale_test_total", map[string][]float64{`{__name__="gale_test_total", exported_job="inner", instance="127.0.0.1:8080", job="gale", reason="bad_json"}`: {3}}},
		{"gale_test_gauge", map[string][]float64{`{__name__="gale_test_gauge", instance="127.0.0.1:8080", job="gale"}`: {42}}},
		{"gale_test_seconds_bucket", map[string][]float64{
			`{__name__="gale_test_seconds_bucket", instance="127.0.0.1:8080", job="gale", le="0.1"}`:  {1},
			`{__name__="gale_test_seconds_bucket", instance="127.0.0.1:8080", job="gale", le="1"}`:    {1},
			`{__name__="gale_test_seconds_bucket", instance="127.0.0.1:8080", job="gale", le="+Inf"}`: {2},
		}},
		{"gale_test_seconds_count", map[string][]float64{`{__name__="gale_test_seconds_count", instance="127.0.0.1:8080", job="gale"}`: {2}}},
		{"gale_test_seconds_sum", map[string][]float64{`{__name__="gale_test_seconds_sum", instance="127.0.0.1:8080", job="gale"}`: {5.05}}},
		{"gale_test_summary", map[string][]float64{`{__name__="gale_test_summary", instance="127.0.0.1:8080", job="gale", quantile="0.5"}`: {2}}},
		{"gale_test_summary_count", map[string][]float64{`{__name__="gale_test_summary_count", instance="127.0.0.1:8080", job="gale"}`: {1}}},
	}
	for _, tc := range tests {
		t.Run(tc.metric, func(t *testing.T) {
			require.Equal(t, tc.want, read(t, db, name(tc.metric)))
		})
	}
}

func TestScrapeMarksVanishedSeriesStale(t *testing.T) {
	reg := prometheus.NewRegistry()
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gale_kafka_consumer_lag", Help: "h"}, []string{"group"})
	reg.MustRegister(lag)
	lag.WithLabelValues("gale-tsdb").Set(5)
	lag.WithLabelValues("gale-rules").Set(7)

	db := openDB(t)
	sc, err := New(Config{Instance: "n1"}, reg, db, discard())
	require.NoError(t, err)
	t0 := time.Now()
	require.NoError(t, sc.Scrape(context.Background(), t0))
	lag.DeleteLabelValues("gale-rules")
	require.NoError(t, sc.Scrape(context.Background(), t0.Add(time.Second)))

	got := read(t, db, name("gale_kafka_consumer_lag"))
	require.Equal(t, []float64{5, 5}, got[`{__name__="gale_kafka_consumer_lag", group="gale-tsdb", instance="n1", job="gale"}`])
	rules := got[`{__name__="gale_kafka_consumer_lag", group="gale-rules", instance="n1", job="gale"}`]
	require.Len(t, rules, 2)
	require.Equal(t, 7.0, rules[0])
	require.True(t, value.IsStaleNaN(rules[1]), "the vanished series ends with a staleness marker")
}

type failingGatherer struct{}

func (failingGatherer) Gather() ([]*dto.MetricFamily, error) {
	return nil, errors.New("collector broke")
}

func TestScrapeFailureRecordsUpZero(t *testing.T) {
	db := openDB(t)
	sc, err := New(Config{Instance: "n1", Job: "gale-node"}, failingGatherer{}, db, discard())
	require.NoError(t, err)
	require.ErrorContains(t, sc.Scrape(context.Background(), time.Now()), "collector broke")
	require.Equal(t, map[string][]float64{`{__name__="up", instance="n1", job="gale-node"}`: {0}}, read(t, db, name("up")))
}

func TestRunScrapesEveryIntervalAndStopsOnCancel(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := openDB(t)
	sc, err := New(Config{Instance: "n1", Interval: 10 * time.Millisecond}, reg, db, discard())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	require.Eventually(t, func() bool {
		return len(read(t, db, name("up"))[`{__name__="up", instance="n1", job="gale"}`]) >= 3
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Instance: "127.0.0.1:8080"}, true},
		{"no instance", Config{}, false},
		{"negative interval", Config{Instance: "x", Interval: -time.Second}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := New(tc.cfg, prometheus.NewRegistry(), nil, discard())
			if !tc.ok {
				require.ErrorIs(t, err, ErrConfig)
				return
			}
			require.NoError(t, err)
			require.Equal(t, DefaultInterval, sc.cfg.Interval)
			require.Equal(t, DefaultJob, sc.cfg.Job)
		})
	}
}

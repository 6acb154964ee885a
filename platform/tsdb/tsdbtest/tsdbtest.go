// Package tsdbtest opens throwaway TSDBs and query engines for tests.
package tsdbtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/tsdb"
)

// Open opens an empty TSDB in a temp dir, closed at cleanup.
func Open(t testing.TB) *promtsdb.DB {
	t.Helper()
	cfg := tsdb.DefaultConfig()
	cfg.Dir = t.TempDir()
	db, err := tsdb.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

// NewEngine returns an engine with cfg's limits (zero fields take the
// defaults) whose metrics go to reg, closed at cleanup.
func NewEngine(t testing.TB, cfg tsdb.QueryConfig, log *slog.Logger, reg prometheus.Registerer) *tsdb.Engine {
	t.Helper()
	e, err := tsdb.NewEngine(cfg, t.TempDir(), log, reg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

// OpenWithSeries opens a TSDB (see Open) with temp{device="d0".."d<devices-1>", org="demo"}:
// one sample a minute for the last two hours, worth (minutes ago) % 7.
// It returns the time of the newest samples, a whole minute.
func OpenWithSeries(t testing.TB, devices int) (*promtsdb.DB, time.Time) {
	t.Helper()
	db := Open(t)
	now := time.Now().Truncate(time.Minute)
	app := db.Appender(context.Background())
	for d := range devices {
		ls := labels.FromStrings(labels.MetricName, "temp", "device", fmt.Sprintf("d%d", d), "org", "demo")
		for i := range 120 {
			_, err := app.Append(0, ls, now.Add(-time.Duration(i)*time.Minute).UnixMilli(), float64(i%7))
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	return db, now
}

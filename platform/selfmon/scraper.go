// Package selfmon stores a node's own metrics in its TSDB, so Gale's platform
// health dashboards work with no external Prometheus: a Scraper gathers a
// prometheus.Gatherer every interval and appends the samples the way a
// Prometheus scrape would (job and instance labels, an up series, staleness
// markers for series that disappear).
package selfmon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// Config configures self-monitoring.
type Config struct {
	// Interval between scrapes; default 15s.
	Interval time.Duration `yaml:"interval"`
	// Job labels every sample; default "gale", as in the shipped Prometheus scrape config.
	Job string `yaml:"job"`
	// Instance labels every sample; a node sets its HTTP address, which is
	// what an external Prometheus scraping its /metrics would use.
	Instance string `yaml:"instance"`
}

// Defaults for Config.
const (
	DefaultInterval = 15 * time.Second
	DefaultJob      = "gale"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid self-monitoring config")

// Validate checks c after defaults were filled.
func (c Config) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("%w: interval is negative", ErrConfig)
	case c.Instance == "":
		return fmt.Errorf("%w: instance is empty", ErrConfig)
	}
	return nil
}

// Scraper appends a Gatherer's metrics to a TSDB. Build it with New.
type Scraper struct {
	cfg Config
	g   prometheus.Gatherer
	db  storage.Appendable
	log *slog.Logger
	// series holds what the previous scrape wrote, by label hash, to reuse
	// series references and to mark series that disappear as stale.
	series map[uint64]*series
}

type series struct {
	ref    storage.SeriesRef
	labels labels.Labels
	seen   bool
}

// New returns a Scraper of g into db; it fills cfg's defaults.
func New(cfg Config, g prometheus.Gatherer, db storage.Appendable, log *slog.Logger) (*Scraper, error) {
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.Job = cmp.Or(cfg.Job, DefaultJob)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scraper{cfg: cfg, g: g, db: db, log: log, series: map[uint64]*series{}}, nil
}

// Run scrapes at once and then every interval until ctx ends; a failed
// scrape is logged and recorded as up 0.
func (s *Scraper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Scrape(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("self-monitoring scrape", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Scrape gathers once and appends the samples at time now. As with a
// Prometheus scrape that fails, a Gather error records up 0 and no samples
// (the series of the previous scrape are marked stale); the error is returned.
func (s *Scraper) Scrape(ctx context.Context, now time.Time) error {
	mfs, gatherErr := s.g.Gather()
	app := s.db.Appender(ctx)
	ts := now.UnixMilli()
	for _, sr := range s.series {
		sr.seen = false
	}
	up := 1.0
	if gatherErr != nil {
		up = 0
	} else {
		for _, mf := range mfs {
			if err := s.appendFamily(app, mf, ts); err != nil {
				_ = app.Rollback()
				return err
			}
		}
	}
	upLabels := labels.FromStrings(labels.MetricName, "up", "job", s.cfg.Job, "instance", s.cfg.Instance)
	if err := s.append(app, upLabels, ts, up); err != nil {
		_ = app.Rollback()
		return err
	}
	stale := math.Float64frombits(value.StaleNaN)
	for h, sr := range s.series {
		if sr.seen {
			continue
		}
		if _, err := app.Append(sr.ref, sr.labels, ts, stale); err != nil {
			s.log.Debug("stale marker refused", "series", sr.labels.String(), "err", err)
		}
		delete(s.series, h)
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("commit self-monitoring samples: %w", err)
	}
	if gatherErr != nil {
		return fmt.Errorf("gather metrics: %w", gatherErr)
	}
	return nil
}

// appendFamily appends one metric family as the Prometheus text format
// exposes it: histograms as _bucket (with le="+Inf"), _sum and _count,
// summaries as quantiles, _sum and _count.
func (s *Scraper) appendFamily(app storage.Appender, mf *dto.MetricFamily, now int64) error {
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		ts := now
		if m.TimestampMs != nil {
			ts = m.GetTimestampMs()
		}
		add := func(suffix string, v float64, extra ...string) error {
			return s.append(app, s.labelsOf(name+suffix, m, extra...), ts, v)
		}
		var err error
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			err = add("", m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			err = add("", m.GetGauge().GetValue())
		case dto.MetricType_UNTYPED:
			err = add("", m.GetUntyped().GetValue())
		case dto.MetricType_SUMMARY:
			sm := m.GetSummary()
			for _, q := range sm.GetQuantile() {
				if err = add("", q.GetValue(), "quantile", formatFloat(q.GetQuantile())); err != nil {
					return err
				}
			}
			if err = add("_sum", sm.GetSampleSum()); err == nil {
				err = add("_count", float64(sm.GetSampleCount()))
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			inf := false
			for _, b := range h.GetBucket() {
				inf = inf || math.IsInf(b.GetUpperBound(), 1)
				if err = add("_bucket", float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound())); err != nil {
					return err
				}
			}
			if !inf {
				if err = add("_bucket", float64(h.GetSampleCount()), "le", "+Inf"); err != nil {
					return err
				}
			}
			if err = add("_sum", h.GetSampleSum()); err == nil {
				err = add("_count", float64(h.GetSampleCount()))
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// labelsOf builds a sample's labels: the metric's own (a clash with job or
// instance is kept as exported_job / exported_instance, as Prometheus does),
// extra name/value pairs, then job and instance.
func (s *Scraper) labelsOf(name string, m *dto.Metric, extra ...string) labels.Labels {
	b := labels.NewScratchBuilder(len(m.GetLabel()) + len(extra)/2 + 3)
	b.Add(labels.MetricName, name)
	for _, lp := range m.GetLabel() {
		n := lp.GetName()
		if n == "job" || n == "instance" {
			n = "exported_" + n
		}
		b.Add(n, lp.GetValue())
	}
	for i := 0; i+1 < len(extra); i += 2 {
		b.Add(extra[i], extra[i+1])
	}
	b.Add("job", s.cfg.Job)
	b.Add("instance", s.cfg.Instance)
	b.Sort()
	return b.Labels()
}

// append adds one sample, reusing the series reference of the previous scrape.
func (s *Scraper) append(app storage.Appender, l labels.Labels, ts int64, v float64) error {
	h := l.Hash()
	sr := s.series[h]
	if sr == nil || !labels.Equal(sr.labels, l) {
		sr = &series{labels: l}
		s.series[h] = sr
	}
	ref, err := app.Append(sr.ref, l, ts, v)
	if err != nil {
		if errors.Is(err, storage.ErrOutOfOrderSample) || errors.Is(err, storage.ErrDuplicateSampleForTimestamp) || errors.Is(err, storage.ErrTooOldSample) {
			s.log.Debug("self-monitoring sample refused", "series", l.String(), "err", err)
			sr.seen = true
			return nil
		}
		return fmt.Errorf("append %s: %w", l.Get(labels.MetricName), err)
	}
	sr.ref, sr.seen = ref, true
	return nil
}

// formatFloat renders le and quantile values as the Prometheus text format does.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

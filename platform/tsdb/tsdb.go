// Package tsdb opens Gale's embedded Prometheus TSDB and its PromQL engine
// with the node's query limits.
package tsdb

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"

	"github.com/gale-iot/gale/internal/logging"
)

// Config configures the TSDB.
type Config struct {
	// Dir holds the blocks and the WAL.
	Dir string `yaml:"dir"`
	// OutOfOrderWindow is how old a sample may be and still be accepted:
	// the longest edge outage whose backfill Gale promises to store.
	OutOfOrderWindow time.Duration `yaml:"outOfOrderWindow"`
	// Retention is how long samples are kept.
	Retention time.Duration `yaml:"retention"`
}

// DefaultConfig returns a week of out-of-order window and 30 days of retention.
func DefaultConfig() Config {
	return Config{OutOfOrderWindow: 7 * 24 * time.Hour, Retention: 30 * 24 * time.Hour}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid tsdb config")

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: dir is empty", ErrConfig)
	case c.OutOfOrderWindow < 0:
		return fmt.Errorf("%w: outOfOrderWindow is negative", ErrConfig)
	case c.Retention < time.Hour:
		return fmt.Errorf("%w: retention must be at least 1h", ErrConfig)
	}
	return nil
}

// maxBlockDuration is the longest block compaction makes (Prometheus's cap).
const maxBlockDuration = 31 * 24 * time.Hour

// Options returns the TSDB options of cfg. Unlike tsdb.DefaultOptions, whose
// blocks never grow past 2 h (MaxBlockDuration = MinBlockDuration), blocks
// are compacted as Prometheus compacts them: up to a tenth of the retention
// (2 h, 6 h, 18 h, 54 h …, at most 31 days), so a month is a few dozen
// blocks, not 360, each with its own copy of the index. The WAL is
// snappy-compressed, as Prometheus's is by default.
func Options(cfg Config) *tsdb.Options {
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = cfg.OutOfOrderWindow.Milliseconds()
	opts.RetentionDuration = cfg.Retention.Milliseconds()
	opts.MaxBlockDuration = max(opts.MinBlockDuration, min(cfg.Retention/10, maxBlockDuration).Milliseconds())
	opts.WALCompression = compression.Snappy
	return opts
}

// Open opens (or creates) the TSDB in cfg.Dir.
func Open(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*tsdb.DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := Options(cfg)
	db, err := tsdb.Open(cfg.Dir, logging.Library(log.With("component", "tsdb")), reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open tsdb %q: %w", cfg.Dir, err)
	}
	return db, nil
}

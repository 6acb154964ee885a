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

// Open opens (or creates) the TSDB in cfg.Dir.
func Open(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*tsdb.DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = cfg.OutOfOrderWindow.Milliseconds()
	opts.RetentionDuration = cfg.Retention.Milliseconds()
	db, err := tsdb.Open(cfg.Dir, log.With("component", "tsdb"), reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open tsdb %q: %w", cfg.Dir, err)
	}
	return db, nil
}

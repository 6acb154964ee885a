package tsdb_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/tsdb"
)

func TestOptionsBlockDurations(t *testing.T) {
	for _, tc := range []struct {
		retention, want time.Duration
	}{
		{30 * 24 * time.Hour, 3 * 24 * time.Hour}, // the default: a tenth of the retention
		{time.Hour, 2 * time.Hour},                // never below the head's 2 h blocks
		{5 * 365 * 24 * time.Hour, 31 * 24 * time.Hour},
	} {
		cfg := tsdb.DefaultConfig()
		cfg.Retention = tc.retention
		opts := tsdb.Options(cfg)
		require.Equal(t, (2 * time.Hour).Milliseconds(), opts.MinBlockDuration)
		require.Equal(t, tc.want.Milliseconds(), opts.MaxBlockDuration, tc.retention)
		require.Equal(t, cfg.OutOfOrderWindow.Milliseconds(), opts.OutOfOrderTimeWindow)
	}
}

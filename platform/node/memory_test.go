package node

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/gale-iot/gale/internal/config"
	"github.com/stretchr/testify/require"
)

func TestMemoryConfig(t *testing.T) {
	cfg, err := parseConfig("memory: {limit: 1.5GiB, gcPercent: 200}\n")
	require.NoError(t, err)
	require.Equal(t, MemoryConfig{Limit: 3 << 29, GCPercent: 200}, cfg.Memory)
	cfg, err = parseConfig("memory: {limit: 1073741824}\n")
	require.NoError(t, err)
	require.Equal(t, config.ByteSize(1<<30), cfg.Memory.Limit)
	for _, bad := range []string{"memory: {limit: 1MiB}\n", "memory: {gcPercent: -5}\n", "memory: {gcHeadroom: 1MiB}\n"} {
		_, err := parseConfig(bad)
		require.ErrorIs(t, err, ErrConfig, bad)
	}
	_, err = parseConfig("memory: {limit: lots}\n")
	require.ErrorIs(t, err, config.ErrSyntax)
}

func TestResolveMemory(t *testing.T) {
	noEnv := func(string) string { return "" }
	const gib = 1 << 30
	for _, tc := range []struct {
		name            string
		cfg             MemoryConfig
		cgroup, machine int64
		want            MemoryPolicy
	}{
		{"configured", MemoryConfig{Limit: 2 * gib, GCPercent: 150, GCHeadroom: gib / 2}, 8 * gib, 24 * gib, MemoryPolicy{2 * gib, 150, gib / 2, "config", "config"}},
		{"cgroup", MemoryConfig{}, 10 * gib, 24 * gib, MemoryPolicy{9 * gib, DefaultGCPercent, DefaultGCHeadroom, "cgroup", "default"}},
		{"machine", MemoryConfig{}, 0, 24 * gib, MemoryPolicy{12 * gib, DefaultGCPercent, DefaultGCHeadroom, "machine", "default"}},
		{"unknown", MemoryConfig{}, 0, 0, MemoryPolicy{config.NoLimit, DefaultGCPercent, DefaultGCHeadroom, "default", "default"}},
		{"none", MemoryConfig{Limit: config.NoLimit, GCHeadroom: config.NoLimit}, 8 * gib, 24 * gib, MemoryPolicy{config.NoLimit, DefaultGCPercent, config.NoLimit, "config", "default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, resolveMemory(tc.cfg, noEnv, tc.cgroup, tc.machine))
		})
	}
	// The environment wins: what the runtime took from it is reported, not changed.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(3 * gib))
	defer debug.SetGCPercent(debug.SetGCPercent(250))
	env := func(k string) string { return map[string]string{"GOMEMLIMIT": "3GiB", "GOGC": "250"}[k] }
	require.Equal(t, MemoryPolicy{3 * gib, 250, config.NoLimit, "environment", "environment"},
		resolveMemory(MemoryConfig{Limit: gib, GCPercent: 100}, env, 8*gib, 24*gib))
	debug.SetMemoryLimit(math.MaxInt64)
	require.Equal(t, config.NoLimit, resolveMemory(MemoryConfig{}, env, 0, 0).Limit)
}

func TestTunedPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live     uint64
		headroom config.ByteSize
		max      int
		want     int
	}{
		{0, 256 * mib, 400, 400},
		{32 * mib, 256 * mib, 400, 400},  // a small heap keeps the high target
		{64 * mib, 256 * mib, 400, 400},  // the headroom is exactly 400 %
		{128 * mib, 256 * mib, 400, 200}, // from there GOGC follows the live heap down
		{200 * mib, 256 * mib, 400, 128},
		{512 * mib, 256 * mib, 400, 100}, // but never below Go's default: the limit holds the rest
		{4096 * mib, 256 * mib, 50, 50},  // a configured target under the floor is kept
	} {
		require.Equal(t, tc.want, tunedPercent(tc.live, tc.headroom, tc.max), "%d MiB live", tc.live/mib)
	}
}

// TestSeriesHeadroom: the headroom shrinks as series grow, so a node with
// few series keeps GOGC 400 where one with 200,000 is at Go's default.
func TestSeriesHeadroom(t *testing.T) {
	const mib = 1 << 20
	p := MemoryPolicy{GCPercent: 400, GCHeadroom: DefaultGCHeadroom}
	require.Equal(t, DefaultGCHeadroom, p.SeriesHeadroom(0))
	require.Equal(t, DefaultGCHeadroom/2, p.SeriesHeadroom(headroomHalfSeries))
	for _, tc := range []struct {
		series uint64
		live   uint64
		want   int
	}{
		{10_000, 200 * mib, 400},  // a thousand devices ingesting: the live heap of a fast run keeps 400
		{10_000, 300 * mib, 310},  // before: 341
		{50_000, 100 * mib, 400},  //
		{200_000, 350 * mib, 100}, // 10,000 turbines: Go's default, the heap peaks at twice the live one
	} {
		require.Equal(t, tc.want, tunedPercent(tc.live, p.SeriesHeadroom(tc.series), p.GCPercent), "%d series, %d MiB live", tc.series, tc.live/mib)
	}
}

package logging_test

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/logging"
)

func TestLibraryDemotesInfoToDebug(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  []string
		not   []string
	}{
		{slog.LevelInfo, []string{"level=WARN msg=careful", "level=ERROR msg=broken"}, []string{"replaying", "details"}},
		{slog.LevelDebug, []string{"level=DEBUG msg=replaying", "level=DEBUG msg=details", "level=WARN msg=careful"}, nil},
	} {
		var buf bytes.Buffer
		log := logging.Library(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level})).With("component", "tsdb"))
		log.Info("replaying")
		log.Debug("details")
		log.Warn("careful")
		log.WithGroup("g").Error("broken", "k", 1)
		for _, w := range tc.want {
			require.Contains(t, buf.String(), w)
		}
		for _, n := range tc.not {
			require.NotContains(t, buf.String(), n)
		}
		require.Contains(t, buf.String(), "component=tsdb")
	}
}

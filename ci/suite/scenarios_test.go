//go:build containers

package suite

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/ci/cluster"
	"github.com/gale-iot/gale/scenarios"
)

// Where the suite writes (ci/reports and ci/logs are gitignored).
const (
	reportsDir = "../reports"
	logsDir    = "../logs"
)

// TestMain points testcontainers at this machine's Docker without Ryuk (its
// image cannot be pulled).
func TestMain(m *testing.M) {
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if _, ok := os.LookupEnv(k); !ok {
			os.Setenv(k, v)
		}
	}
	os.Exit(m.Run())
}

// TestScenarios runs the container scenarios one after the other, each on
// a fresh cloud of containers, and writes the summary and JUnit reports.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("../../scenarios/*.yaml")
	require.NoError(t, err)
	only := strings.Split(os.Getenv("GALE_SCENARIOS"), ",")
	require.NoError(t, os.MkdirAll(reportsDir, 0o755))
	summary, err := os.Create(filepath.Join(reportsDir, "summary.txt"))
	require.NoError(t, err)
	defer summary.Close()
	fmt.Fprintf(summary, "# Gale container suite, %s\n", time.Now().UTC().Format(time.RFC3339))

	var runs []scenarios.RunOutcome
	for _, f := range files {
		sc, err := scenarios.Load(f)
		require.NoError(t, err)
		if !slices.Contains(sc.Topology.RunOn, scenarios.CloudContainers) || only[0] != "" && !slices.Contains(only, filepath.Base(f)) {
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			logDir, _ := filepath.Abs(filepath.Join(logsDir, sc.Name))
			var log bytes.Buffer
			res, err := scenarios.Run(context.Background(), f,
				scenarios.WithCloud(cluster.New(cluster.Config{LogDir: logDir})),
				scenarios.WithLogger(slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))))
			run := scenarios.RunOutcome{Result: res, Err: err}
			runs = append(runs, run)
			var sum bytes.Buffer
			require.NoError(t, run.WriteSummary(&sum))
			_, werr := summary.Write(sum.Bytes())
			require.NoError(t, werr)
			t.Log(sum.String())
			if err != nil || len(res.Failed()) > 0 {
				t.Logf("runner log (warnings):\n%s", log.String())
				t.Logf("container logs: %s", logDir)
			}
			require.NoError(t, err)
			require.NotEmpty(t, res.Assertions)
			require.Empty(t, res.Failed(), sum.String())
		})
	}
	require.NotEmpty(t, runs, "no scenario runs on containers (GALE_SCENARIOS=%q)", os.Getenv("GALE_SCENARIOS"))
	junit, err := os.Create(filepath.Join(reportsDir, "scenarios.xml"))
	require.NoError(t, err)
	defer junit.Close()
	require.NoError(t, scenarios.WriteJUnit(junit, runs))
}

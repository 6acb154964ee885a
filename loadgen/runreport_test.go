package loadgen

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/runs"
)

// gale loadgen posts its report to the runs page of the node it loads:
// its figures, the SLO verdict and the rate, latency and ledger plots.
func TestReportPostedToRunsPage(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	tokenFile := testkit.WriteFile(t, t.TempDir(), "admin.token", h.Token+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := Main(ctx, []string{"--mqtt-addr", h.MQTTAddr(), "--api-url", h.BaseURL, "--token-file", tokenFile,
		"--devices", "2", "--count", "5", "--interval", "100ms", "--quiet", "--slo", "loss=0"}, &out, &errb)
	require.NoError(t, err, "%s", errb.String())
	require.NotContains(t, errb.String(), "not posted")

	var list []runs.Run
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/runs", nil, &list))
	require.Len(t, list, 1)
	var got runs.Run
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/runs/"+list[0].ID, nil, &got))
	require.Equal(t, runs.KindLoadgen, got.Kind)
	require.True(t, got.Pass)
	require.Contains(t, got.Stats, runs.Stat{Name: "ledger lost", Value: 0})
	require.Contains(t, got.Stats, runs.Stat{Name: "messages acknowledged", Value: 10})
	require.Len(t, got.Plots, 3)
	require.Equal(t, []string{"Rate", "PUBACK latency", "Ledger"}, []string{got.Plots[0].Title, got.Plots[1].Title, got.Plots[2].Title})
	require.Equal(t, runs.Series{Name: "stored", Points: [][2]float64{{0, 10}}}, got.Plots[2].Series[1])

	// --report-to off posts nothing; a node that refuses is a line on stderr, not a failed run.
	errb.Reset()
	require.NoError(t, Main(ctx, []string{"--mqtt-addr", h.MQTTAddr(), "--api-url", h.BaseURL, "--token-file", tokenFile,
		"--devices", "1", "--count", "2", "--interval", "100ms", "--quiet", "--report-to", "off"}, &out, &errb))
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/runs", nil, &list))
	require.Len(t, list, 1)
	require.NoError(t, Main(ctx, []string{"--mqtt-addr", h.MQTTAddr(), "--api-url", h.BaseURL, "--token-file", tokenFile,
		"--devices", "1", "--count", "2", "--interval", "100ms", "--quiet", "--report-to", h.BaseURL + "/nowhere"}, &out, &errb))
	require.Contains(t, errb.String(), "the report was not posted")
}

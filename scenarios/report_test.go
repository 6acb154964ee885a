package scenarios

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/loadgen"
	"github.com/gale-iot/gale/platform/runs"
)

// The report a scenario run posts is one the node's parser takes: its
// verdict, figures, failures and the plots of its loads.
func TestPostReport(t *testing.T) {
	var got runs.Run
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "POST /api/v1/runs", r.Method+" "+r.URL.Path)
		require.Equal(t, "Bearer tok", r.Header.Get("Authorization"))
		b, _ := io.ReadAll(r.Body)
		var err error
		got, err = runs.Parse(b)
		require.NoError(t, err)
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	rep := &loadgen.Report{Timeline: []loadgen.TimelinePoint{{T: 0, Offered: 10, Acked: 9, PubackP50: 2}, {T: 1, Offered: 10, Acked: 10, PubackP50: 3}}}
	rep.Ledger.Checked, rep.Ledger.Acknowledged, rep.Ledger.Stored = true, 19, 19
	r := &runner{loads: map[string]*loadRun{"steady": {rep: rep}}}
	withReport, err := WithReportTo(srv.URL+"/", "tok")
	require.NoError(t, err)
	withReport(r)
	res := Result{Name: "steady-load", File: "steady-load.yaml", Cloud: "inprocess", Wall: time.Minute, Figures: []string{"load steady: fine"},
		Assertions: []AssertionResult{{Line: 7, Name: "no loss", Pass: false, Expected: "0", Actual: strings.Repeat("é", 3000)}}}
	require.NoError(t, r.postReport(context.Background(), res, errors.New("boom"), time.Unix(1_800_000_000, 0)))
	require.Equal(t, runs.KindScenario, got.Kind)
	require.Equal(t, "steady-load", got.Name)
	require.False(t, got.Pass)
	require.Equal(t, runs.Stat{Name: "assertions", Value: 1}, got.Stats[1])
	require.Contains(t, got.Notes, "load steady: fine")
	require.Contains(t, got.Notes, "ERROR boom")
	require.Len(t, got.Plots, 3)
	require.Equal(t, "steady: Rate", got.Plots[0].Title)
	require.Equal(t, "steady: Ledger", got.Plots[2].Title)
}

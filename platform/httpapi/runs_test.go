package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/runs"
)

func openRuns(t *testing.T) *runs.Store {
	t.Helper()
	st, err := runs.Open(filepath.Join(t.TempDir(), "runs"), 3)
	require.NoError(t, err)
	return st
}

func sampleRun(name string) runs.Run {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	return runs.Run{Kind: runs.KindLoadgen, Name: name, Pass: true, Started: t0, Finished: t0.Add(time.Minute),
		Stats: []runs.Stat{{Name: "achieved rate", Value: 990, Unit: "msg/s"}},
		Plots: []runs.Plot{{Title: "Rate", Kind: runs.PlotLine, Unit: "msg/s", Series: []runs.Series{{Name: "achieved", Points: [][2]float64{{0, 980}, {1, 1000}}}}}}}
}

// Runs are posted by operators of an org (theirs) or cluster accounts,
// kept to the store's bound, and read only by callers who see their org.
func TestRunsOrgConfined(t *testing.T) {
	s := startAcctServer(t)
	code, b := s.call(t, s.tokens["operator"], http.MethodPost, "/api/v1/runs", sampleRun("acme load"))
	require.Equal(t, http.StatusCreated, code, "%s", b)
	var acme runs.Run
	require.NoError(t, json.Unmarshal(b, &acme))
	require.Equal(t, "acme", acme.Org, "an org's operator posts its org's run")
	require.Equal(t, "operator", acme.PostedBy)
	require.Nil(t, acme.Plots, "the answer is the summary")

	other := sampleRun("beta load")
	other.Org = "beta"
	code, b = s.call(t, s.tokens["operator"], http.MethodPost, "/api/v1/runs", other)
	require.Equal(t, http.StatusForbidden, code, "%s", b)
	code, _ = s.call(t, s.tokens["viewer"], http.MethodPost, "/api/v1/runs", sampleRun("x"))
	require.Equal(t, http.StatusForbidden, code)
	code, b = s.call(t, s.tokens["beta-operator"], http.MethodPost, "/api/v1/runs", other)
	require.Equal(t, http.StatusCreated, code, "%s", b)
	ghost := sampleRun("ghost")
	ghost.Org = "north" // a site, not an org
	code, b = s.call(t, s.tokens["cluster-admin"], http.MethodPost, "/api/v1/runs", ghost)
	require.Equal(t, http.StatusBadRequest, code, "%s", b)
	require.Contains(t, string(b), "org:")
	code, b = s.call(t, s.tokens["cluster-admin"], http.MethodPost, "/api/v1/runs", sampleRun("cluster soak"))
	require.Equal(t, http.StatusCreated, code, "%s", b)

	list := func(caller string) []string {
		code, b := s.call(t, s.tokens[caller], http.MethodGet, "/api/v1/runs", nil)
		require.Equal(t, http.StatusOK, code, "%s", b)
		var rs []runs.Run
		require.NoError(t, json.Unmarshal(b, &rs))
		var names []string
		for _, r := range rs {
			require.Nil(t, r.Plots)
			names = append(names, r.Name)
		}
		return names
	}
	require.Equal(t, []string{"acme load"}, list("viewer"))
	require.Equal(t, []string{"beta load"}, list("beta-viewer"))
	require.Equal(t, []string{"cluster soak", "beta load", "acme load"}, list("cluster-viewer"))

	code, b = s.call(t, s.tokens["viewer"], http.MethodGet, "/api/v1/runs/"+acme.ID, nil)
	require.Equal(t, http.StatusOK, code, "%s", b)
	var full runs.Run
	require.NoError(t, json.Unmarshal(b, &full))
	require.Equal(t, sampleRun("").Plots, full.Plots)
	for _, path := range []string{"/api/v1/runs/" + acme.ID, "/api/v1/runs/..%2Fregistry.db", "/api/v1/runs/0000000000000-zz"} {
		code, b = s.call(t, s.tokens["beta-viewer"], http.MethodGet, path, nil)
		require.Equal(t, http.StatusNotFound, code, path)
		require.NotContains(t, string(b), "acme load")
	}

	// The store keeps its last 3: a fourth drops the oldest.
	code, _ = s.call(t, s.tokens["operator"], http.MethodPost, "/api/v1/runs", sampleRun("acme again"))
	require.Equal(t, http.StatusCreated, code)
	require.Equal(t, []string{"acme again"}, list("viewer"))
}

// Hostile runs are refused with a 400 naming the field, never stored.
func TestRunsRefuseHostileInput(t *testing.T) {
	s := startAcctServer(t)
	long := strings.Repeat("x", runs.MaxText+1)
	for body, want := range map[string]string{
		`{`:                        "invalid run",
		`[]`:                       "invalid run",
		`{"kind":"loadgen"}`:       "name is required",
		`{"kind":"rm","name":"x"}`: "kind must be",
		`{"kind":"loadgen","name":"x","extra":1}`:                                                          "unknown field",
		`{"kind":"loadgen","name":"` + long + `"}`:                                                         "name must be at most",
		`{"kind":"loadgen","name":"a\u0000b"}`:                                                             "control characters",
		`{"kind":"loadgen","name":"x","stats":[{"name":"r","value":1e999}]}`:                               "invalid run",
		`{"kind":"loadgen","name":"x","plots":[{"title":"t","kind":"pie","series":[]}]}`:                   "plots[0].kind",
		`{"kind":"loadgen","name":"x","plots":[{"title":"t","kind":"line","series":[]}]}`:                  "plots[0].series",
		`{"kind":"loadgen","name":"x","started":"2026-01-02T00:00:00Z","finished":"2026-01-01T00:00:00Z"}`: "finished is before started",
		`{"kind":"loadgen","name":"x"} {"kind":"loadgen","name":"y"}`:                                      "more than one",
	} {
		code, b := s.call(t, s.tokens["operator"], http.MethodPost, "/api/v1/runs", body)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", body, b)
		require.Contains(t, string(b), want, body)
	}
	many := sampleRun("many")
	many.Plots[0].Series[0].Points = make([][2]float64, runs.MaxPoints+1)
	code, b := s.call(t, s.tokens["operator"], http.MethodPost, "/api/v1/runs", many)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(b), fmt.Sprintf("at most %d", runs.MaxPoints))
	code, b = s.call(t, s.tokens["operator"], http.MethodGet, "/api/v1/runs", nil)
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `[]`, string(b))
}

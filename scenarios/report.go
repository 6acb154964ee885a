package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/runs"
)

// WithReportTo posts the run's report, once it ran, to the runs page of
// the node at apiURL (POST /api/v1/runs) with token; the scenario's own
// cloud is gone by then. A URL that is not http(s) is an error.
func WithReportTo(apiURL, token string) (Option, error) {
	c, err := apiclient.New(apiURL, apiclient.Options{Token: token})
	if err != nil {
		return nil, err
	}
	return func(r *runner) { r.report = c }, nil
}

// postReport posts res (and runErr) to the node WithReportTo named.
func (r *runner) postReport(ctx context.Context, res Result, runErr error, started time.Time) error {
	run := runs.Run{Kind: runs.KindScenario, Name: res.Name, Started: started, Finished: started.Add(res.Wall),
		Pass: runErr == nil && len(res.Failed()) == 0}
	if run.Name == "" {
		run.Name = res.File
	}
	run.Stats = []runs.Stat{
		{Name: "assertions passed", Value: float64(len(res.Assertions) - len(res.Failed()))},
		{Name: "assertions", Value: float64(len(res.Assertions))},
		{Name: "wall time", Value: res.Wall.Seconds(), Unit: "s"},
		{Name: "sim time", Value: res.Sim.Seconds(), Unit: "s"},
	}
	notes := append([]string{"file " + res.File + " on the " + res.Cloud + " cloud"}, res.Figures...)
	for _, a := range res.Failed() {
		notes = append(notes, fmt.Sprintf("FAILED line %d: %s: expected %s, got %s", a.Line, a.Name, a.Expected, a.Actual))
	}
	if runErr != nil {
		notes = append(notes, "ERROR "+runErr.Error())
	}
	for _, n := range notes[:min(len(notes), runs.MaxNotes)] {
		run.Notes = append(run.Notes, strings.ToValidUTF8(n[:min(len(n), runs.MaxNote)], ""))
	}
	// The loads' plots (rate, PUBACK latency, ledger), as many as fit.
	r.mu.Lock()
	for _, name := range sortedKeys(r.loads) {
		if rep := r.loads[name].rep; rep != nil {
			for _, p := range rep.Run().Plots {
				if len(run.Plots) < runs.MaxPlots {
					p.Title = name + ": " + p.Title
					run.Plots = append(run.Plots, p)
				}
			}
		}
	}
	r.mu.Unlock()
	return r.report.PostRun(ctx, run)
}

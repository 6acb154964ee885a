package loadgen

import (
	"context"
	"fmt"

	"github.com/gale-iot/gale/platform/runs"
)

// Run is the report as the node's runs page keeps it (POST /api/v1/runs):
// the summary's figures, the SLO verdict, and plots of the achieved rate,
// the PUBACK latency percentiles over time and the ledger (at most
// runs.MaxPoints seconds each, thinned evenly beyond).
func (r *Report) Run() runs.Run {
	out := runs.Run{Kind: runs.KindLoadgen, Started: r.Started, Finished: r.Finished, Pass: !r.Interrupted && len(r.SLOFailures()) == 0,
		Name: fmt.Sprintf("%d devices × %.0f msg/s, QoS %d (%s)", r.Profile.Devices, r.Profile.Rate, r.Profile.QoS, r.Target)}
	if out.Finished.Before(out.Started) {
		out.Finished = out.Started
	}
	stat := func(name string, v float64, unit string) {
		out.Stats = append(out.Stats, runs.Stat{Name: name, Value: v, Unit: unit})
	}
	stat("devices connected", float64(r.Devices.Connected), "")
	stat("offered rate", r.Rate.Offered, "msg/s")
	stat("achieved rate", r.Rate.Achieved, "msg/s")
	stat("messages acknowledged", float64(r.Messages.Acknowledged), "")
	stat("messages failed", float64(r.Messages.Failed), "")
	for _, kind := range []string{"puback", "e2e"} {
		if l, ok := r.Latency[kind]; ok && l.Count > 0 {
			stat(kind+" p50", l.P50, "ms")
			stat(kind+" p99", l.P99, "ms")
		}
	}
	if r.Ledger.Checked {
		stat("ledger lost", float64(r.Ledger.Lost()), "")
		stat("ledger duplicates", float64(r.Ledger.Duplicates), "")
	}
	for _, s := range r.SLOFailures() {
		out.Notes = append(out.Notes, "SLO failed: "+s.String())
	}
	if r.Interrupted {
		out.Notes = append(out.Notes, "interrupted")
	}
	if r.Ledger.Error != "" {
		out.Notes = append(out.Notes, "ledger: "+r.Ledger.Error)
	}
	step := (len(r.Timeline) + runs.MaxPoints - 1) / runs.MaxPoints
	line := func(v func(TimelinePoint) float64) [][2]float64 {
		pts := [][2]float64{}
		for i := 0; i < len(r.Timeline); i += max(step, 1) {
			pts = append(pts, [2]float64{r.Timeline[i].T, v(r.Timeline[i])})
		}
		return pts
	}
	if len(r.Timeline) > 0 {
		out.Plots = append(out.Plots,
			runs.Plot{Title: "Rate", Kind: runs.PlotLine, Unit: "msg/s", Series: []runs.Series{
				{Name: "offered", Points: line(func(p TimelinePoint) float64 { return float64(p.Offered) })},
				{Name: "acknowledged", Points: line(func(p TimelinePoint) float64 { return float64(p.Acked) })}}},
			runs.Plot{Title: "PUBACK latency", Kind: runs.PlotLine, Unit: "ms", Series: []runs.Series{
				{Name: "p50", Points: line(func(p TimelinePoint) float64 { return p.PubackP50 })},
				{Name: "p99", Points: line(func(p TimelinePoint) float64 { return p.PubackP99 })},
				{Name: "max", Points: line(func(p TimelinePoint) float64 { return p.PubackMax })}}})
	}
	if r.Ledger.Checked {
		bar := func(name string, v int64) runs.Series {
			return runs.Series{Name: name, Points: [][2]float64{{0, float64(v)}}}
		}
		out.Plots = append(out.Plots, runs.Plot{Title: "Ledger", Kind: runs.PlotBar, Series: []runs.Series{
			bar("acknowledged", r.Ledger.Acknowledged), bar("stored", r.Ledger.Stored), bar("lost", r.Ledger.Lost()), bar("duplicates", r.Ledger.Duplicates)}})
	}
	return out
}

// PostRun sends the report to the runs page of the node at apiURL (with
// the run's token and CA).
func (g *Generator) PostRun(ctx context.Context, apiURL string, rep *Report) error {
	p, err := g.newPlatform(apiURL)
	if err != nil {
		return err
	}
	return p.api.PostRun(ctx, rep.Run())
}

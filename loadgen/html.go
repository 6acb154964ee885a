package loadgen

import (
	"fmt"
	"html/template"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
)

// WriteHTML writes the report as one self-contained HTML page: tables and
// inline SVG plots of throughput and latency over time (drawn here: no
// scripts, no external resources).
func (r *Report) WriteHTML(path string) error {
	var b strings.Builder
	if err := htmlPage.Execute(&b, r.htmlView()); err != nil {
		return fmt.Errorf("render HTML report: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write HTML report: %w", err)
	}
	return nil
}

type htmlView struct {
	R          *Report
	Summary    string
	Charts     []template.HTML
	Latency    []latencyRow
	Errors     []errorRow
	Baseline   *htmlView
	Comparison *Comparison
}

type latencyRow struct {
	Kind string
	Latency
}

type errorRow struct {
	Kind  string
	Count int64
}

func (r *Report) htmlView() *htmlView {
	var sum strings.Builder
	r.text(&sum, "")
	v := &htmlView{R: r, Summary: sum.String(), Comparison: r.Comparison}
	for _, k := range latNames {
		if l, ok := r.Latency[k]; ok {
			v.Latency = append(v.Latency, latencyRow{k, l})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		v.Errors = append(v.Errors, errorRow{k, r.Errors[k]})
	}
	xs := make([]float64, len(r.Timeline))
	col := func(f func(TimelinePoint) float64) []float64 {
		out := make([]float64, len(r.Timeline))
		for i, p := range r.Timeline {
			out[i] = f(p)
		}
		return out
	}
	for i, p := range r.Timeline {
		xs[i] = p.T
	}
	v.Charts = append(v.Charts, lineChart(chart{title: "Throughput", xLabel: "seconds", yLabel: "messages/s"}, xs, []chartSeries{
		{"offered", "#999999", col(func(p TimelinePoint) float64 { return float64(p.Offered) })},
		{"sent", "#1f77b4", col(func(p TimelinePoint) float64 { return float64(p.Sent) })},
		{"acknowledged", "#2ca02c", col(func(p TimelinePoint) float64 { return float64(p.Acked) })},
		{"errors", "#d62728", col(func(p TimelinePoint) float64 { return float64(p.Errors) })},
	}))
	v.Charts = append(v.Charts, lineChart(chart{title: "Latency from scheduled time (per second of acknowledgement)", xLabel: "seconds", yLabel: "ms, log scale", logY: true}, xs, []chartSeries{
		{"PUBACK p50", "#2ca02c", col(func(p TimelinePoint) float64 { return p.PubackP50 })},
		{"PUBACK p99", "#ff7f0e", col(func(p TimelinePoint) float64 { return p.PubackP99 })},
		{"PUBACK max", "#d62728", col(func(p TimelinePoint) float64 { return p.PubackMax })},
		{"end-to-end p99", "#9467bd", col(func(p TimelinePoint) float64 { return p.E2EP99 })},
	}))
	if len(r.Steps) > 0 {
		sx := make([]float64, len(r.Steps))
		off, ach, p99 := make([]float64, len(r.Steps)), make([]float64, len(r.Steps)), make([]float64, len(r.Steps))
		for i, s := range r.Steps {
			sx[i], off[i], ach[i], p99[i] = float64(i+1), s.Offered, s.Achieved, s.PubackP99
		}
		v.Charts = append(v.Charts,
			lineChart(chart{title: "Step search: rate by step", xLabel: "step", yLabel: "messages/s", intX: true}, sx,
				[]chartSeries{{"offered", "#999999", off}, {"achieved", "#2ca02c", ach}}),
			lineChart(chart{title: "Step search: PUBACK p99 by step", xLabel: "step", yLabel: "ms, log scale", logY: true, intX: true}, sx,
				[]chartSeries{{"PUBACK p99", "#ff7f0e", p99}}))
	}
	if r.Baseline != nil {
		v.Baseline = r.Baseline.htmlView()
	}
	return v
}

// chart describes a chart's text and axes.
type chart struct {
	title, xLabel, yLabel string
	// logY draws the y axis in decades; intX puts x ticks on integers only.
	logY, intX bool
}

// chartSeries is one line of a chart; NaN and (on log scales) values ≤ 0 are gaps.
type chartSeries struct {
	name, color string
	ys          []float64
}

const (
	chartW, chartH                        = 860, 280
	padLeft, padRight, padTop, padBottom  = 64, 16, 44, 40
	plotW, plotH                          = chartW - padLeft - padRight, chartH - padTop - padBottom
	axisColor, gridColor, chartFontFamily = "#444", "#e5e5e5", "sans-serif"
)

// lineChart draws series over xs as an SVG line chart.
func lineChart(c chart, xs []float64, series []chartSeries) template.HTML {
	logY := c.logY
	esc := template.HTMLEscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" font-size="11">`,
		chartW, chartH, chartW, chartH, chartFontFamily)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, padLeft, esc(c.title))
	xmax := 1.0
	for _, x := range xs {
		xmax = math.Max(xmax, x)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, y := range s.ys {
			if math.IsNaN(y) || (logY && y <= 0) {
				continue
			}
			lo, hi = math.Min(lo, y), math.Max(hi, y)
		}
	}
	if math.IsInf(hi, -1) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">no data</text></svg>`, padLeft+plotW/2-20, padTop+plotH/2, axisColor)
		return template.HTML(b.String()) //nolint:gosec // built from escaped text and numbers
	}
	var ticks []float64
	var ymap func(float64) float64
	if logY {
		lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		if lo == hi {
			hi = lo * 10
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			ticks = append(ticks, t)
		}
		ymap = func(y float64) float64 {
			return padTop + plotH*(1-(math.Log10(y)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
		}
	} else {
		step := niceStep(hi / 5)
		hi = math.Max(step, math.Ceil(hi/step)*step)
		for t := 0.0; t <= hi*1.0001; t += step {
			ticks = append(ticks, t)
		}
		ymap = func(y float64) float64 { return padTop + plotH*(1-y/hi) }
	}
	xmap := func(x float64) float64 { return padLeft + plotW*x/xmax }
	for _, t := range ticks {
		y := ymap(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`, padLeft, y, padLeft+plotW, y, gridColor)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%s</text>`, padLeft-6, y+4, axisColor, esc(fmtTick(t)))
	}
	xstep := niceStep(xmax / 8)
	if c.intX {
		xstep = math.Max(1, math.Round(xstep))
	}
	for t := 0.0; t <= xmax*1.0001; t += xstep {
		x := xmap(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`, x, padTop+plotH, x, padTop+plotH+4, axisColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="%s">%s</text>`, x, padTop+plotH+16, axisColor, esc(fmtTick(t)))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`, padLeft, padTop, plotW, plotH, axisColor)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">%s</text>`, padLeft+plotW/2, chartH-6, axisColor, esc(c.xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%d" text-anchor="middle" fill="%s" transform="rotate(-90 14 %d)">%s</text>`,
		padTop+plotH/2, axisColor, padTop+plotH/2, esc(c.yLabel))
	legendX := padLeft + plotW
	for i := len(series) - 1; i >= 0; i-- {
		s := series[i]
		legendX -= 24 + 7*len(s.name)
		fmt.Fprintf(&b, `<rect x="%d" y="26" width="10" height="10" fill="%s"/><text x="%d" y="35">%s</text>`, legendX, s.color, legendX+13, esc(s.name))
		var pts []string
		flush := func() {
			if len(pts) == 1 {
				xy := strings.Split(pts[0], ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2" fill="%s"/>`, xy[0], xy[1], s.color)
			} else if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.color, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for j, y := range s.ys {
			if math.IsNaN(y) || (logY && y <= 0) {
				flush()
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xmap(xs[j]), ymap(y)))
		}
		flush()
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from escaped text and numbers
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"f": func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"pct": func(v float64) string {
		return fmt.Sprintf("%.1f%%", 100*v)
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gale loadgen report</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 900px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
pre { background: #f8f8f8; padding: 8px; overflow-x: auto; font-size: 12px; }
.fail { color: #b00; font-weight: bold; } .pass { color: #070; }
svg { display: block; margin: 8px 0 20px; }
</style></head><body>
{{define "body"}}
<h2>{{.R.Target}} broker at {{.R.MQTTAddr}}</h2>
<p>{{.R.Profile.Devices}} devices, {{f .R.Profile.Rate}} msgs/s offered ({{f .R.Profile.RatePerDevice}} per device), QoS {{.R.Profile.QoS}},
{{.R.Profile.Points}} points ({{.R.Profile.Payload}}); ramp-up {{.R.Profile.RampUp}}, duration {{.R.Profile.Duration}}, ramp-down {{.R.Profile.RampDown}}.
Started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}.{{if .R.Interrupted}} <span class="fail">Interrupted.</span>{{end}}</p>
{{if .R.SLO}}<h3>SLO</h3><table><tr><th>clause</th><th>measured</th><th>result</th></tr>
{{range .R.SLO}}<tr><td>{{.Clause}}</td><td>{{if .Measured}}{{f .Value}} {{.Unit}}{{else}}not measured{{end}}</td>
<td>{{if .Pass}}<span class="pass">pass</span>{{else}}<span class="fail">FAIL</span>{{end}}</td></tr>{{end}}</table>{{end}}
<h3>Rate</h3><table><tr><th></th><th>msgs/s</th></tr>
<tr><td>offered</td><td>{{f .R.Rate.Offered}}</td></tr><tr><td>achieved</td><td>{{f .R.Rate.Achieved}} ({{pct .R.Rate.Ratio}})</td></tr>
<tr><td>datapoints</td><td>{{f .R.Rate.Datapoints}}</td></tr>
{{if .R.Steps}}<tr><td>max sustained (step search)</td><td>{{f .R.MaxSustainedRate}}</td></tr>{{end}}</table>
<p>Messages: offered {{.R.Messages.Offered}}, sent {{.R.Messages.Sent}}, acknowledged {{.R.Messages.Acknowledged}}, failed {{.R.Messages.Failed}};
devices connected {{.R.Devices.Connected}} of {{.R.Devices.Requested}}; generator CPU {{f .R.CPU.Cores}} cores.</p>
<h3>Latency (ms, from each message's scheduled time)</h3>
<table><tr><th>kind</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{{range .Latency}}<tr><td>{{.Kind}}</td><td>{{.Count}}</td><td>{{f .P50}}</td><td>{{f .P90}}</td><td>{{f .P99}}</td><td>{{f .P999}}</td><td>{{f .Max}}</td></tr>{{end}}</table>
{{range .Charts}}{{.}}{{end}}
<h3>Errors</h3>{{if .Errors}}<table><tr><th>kind</th><th>count</th></tr>{{range .Errors}}<tr><td>{{.Kind}}</td><td>{{.Count}}</td></tr>{{end}}</table>{{else}}<p>None.</p>{{end}}
{{if ne .R.Target "plain"}}<h3>Loss ledger</h3>
{{if .R.Ledger.Checked}}<p class="{{if .R.Ledger.Lost}}fail{{else}}pass{{end}}">{{.R.Ledger.Lost}} of {{.R.Ledger.Acknowledged}} acknowledged samples not stored
(missing {{.R.Ledger.Missing}}, wrong value {{.R.Ledger.WrongValue}}); duplicates {{.R.Ledger.Duplicates}}; rejected {{.R.Ledger.Rejected}};
stored unacknowledged {{.R.Ledger.UnackedStored}}.</p>
{{if .R.Ledger.Devices}}<table><tr><th>device</th><th>missing</th><th>wrong</th><th>duplicates</th><th>missing seq</th></tr>
{{range .R.Ledger.Devices}}<tr><td>{{.Device}}</td><td>{{.Missing}}</td><td>{{.WrongValue}}</td><td>{{.Duplicates}}</td><td>{{.MissingSeq}}</td></tr>{{end}}</table>{{end}}
{{else}}<p>Not checked{{with .R.Ledger.Error}}: {{.}}{{end}}.</p>{{end}}{{end}}
{{if .R.Steps}}<h3>Step search</h3><table><tr><th>step</th><th>offered</th><th>achieved</th><th>PUBACK p50</th><th>PUBACK p99</th><th>errors</th><th>result</th></tr>
{{range $i, $s := .R.Steps}}<tr><td>{{$i}}</td><td>{{f $s.Offered}}</td><td>{{f $s.Achieved}}</td><td>{{f $s.PubackP50}}</td><td>{{f $s.PubackP99}}</td><td>{{$s.Errors}}</td>
<td>{{if $s.Pass}}pass{{else}}<span class="fail">{{$s.Why}}</span>{{end}}</td></tr>{{end}}</table>{{end}}
{{end}}
<h1>gale loadgen report</h1>
{{template "body" .}}
{{with .Baseline}}<hr><h1>Baseline: plain MQTT broker</h1>
<p>Same profile; ratios (Gale / plain): rate {{f $.Comparison.RateRatio}}×, PUBACK p50 {{f $.Comparison.PubackP50Ratio}}×, p99 {{f $.Comparison.PubackP99Ratio}}×.</p>
{{template "body" .}}{{end}}
<h3>Text summary</h3><pre>{{.Summary}}</pre>
</body></html>
`))

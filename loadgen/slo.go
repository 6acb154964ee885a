package loadgen

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SLO is a list of clauses a run must meet, parsed from an expression like
// "p99_e2e<250ms,loss=0,rate>=9500,errors=0".
//
// Metrics: p50, p90, p99, p999 and max of puback, connect, e2e, send_lag,
// reconnect and ack_gap (written p99_puback, max_connect, ...; values are durations
// such as 250ms or 1.5s, or bare numbers in milliseconds); loss
// (acknowledged samples not stored with their value); duplicates; errors
// (all kinds); rate (achieved messages per second; in a step search, the
// maximum sustained rate). Operators: < <= > >= = (or ==).
type SLO []Clause

// Clause is one comparison of an SLO.
type Clause struct {
	// Text is the clause as written.
	Text   string
	Metric string
	Op     string
	// Value is in milliseconds for latency metrics.
	Value float64
}

// ErrSLO is wrapped by SLO parse errors.
var ErrSLO = errors.New("bad SLO expression")

var quantiles = map[string]func(Latency) float64{
	"p50": func(l Latency) float64 { return l.P50 }, "p90": func(l Latency) float64 { return l.P90 },
	"p99": func(l Latency) float64 { return l.P99 }, "p999": func(l Latency) float64 { return l.P999 },
	"max": func(l Latency) float64 { return l.Max },
}

// LatencyKinds are the kinds of latency a report measures (its Latency keys).
func LatencyKinds() []string { return slices.Clone(latNames[:]) }

// Quantile returns l's quantile q (p50, p90, p99, p999 or max), in ms, and
// whether q is one of them.
func (l Latency) Quantile(q string) (float64, bool) {
	f, ok := quantiles[q]
	if !ok {
		return 0, false
	}
	return f(l), true
}

// latencyMetric splits "p99_e2e" into the quantile and the latency kind.
func latencyMetric(m string) (q, kind string, ok bool) {
	q, kind, ok = strings.Cut(m, "_")
	if !ok || quantiles[q] == nil {
		return "", "", false
	}
	for _, n := range latNames {
		if n == kind {
			return q, kind, true
		}
	}
	return "", "", false
}

// ParseSLO parses an SLO expression; the empty string is the empty SLO.
func ParseSLO(expr string) (SLO, error) {
	var slo SLO
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	for _, text := range strings.Split(expr, ",") {
		text = strings.TrimSpace(text)
		i := strings.IndexAny(text, "<>=")
		if i <= 0 {
			return nil, fmt.Errorf("%w: clause %q: want METRIC OP VALUE, e.g. p99_e2e<250ms", ErrSLO, text)
		}
		c := Clause{Text: text, Metric: strings.TrimSpace(text[:i]), Op: text[i : i+1]}
		rest := text[i+1:]
		if strings.HasPrefix(rest, "=") {
			c.Op, rest = c.Op+"=", rest[1:]
		}
		if c.Op == "==" {
			c.Op = "="
		}
		rest = strings.TrimSpace(rest)
		var err error
		if _, _, ok := latencyMetric(c.Metric); ok {
			c.Value, err = parseMillis(rest)
		} else {
			switch c.Metric {
			case "loss", "duplicates", "errors", "rate":
				c.Value, err = strconv.ParseFloat(rest, 64)
			default:
				return nil, fmt.Errorf("%w: clause %q: unknown metric %q (want p50|p90|p99|p999|max _ puback|connect|e2e|send_lag|reconnect|ack_gap, loss, duplicates, errors or rate)", ErrSLO, text, c.Metric)
			}
		}
		if err != nil || rest == "" || math.IsNaN(c.Value) { // NaN: no measurement ever meets it
			return nil, fmt.Errorf("%w: clause %q: bad value %q", ErrSLO, text, rest)
		}
		slo = append(slo, c)
	}
	return slo, nil
}

// parseMillis reads a duration ("250ms", "1.5s") or a bare number of milliseconds.
func parseMillis(s string) (float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return float64(d) / float64(time.Millisecond), nil
}

// SLOResult is one clause's outcome.
type SLOResult struct {
	Clause   string  `json:"clause"`
	Measured bool    `json:"measured"`
	Value    float64 `json:"value"`
	// Unit is "ms" for latency metrics.
	Unit string `json:"unit,omitempty"`
	Pass bool   `json:"pass"`
}

// String describes the outcome, e.g. "p99_e2e<250ms: measured 312.4 ms (FAILED)".
func (r SLOResult) String() string {
	status := "ok"
	if !r.Pass {
		status = "FAILED"
	}
	if !r.Measured {
		return fmt.Sprintf("%s: not measured (%s)", r.Clause, status)
	}
	return strings.TrimSpace(fmt.Sprintf("%s: measured %.6g %s", r.Clause, r.Value, r.Unit)) + " (" + status + ")"
}

// Evaluate checks every clause against r; a metric the run did not
// measure fails its clause.
func (s SLO) Evaluate(r *Report) []SLOResult {
	out := make([]SLOResult, 0, len(s))
	for _, c := range s {
		v, ok := r.metric(c.Metric)
		res := SLOResult{Clause: c.Text, Measured: ok, Value: v}
		if _, _, lat := latencyMetric(c.Metric); lat {
			res.Unit = "ms"
		}
		if ok {
			switch c.Op {
			case "<":
				res.Pass = v < c.Value
			case "<=":
				res.Pass = v <= c.Value
			case ">":
				res.Pass = v > c.Value
			case ">=":
				res.Pass = v >= c.Value
			case "=":
				res.Pass = v == c.Value
			}
		}
		out = append(out, res)
	}
	return out
}

// metric returns an SLO metric of the report, and whether the run measured it.
func (r *Report) metric(name string) (float64, bool) {
	if q, kind, ok := latencyMetric(name); ok {
		l, ok := r.Latency[kind]
		if !ok || l.Count == 0 {
			return 0, false
		}
		return l.Quantile(q)
	}
	switch name {
	case "loss":
		return float64(r.Ledger.Lost()), r.Ledger.Checked
	case "duplicates":
		return float64(r.Ledger.Duplicates), r.Ledger.Checked
	case "errors":
		var n int64
		for _, v := range r.Errors {
			n += v
		}
		return float64(n), true
	case "rate":
		if r.Steps != nil {
			return r.MaxSustainedRate, true
		}
		return r.Rate.Achieved, true
	}
	return 0, false
}

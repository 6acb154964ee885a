package scenarios

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/gale-iot/gale/loadgen"
	"github.com/prometheus/common/model"
)

// AssertionResult is the outcome of one assertion.
type AssertionResult struct {
	// Index is the position in the file's assert list; Line its line.
	Index, Line int
	// Name describes the assertion.
	Name string
	Pass bool
	// Expected and Actual say what was wanted and what was found.
	Expected, Actual string
	// Timeline is the end of the timeline, for a failed assertion.
	Timeline string
	// Took is how long the assertion took to pass (or to give up).
	Took time.Duration
}

// check evaluates the assertions; those that can become true later (PromQL,
// alerts) are retried until the topology's settle time has passed.
func (r *runner) check(ctx context.Context) []AssertionResult {
	deadline := time.Now().Add(r.sc.Topology.Settle)
	out := make([]AssertionResult, len(r.sc.Assert))
	for i, a := range r.sc.Assert {
		start := time.Now()
		res := AssertionResult{Index: i, Line: r.sc.AssertLine(i), Name: a.String()}
		for {
			var retry bool
			res.Pass, res.Expected, res.Actual, retry = r.eval(ctx, a)
			if res.Pass || !retry || time.Now().After(deadline) || sleep(ctx, 250*time.Millisecond) != nil {
				break
			}
		}
		res.Took = time.Since(start)
		if !res.Pass {
			res.Timeline = r.tail(5)
		}
		out[i] = res
	}
	return out
}

// String describes the assertion.
func (a Assertion) String() string {
	switch {
	case a.PromQL != nil:
		at := "end"
		if a.PromQL.At != nil {
			at = "sim " + a.PromQL.At.String()
		}
		return fmt.Sprintf("promql %s at %s", a.PromQL.Query, at)
	case a.Alert != nil:
		key := a.Alert.Key
		if key == "" {
			key = "any key"
		}
		return fmt.Sprintf("alert %s for %s ×%d", a.Alert.Rule, key, *a.Alert.Count)
	case a.Loss != nil:
		return "no loss in load " + a.Loss.Load
	case a.Duplicates != nil:
		return "no duplicates in load " + a.Duplicates.Load
	case a.Rate != nil:
		return fmt.Sprintf("load %s achieves ≥ %g of its rate", a.Rate.Load, a.Rate.MinRatio)
	case a.Latency != nil:
		l := a.Latency
		return fmt.Sprintf("load %s %s %s latency below %s", l.Load, l.Kind, l.Percentile, l.Below)
	case a.Commands != nil:
		return fmt.Sprintf("every %s command answered %d", a.Commands.Step, a.Commands.Code)
	case a.Rejected != nil:
		return "every bad message of storm " + a.Rejected.Load + " rejected"
	}
	return "?"
}

// eval checks a once; retry says whether waiting may change the outcome.
func (r *runner) eval(ctx context.Context, a Assertion) (pass bool, expected, actual string, retry bool) {
	switch {
	case a.PromQL != nil:
		return r.evalPromQL(ctx, *a.PromQL)
	case a.Alert != nil:
		return r.evalAlert(ctx, *a.Alert)
	case a.Commands != nil:
		return r.evalCommands(*a.Commands)
	case a.Rejected != nil:
		return r.evalStorm(ctx, a.Rejected.Load)
	}
	var name string
	for _, ref := range []*LoadRef{a.Loss, a.Duplicates} {
		if ref != nil {
			name = ref.Load
		}
	}
	if a.Rate != nil {
		name = a.Rate.Load
	}
	if a.Latency != nil {
		name = a.Latency.Load
	}
	run := r.loads[name]
	if run.err != nil || run.rep == nil {
		return false, "a load report", fmt.Sprintf("load failed: %v", run.err), false
	}
	rep := run.rep
	switch {
	case a.Loss != nil:
		checked, lost, parts := 0, false, []string{}
		for _, nl := range r.nodeLedgers(ctx, run) {
			l := nl.rep
			switch {
			case nl.down:
				parts = append(parts, nl.node+": down at the end, not checked")
			case !l.Checked:
				lost = true
				parts = append(parts, nl.node+": not checked: "+l.Error)
			default:
				checked++
				lost = lost || l.Lost() > 0
				parts = append(parts, fmt.Sprintf("%s: %d of %d acknowledged lost (%d missing, %d wrong value)%s",
					nl.node, l.Lost(), l.Acknowledged, l.Missing, l.WrongValue, lossDetail(l)))
			}
		}
		return checked > 0 && !lost, "0 acknowledged samples lost on every running node", strings.Join(parts, "; "), false
	case a.Duplicates != nil:
		checked, dup, parts := 0, false, []string{}
		for _, nl := range r.nodeLedgers(ctx, run) {
			if nl.down {
				parts = append(parts, nl.node+": down at the end, not checked")
				continue
			}
			if nl.rep.Checked {
				checked++
			}
			dup = dup || !nl.rep.Checked || nl.rep.Duplicates > 0
			parts = append(parts, fmt.Sprintf("%s: %d duplicates (checked %t)", nl.node, nl.rep.Duplicates, nl.rep.Checked))
		}
		return checked > 0 && !dup, "0 duplicates on every running node", strings.Join(parts, "; "), false
	case a.Rate != nil:
		return rep.Rate.Ratio >= a.Rate.MinRatio, fmt.Sprintf("achieved/offered ≥ %g", a.Rate.MinRatio),
			fmt.Sprintf("%.1f of %.1f msg/s (%.3f)", rep.Rate.Achieved, rep.Rate.Offered, rep.Rate.Ratio), false
	default:
		l := a.Latency
		lat, ok := rep.Latency[l.Kind]
		if !ok || lat.Count == 0 {
			return false, fmt.Sprintf("%s %s < %s", l.Kind, l.Percentile, l.Below), "no " + l.Kind + " latency measured", false
		}
		ms, _ := lat.Quantile(l.Percentile) // the percentile was validated with the file
		got := time.Duration(ms * float64(time.Millisecond))
		return got < l.Below, fmt.Sprintf("%s %s < %s", l.Kind, l.Percentile, l.Below), fmt.Sprintf("%s (%d samples)", got.Round(time.Microsecond*100), lat.Count), false
	}
}

func lossDetail(l loadgen.LedgerReport) string {
	if len(l.Devices) == 0 {
		return ""
	}
	d := l.Devices[0]
	return fmt.Sprintf("; e.g. %s missing seq %v", d.Device, d.MissingSeq[:min(10, len(d.MissingSeq))])
}

func (r *runner) evalPromQL(ctx context.Context, p PromQLAssert) (bool, string, string, bool) {
	at := r.fleet.Now()
	if p.At != nil {
		at = r.t0.Add(*p.At)
	}
	var want []string
	switch {
	case p.Empty:
		want = append(want, "an empty result")
	case p.Equals != nil:
		want = append(want, fmt.Sprintf("= %g ± %g", *p.Equals, p.Tolerance))
	}
	if p.Min != nil {
		want = append(want, fmt.Sprintf("≥ %g", *p.Min))
	}
	if p.Max != nil {
		want = append(want, fmt.Sprintf("≤ %g", *p.Max))
	}
	expected := "every series " + strings.Join(want, " and ")
	got, err := r.api.Prom.Vector(ctx, p.Query, at)
	if err != nil {
		return false, expected, err.Error(), true
	}
	if p.Empty {
		return len(got) == 0, expected, fmtSeries(got), true
	}
	if len(got) == 0 {
		return false, expected, "no series", true
	}
	for _, s := range got {
		v := float64(s.Value)
		if p.Equals != nil && math.Abs(v-*p.Equals) > p.Tolerance ||
			p.Min != nil && v < *p.Min || p.Max != nil && v > *p.Max || math.IsNaN(v) {
			return false, expected, fmtSeries(got), true
		}
	}
	return true, expected, fmtSeries(got), true
}

func fmtSeries(ss model.Vector) string {
	if len(ss) == 0 {
		return "no series"
	}
	var parts []string
	for i, s := range ss {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… %d series in all", len(ss)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %g", s.Metric, float64(s.Value)))
	}
	return strings.Join(parts, "; ")
}

func (r *runner) evalAlert(ctx context.Context, a AlertAssert) (bool, string, string, bool) {
	expected := fmt.Sprintf("%d episode(s)", *a.Count)
	if a.Fired != nil {
		expected += fmt.Sprintf(", fired at sim %s…%s", a.Fired[0], a.Fired[1])
	}
	if a.Resolved != nil {
		expected += fmt.Sprintf(", resolved at sim %s…%s", a.Resolved[0], a.Resolved[1])
	}
	all, err := r.api.Alerts(ctx, url.Values{"rule": {a.Rule}})
	if err != nil {
		return false, expected, err.Error(), true
	}
	var got []string
	matching := 0
	for _, al := range all {
		if a.Key != "" && al.Key != a.Key {
			continue
		}
		fired, resolved := r.since(al.FiredAt), r.since(al.ResolvedAt)
		desc := fmt.Sprintf("%s %s", al.Key, al.State)
		if al.FiredAt != 0 {
			desc += " fired at sim " + fired.String()
		}
		if al.ResolvedAt != 0 {
			desc += " resolved at sim " + resolved.String()
		}
		got = append(got, desc)
		if inWindow(a.Fired, al.FiredAt != 0, fired) && inWindow(a.Resolved, al.ResolvedAt != 0, resolved) {
			matching++
		}
	}
	actual := fmt.Sprintf("%d matching of %d: %s", matching, len(got), strings.Join(got, "; "))
	if len(got) == 0 {
		actual = "no alert"
	}
	// Exactly Count alerts, all of them matching.
	return matching == *a.Count && len(got) == *a.Count, expected, actual, true
}

// since converts an alert time (sim Unix ms) to sim time since the start.
func (r *runner) since(ms int64) time.Duration {
	return time.UnixMilli(ms).Sub(r.t0).Round(time.Second)
}

func inWindow(w []time.Duration, set bool, d time.Duration) bool {
	return w == nil || set && d >= w[0] && d <= w[1]
}

func (r *runner) evalCommands(c CommandsAssert) (bool, string, string, bool) {
	codes := map[string]int{}
	for _, res := range r.commands[c.Step] {
		k := fmt.Sprint(res.Code)
		if res.Err != "" {
			k = res.Err
		}
		codes[k]++
	}
	var parts []string
	for _, k := range sortedKeys(codes) {
		parts = append(parts, fmt.Sprintf("%d× %s", codes[k], k))
	}
	n := len(r.commands[c.Step])
	return n > 0 && codes[fmt.Sprint(c.Code)] == n, fmt.Sprintf("all %d answered %d", n, c.Code), strings.Join(parts, ", "), false
}

func (r *runner) evalStorm(ctx context.Context, name string) (bool, string, string, bool) {
	s := r.storms[name]
	got, err := r.api.Prom.Vector(ctx, fmt.Sprintf(`count_over_time(V{product="scn-storm",device=%q}[30d])`, name+"-victim"), r.fleet.Now())
	if err != nil {
		return false, "no bad message accepted", err.Error(), true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	total, accepted := 0, 0
	for _, k := range stormKinds {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, s.accepted[k], s.sent[k]))
		total += s.sent[k]
		accepted += s.accepted[k]
	}
	actual := "accepted/sent: " + strings.Join(parts, ", ")
	if len(got) > 0 {
		actual += fmt.Sprintf("; %g samples stored on the victim through the ACL", float64(got[0].Value))
		accepted++
	}
	if len(s.notes) > 0 {
		actual += "; " + strings.Join(s.notes, "; ")
	}
	return total > 0 && accepted == 0, "no bad message accepted", actual, false
}

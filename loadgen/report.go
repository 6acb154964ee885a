package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run; it is written as JSON (--report-json),
// HTML (--report-html) and a text summary. Latency is keyed by kind
// (connect, puback, e2e, send_lag, reconnect, ack_gap), so kinds measured later (such as
// publish-to-alert once rules exist) add keys without changing the shape.
type Report struct {
	// Target is "gale" (signed logins, registry, ledger) or "plain" (a plain MQTT broker).
	Target      string        `json:"target"`
	MQTTAddr    string        `json:"mqtt_addr"`
	Started     time.Time     `json:"started"`
	Finished    time.Time     `json:"finished"`
	Interrupted bool          `json:"interrupted,omitempty"`
	Profile     ProfileReport `json:"profile"`
	Devices     struct {
		Requested int `json:"requested"`
		Connected int `json:"connected"`
	} `json:"devices"`
	Messages struct {
		Offered      int64 `json:"offered"`
		Sent         int64 `json:"sent"`
		Acknowledged int64 `json:"acknowledged"`
		Failed       int64 `json:"failed"`
	} `json:"messages"`
	Rate    RateReport         `json:"rate"`
	Latency map[string]Latency `json:"latency"`
	// E2EUnseen counts probe messages that never became queryable before the settle timeout.
	E2EUnseen int              `json:"e2e_unseen,omitempty"`
	Errors    map[string]int64 `json:"errors"`
	Ledger    LedgerReport     `json:"ledger"`
	CPU       CPUReport        `json:"cpu"`
	Timeline  []TimelinePoint  `json:"timeline"`
	// Steps and MaxSustainedRate are set by a step search.
	Steps            []StepReport `json:"steps,omitempty"`
	MaxSustainedRate float64      `json:"max_sustained_rate,omitempty"`
	// Baseline is the same profile against a plain MQTT broker (--compare-plain).
	Baseline   *Report     `json:"baseline,omitempty"`
	Comparison *Comparison `json:"comparison,omitempty"`
	SLO        []SLOResult `json:"slo,omitempty"`
}

// ProfileReport echoes the load shape.
type ProfileReport struct {
	Devices       int     `json:"devices"`
	Rate          float64 `json:"rate"`
	RatePerDevice float64 `json:"rate_per_device"`
	QoS           int     `json:"qos"`
	Points        int     `json:"points"`
	Payload       string  `json:"payload"`
	RampUp        string  `json:"ramp_up"`
	Duration      string  `json:"duration"`
	RampDown      string  `json:"ramp_down"`
	Count         int     `json:"count,omitempty"`
	MaxInflight   int     `json:"max_inflight"`
	TLS           bool    `json:"tls,omitempty"`
}

// RateReport compares the offered and achieved rates, in messages per
// second, over the measurement window (the steady phase, once every
// device has started).
type RateReport struct {
	Offered  float64 `json:"offered"`
	Achieved float64 `json:"achieved"`
	// Ratio is Achieved / Offered.
	Ratio float64 `json:"ratio"`
	// Datapoints is Achieved × (points + Seq).
	Datapoints float64 `json:"datapoints"`
	WindowS    float64 `json:"window_s"`
}

// CPUReport is the generator's own CPU use.
type CPUReport struct {
	UserS   float64 `json:"user_s"`
	SystemS float64 `json:"system_s"`
	WallS   float64 `json:"wall_s"`
	// Cores is (user + system) / wall.
	Cores float64 `json:"cores"`
}

// StepReport is one step of a step search.
type StepReport struct {
	Offered   float64 `json:"offered"`
	Achieved  float64 `json:"achieved"`
	PubackP50 float64 `json:"puback_p50_ms"`
	PubackP99 float64 `json:"puback_p99_ms"`
	Errors    int64   `json:"errors"`
	Pass      bool    `json:"pass"`
	// Why is the reason a step failed.
	Why string `json:"why,omitempty"`
}

// Comparison relates the main run to its plain-broker baseline (main / baseline).
type Comparison struct {
	RateRatio      float64 `json:"rate_ratio"`
	PubackP50Ratio float64 `json:"puback_p50_ratio,omitempty"`
	PubackP99Ratio float64 `json:"puback_p99_ratio,omitempty"`
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// compare sets r's baseline and the ratios.
func (r *Report) compare(base *Report) {
	r.Baseline = base
	c := &Comparison{RateRatio: ratio(r.Rate.Achieved, base.Rate.Achieved)}
	if r.Steps != nil && base.Steps != nil {
		c.RateRatio = ratio(r.MaxSustainedRate, base.MaxSustainedRate)
	}
	if a, b := r.Latency["puback"], base.Latency["puback"]; a.Count > 0 && b.Count > 0 {
		c.PubackP50Ratio, c.PubackP99Ratio = ratio(a.P50, b.P50), ratio(a.P99, b.P99)
	}
	r.Comparison = c
}

// SLOFailures returns the failed clauses.
func (r *Report) SLOFailures() []SLOResult {
	var out []SLOResult
	for _, s := range r.SLO {
		if !s.Pass {
			out = append(out, s)
		}
	}
	return out
}

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	r.text(&b, "")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) text(b *strings.Builder, indent string) {
	p := func(format string, a ...any) { fmt.Fprintf(b, indent+format+"\n", a...) }
	pr := r.Profile
	shape := "duration " + pr.Duration
	if pr.RampUp != "0s" || pr.RampDown != "0s" {
		shape = fmt.Sprintf("ramp-up %s, steady %s, ramp-down %s", pr.RampUp, pr.Duration, pr.RampDown)
	}
	if pr.Count > 0 {
		shape += fmt.Sprintf(", %d messages per device", pr.Count)
	}
	p("gale loadgen: %s broker at %s; %d devices, %.6g msgs/s (%.4g per device), QoS %d, %d points (%s), %s",
		r.Target, r.MQTTAddr, pr.Devices, pr.Rate, pr.RatePerDevice, pr.QoS, pr.Points, pr.Payload, shape)
	if r.Interrupted {
		p("INTERRUPTED: the figures cover the run until then")
	}
	p("devices    %d connected of %d", r.Devices.Connected, r.Devices.Requested)
	m := r.Messages
	p("messages   offered %d, sent %d, acknowledged %d, failed %d", m.Offered, m.Sent, m.Acknowledged, m.Failed)
	if r.Steps == nil {
		p("rate       offered %.1f/s, achieved %.1f/s (%.1f%%), %.0f datapoints/s, over %.1fs of steady load",
			r.Rate.Offered, r.Rate.Achieved, 100*r.Rate.Ratio, r.Rate.Datapoints, r.Rate.WindowS)
	}
	p("latency    %8s %9s %9s %9s %9s %9s  (ms, from each message's scheduled time; reconnect: outage to connected; ack_gap: between a device's acknowledgements)", "count", "p50", "p90", "p99", "p99.9", "max")
	for _, k := range latNames {
		if l, ok := r.Latency[k]; ok {
			p("  %-8s %8d %9.2f %9.2f %9.2f %9.2f %9.2f", k, l.Count, l.P50, l.P90, l.P99, l.P999, l.Max)
		}
	}
	if r.E2EUnseen > 0 {
		p("  %d end-to-end probes never became queryable", r.E2EUnseen)
	}
	if len(r.Errors) == 0 {
		p("errors     none")
	} else {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		p("errors     %s", strings.Join(parts, ", "))
	}
	l := r.Ledger
	switch {
	case r.Target == "plain":
	case !l.Checked && l.Error != "":
		p("loss       not checked: %s", l.Error)
	case !l.Checked:
		p("loss       not checked")
	default:
		p("loss       %d of %d acknowledged samples not stored (missing %d, wrong value %d); duplicates %d; rejected %d; stored unacknowledged %d; checked in %.1fs",
			l.Lost(), l.Acknowledged, l.Missing, l.WrongValue, l.Duplicates, l.Rejected, l.UnackedStored, l.SettleSeconds)
		for i, d := range l.Devices {
			if i == 10 {
				p("  ... %d more devices", len(l.Devices)-i)
				break
			}
			var parts []string
			for _, c := range []struct {
				what string
				n    int64
				seqs []int64
			}{{"missing", d.Missing, d.MissingSeq}, {"wrong value", d.WrongValue, d.WrongSeq}, {"duplicated", d.Duplicates, d.DupSeq}} {
				if c.n > 0 {
					parts = append(parts, fmt.Sprintf("%s %d %s", c.what, c.n, seqList(c.seqs)))
				}
			}
			p("  %s: %s", d.Device, strings.Join(parts, ", "))
		}
	}
	p("cpu        %.2f cores (user %.1fs, system %.1fs over %.1fs)", r.CPU.Cores, r.CPU.UserS, r.CPU.SystemS, r.CPU.WallS)
	if r.Steps != nil {
		p("steps      %10s %10s %9s %9s %7s", "offered/s", "achieved/s", "p50 ms", "p99 ms", "errors")
		for _, s := range r.Steps {
			verdict := "pass"
			if !s.Pass {
				verdict = "FAIL: " + s.Why
			}
			p("           %10.0f %10.0f %9.2f %9.2f %7d  %s", s.Offered, s.Achieved, s.PubackP50, s.PubackP99, s.Errors, verdict)
		}
		p("max sustained rate  %.0f msgs/s (the highest achieved rate of a passing step before the first failure)", r.MaxSustainedRate)
	}
	if r.Baseline != nil {
		p("baseline (plain broker at %s):", r.Baseline.MQTTAddr)
		r.Baseline.text(b, indent+"  | ")
		c := r.Comparison
		p("vs plain   rate %.2f×, PUBACK p50 %.2f×, p99 %.2f×", c.RateRatio, c.PubackP50Ratio, c.PubackP99Ratio)
		if r.Steps != nil && r.Baseline.Steps != nil {
			p("step search  max sustained rate %.0f msgs/s, plain broker %.0f msgs/s: %.2f×", r.MaxSustainedRate, r.Baseline.MaxSustainedRate, c.RateRatio)
		}
	}
	for _, s := range r.SLO {
		p("slo        %s", s)
	}
}

func seqList(seqs []int64) string {
	if len(seqs) == 0 {
		return ""
	}
	var parts []string
	for i, s := range seqs {
		if i == 20 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprint(s))
	}
	return "(seq " + strings.Join(parts, " ") + ")"
}

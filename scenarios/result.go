package scenarios

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// Result is the outcome of a scenario run.
type Result struct {
	Name, File string
	// Cloud is the cloud it ran on (inprocess, containers).
	Cloud string
	// Wall is how long the run took; Sim how much sim time the timeline spanned.
	Wall, Sim  time.Duration
	Timeline   []Event
	Assertions []AssertionResult
	// Figures are the measured figures, one line each (load rates, latency, loss, commands, storms).
	Figures []string
}

// Failed returns the failed assertions.
func (r Result) Failed() []AssertionResult {
	var out []AssertionResult
	for _, a := range r.Assertions {
		if !a.Pass {
			out = append(out, a)
		}
	}
	return out
}

// Failure formats a failed assertion: where, what was expected and found,
// and the end of the timeline.
func (a AssertionResult) Failure(file string) string {
	return fmt.Sprintf("%s:%d: %s\n  expected: %s\n  actual:   %s\n%s", file, a.Line, a.Name, a.Expected, a.Actual, a.Timeline)
}

// figures collects the measured figures of a run.
func (r *runner) figures(res Result) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range sortedKeys(r.loads) {
		run := r.loads[name]
		if run.rep == nil {
			res.Figures = append(res.Figures, fmt.Sprintf("load %s: failed: %v", name, run.err))
			continue
		}
		rep := run.rep
		line := fmt.Sprintf("load %s: %d devices, offered %.1f msg/s, achieved %.1f msg/s; acked %d, lost %d, duplicates %d",
			name, rep.Devices.Connected, rep.Rate.Offered, rep.Rate.Achieved, rep.Ledger.Acknowledged, rep.Ledger.Lost(), rep.Ledger.Duplicates)
		for _, kind := range []string{"puback", "e2e"} {
			if l, ok := rep.Latency[kind]; ok && l.Count > 0 {
				line += fmt.Sprintf("; %s p50 %.1f ms p99 %.1f ms", kind, l.P50, l.P99)
			}
		}
		if l, ok := rep.Latency["reconnect"]; ok && l.Count > 0 {
			line += fmt.Sprintf("; %d reconnects, back after p50 %.0f ms max %.0f ms", l.Count, l.P50, l.Max)
		}
		if l, ok := rep.Latency["ack_gap"]; ok && l.Count > 0 {
			line += fmt.Sprintf("; longest a device went without a PUBACK %.0f ms", l.Max)
		}
		if errs := rep.Errors; len(errs) > 0 {
			line += fmt.Sprintf("; errors %v", errs)
		}
		res.Figures = append(res.Figures, line)
		if len(r.nodes) > 1 {
			for _, nl := range run.ledgers {
				line := fmt.Sprintf("  ledger of %s on %s: %d acknowledged, %d stored, %d lost, %d duplicates",
					name, nl.node, nl.rep.Acknowledged, nl.rep.Stored, nl.rep.Lost(), nl.rep.Duplicates)
				if nl.down {
					line = fmt.Sprintf("  ledger of %s on %s: not checked, the node was down", name, nl.node)
				}
				res.Figures = append(res.Figures, line)
			}
		}
	}
	for _, a := range res.Assertions {
		if r.sc.Assert[a.Index].Alert != nil {
			res.Figures = append(res.Figures, fmt.Sprintf("%s: %s", a.Name, a.Actual))
		}
	}
	for _, name := range sortedKeys(r.commands) {
		codes := map[int]int{}
		failed := 0
		for _, c := range r.commands[name] {
			if c.Err != "" {
				failed++
			} else {
				codes[c.Code]++
			}
		}
		res.Figures = append(res.Figures, fmt.Sprintf("command %s: %d calls, replies by code %v, %d API errors", name, len(r.commands[name]), codes, failed))
	}
	for _, name := range sortedKeys(r.storms) {
		s := r.storms[name]
		s.mu.Lock()
		total := 0
		for _, n := range s.sent {
			total += n
		}
		res.Figures = append(res.Figures, fmt.Sprintf("storm %s: %d bad messages %v, accepted %v", name, total, s.sent, s.accepted))
		s.mu.Unlock()
	}
	return res
}

// WriteSummary writes a short text summary: verdict (PASS, FAIL or ERROR
// when the run could not finish), times, figures, failures and the error.
func (o RunOutcome) WriteSummary(w io.Writer) error {
	r := o.Result
	verdict := "PASS"
	if len(r.Failed()) > 0 {
		verdict = "FAIL"
	}
	if o.Err != nil {
		verdict = "ERROR"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (%s): %d/%d assertions passed, wall %s, sim %s\n", verdict, r.Name, r.File,
		len(r.Assertions)-len(r.Failed()), len(r.Assertions), r.Wall.Round(100*time.Millisecond), r.Sim.Round(time.Second))
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	for _, a := range r.Failed() {
		fmt.Fprintf(&b, "  FAILED %s\n", strings.ReplaceAll(a.Failure(r.File), "\n", "\n  "))
	}
	if o.Err != nil {
		fmt.Fprintf(&b, "  ERROR %s\n", strings.ReplaceAll(o.Err.Error(), "\n", "\n  "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JUnit XML (the schema Jenkins, GitLab and GitHub reporters read).
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Time      float64     `xml:"time,attr"`
	Cases     []junitCase `xml:"testcase"`
	SystemOut string      `xml:"system-out,omitempty"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

// RunOutcome is a result with the error of its run, for reports over many files.
type RunOutcome struct {
	Result Result
	Err    error
}

// WriteJUnit writes one test suite per run and one test case per
// assertion; a run that failed before its assertions is one errored case.
func WriteJUnit(w io.Writer, runs []RunOutcome) error {
	var doc junitSuites
	for _, run := range runs {
		r := run.Result
		s := junitSuite{Name: r.Name, Time: r.Wall.Seconds(), SystemOut: strings.Join(r.Figures, "\n")}
		if s.Name == "" {
			s.Name = r.File
		}
		for _, a := range r.Assertions {
			c := junitCase{Name: fmt.Sprintf("line %d: %s", a.Line, a.Name), Classname: "scenario." + s.Name, Time: a.Took.Seconds()}
			if !a.Pass {
				c.Failure = &junitProblem{Message: fmt.Sprintf("expected %s, got %s", a.Expected, a.Actual), Body: a.Failure(r.File)}
				s.Failures++
			}
			s.Cases = append(s.Cases, c)
		}
		if run.Err != nil {
			s.Cases = append(s.Cases, junitCase{Name: "run", Classname: "scenario." + s.Name, Error: &junitProblem{Message: run.Err.Error(), Body: run.Err.Error()}})
			s.Errors++
		}
		s.Tests = len(s.Cases)
		doc.Suites = append(doc.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

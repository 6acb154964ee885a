package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/platform/api"
)

// TestFile is a rule unit-test file, in the spirit of `promtool test rules`.
type TestFile struct {
	// RuleFiles are relative to the test file.
	RuleFiles []string   `yaml:"ruleFiles"`
	Tests     []TestCase `yaml:"tests"`
}

// TestCase feeds input to the rules and lists every alert episode expected.
type TestCase struct {
	Name string `yaml:"name"`
	// Devices gives the identity of the device names used in the input.
	Devices map[string]TestDevice `yaml:"devices"`
	// Series are regular samples: a value every Interval from Start.
	Series []TestSeries `yaml:"series"`
	// Samples are single samples; Arrive (default At) places a late sample in the stream.
	Samples []TestSample `yaml:"samples"`
	Events  []TestEvent  `yaml:"events"`
	// Resume samples are backfill: the engine must never see them.
	Resume []TestSeries `yaml:"resume"`
	// BadQuality samples carry a bad quality flag: the engine must never see them either.
	BadQuality []TestSeries `yaml:"badQuality"`
	// RestartAt restarts the engine from its snapshot at these stream times.
	RestartAt []Duration `yaml:"restartAt"`
	// Until advances the clock to this offset at the end, as the wall clock
	// does when every stream is current (for nodata and event resolution).
	Until  Duration        `yaml:"until"`
	Expect []ExpectedAlert `yaml:"expect"`
}

// TestDevice is a device's identity in a test. Gateway names the gateway a
// sub-device sits behind: its sub-devices share one stream (see Sample.Source).
type TestDevice struct {
	Product string `yaml:"product"`
	Site    string `yaml:"site"`
	Org     string `yaml:"org"`
	Gateway string `yaml:"gateway"`
}

// TestSeries is a device point's values, one every Interval: numbers,
// "NxK" for N repeated K times, and "_" (or "_xK") for a missing sample. Delay makes
// each sample arrive that long after its time (a lagging edge or partition).
type TestSeries struct {
	Device   string   `yaml:"device"`
	Point    string   `yaml:"point"`
	Start    Duration `yaml:"start"`
	Interval Duration `yaml:"interval"`
	Values   string   `yaml:"values"`
	Delay    Duration `yaml:"delay"`
}

// TestSample is one sample at At, arriving at Arrive.
type TestSample struct {
	Device string   `yaml:"device"`
	Point  string   `yaml:"point"`
	At     Duration `yaml:"at"`
	Arrive Duration `yaml:"arrive"`
	Value  float64  `yaml:"value"`
}

// TestEvent is a device event at At.
type TestEvent struct {
	Device string   `yaml:"device"`
	Event  string   `yaml:"event"`
	At     Duration `yaml:"at"`
}

// ExpectedAlert is one alert episode: when it fired and (if it did) resolved.
type ExpectedAlert struct {
	Rule     string    `yaml:"rule"`
	Key      string    `yaml:"key"`
	Fired    Duration  `yaml:"fired"`
	Resolved *Duration `yaml:"resolved"`
}

// testEpoch is the event time that offset 0 of a test maps to.
const testEpoch = int64(1_700_000_000_000)

// TestResult is the outcome of one test case.
type TestResult struct {
	File, Name string
	Failures   []string
}

// RunTestFile runs every test case of a rule test file.
func RunTestFile(path string) ([]TestResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rule test file: %w", err)
	}
	var tf TestFile
	if err := config.Decode(path, b, &tf); err != nil {
		return nil, err
	}
	var files []string
	for _, f := range tf.RuleFiles {
		files = append(files, filepath.Join(filepath.Dir(path), f))
	}
	rules, err := LoadFiles(files...)
	if err != nil {
		return nil, err
	}
	var out []TestResult
	for _, tc := range tf.Tests {
		res := TestResult{File: path, Name: tc.Name}
		got, err := tc.run(rules)
		if err != nil {
			res.Failures = append(res.Failures, err.Error())
		} else {
			res.Failures = compareAlerts(tc.Expect, got)
		}
		out = append(out, res)
	}
	return out, nil
}

// arrival is one input of a test case, a sample or an event, with its
// event time (at) and the time it reaches the engine (arrive).
type arrival struct {
	at, arrive int64
	sample     *Sample
	resume     bool
	quality    uint8
	event      *TestEvent
}

// run feeds the case's input to an engine in arrival order and returns the episodes seen.
func (tc TestCase) run(rules []*Rule) ([]ExpectedAlert, error) {
	stream, err := tc.arrivals()
	if err != nil {
		return nil, err
	}
	return tc.replay(rules, stream)
}

// ident is the identity of the test case's device name, of org "test"
// unless it declares one.
func (tc TestCase) ident(name string) (Sample, error) {
	d, ok := tc.Devices[name]
	if !ok {
		return Sample{}, fmt.Errorf("device %q is not declared under devices", name)
	}
	if d.Org == "" {
		d.Org = "test"
	}
	return Sample{Org: d.Org, Product: d.Product, Device: name, Site: d.Site, Source: d.Gateway}, nil
}

// arrivals is everything the test case sends (series, resumed and
// bad-quality series, single samples, events), in the order it arrives.
func (tc TestCase) arrivals() ([]arrival, error) {
	var stream []arrival
	addSeries := func(series []TestSeries, resume bool, quality uint8) error {
		for _, s := range series {
			id, err := tc.ident(s.Device)
			if err != nil {
				return err
			}
			vals, err := expandValues(s.Values)
			if err != nil {
				return fmt.Errorf("series %s/%s: %w", s.Device, s.Point, err)
			}
			for i, v := range vals {
				if v == nil {
					continue
				}
				smp := id
				smp.Point, smp.Value = s.Point, *v
				smp.Time = testEpoch + s.Start.Millis() + int64(i)*s.Interval.Millis()
				stream = append(stream, arrival{at: smp.Time, arrive: smp.Time + s.Delay.Millis(), sample: &smp, resume: resume, quality: quality})
			}
		}
		return nil
	}
	if err := addSeries(tc.Series, false, api.QualityGood); err != nil {
		return nil, err
	}
	if err := addSeries(tc.Resume, true, api.QualityGood); err != nil {
		return nil, err
	}
	if err := addSeries(tc.BadQuality, false, api.QualityBad); err != nil {
		return nil, err
	}
	for _, s := range tc.Samples {
		id, err := tc.ident(s.Device)
		if err != nil {
			return nil, err
		}
		smp := id
		smp.Point, smp.Value, smp.Time = s.Point, s.Value, testEpoch+s.At.Millis()
		arrive := s.Arrive
		if arrive == 0 {
			arrive = s.At
		}
		stream = append(stream, arrival{at: smp.Time, arrive: testEpoch + arrive.Millis(), sample: &smp})
	}
	for i := range tc.Events {
		if _, err := tc.ident(tc.Events[i].Device); err != nil {
			return nil, err
		}
		t := testEpoch + tc.Events[i].At.Millis()
		stream = append(stream, arrival{at: t, arrive: t, event: &tc.Events[i]})
	}
	sort.SliceStable(stream, func(i, j int) bool { return stream[i].arrive < stream[j].arrive })
	return stream, nil
}

// replay feeds stream to an engine of rules, restarting it from a snapshot
// at each of the test case's restart times, and answers the alert episodes
// it fired, in the order they fired.
func (tc TestCase) replay(rules []*Rule, stream []arrival) ([]ExpectedAlert, error) {
	eng := NewEngine(rules, nil)
	eps := episodes{byKey: map[string]*ExpectedAlert{}}
	restarts := map[int64]bool{}
	for _, r := range tc.RestartAt {
		restarts[testEpoch+r.Millis()] = true
	}
	restartDone := map[int64]bool{}
	for _, a := range stream {
		for rt := range restarts {
			if !restartDone[rt] && a.arrive >= rt {
				snap, err := eng.Snapshot()
				if err != nil {
					return nil, err
				}
				eng = NewEngine(rules, nil)
				if err := eng.Restore(snap); err != nil {
					return nil, err
				}
				restartDone[rt] = true
			}
		}
		if a.sample != nil {
			// The same path as the consumer: a record whose live samples are
			// evaluated, received when it arrives.
			rec := recordOf(*a.sample, a.arrive, a.resume, a.quality)
			ts, _ := observeRecord(eng, &rec, a.sample.Source, "", nil)
			eps.record(ts)
		} else {
			id, _ := tc.ident(a.event.Device)
			eps.record(eng.ObserveEvent(id.Org, id.Product, id.Device, id.Site, a.event.Event, a.at))
		}
		eps.record(eng.Advance(0))
	}
	if tc.Until > 0 {
		eps.record(eng.Advance(testEpoch + tc.Until.Millis()))
	}
	return eps.alerts(), nil
}

// episodes collects the alert episodes of an engine's transitions: one per
// rule, key and start, its resolution added when it comes.
type episodes struct {
	byKey map[string]*ExpectedAlert
	list  []*ExpectedAlert
}

// record adds the episodes ts fire and the resolutions they bring.
func (e *episodes) record(ts []Transition) {
	for _, t := range ts {
		k := fmt.Sprintf("%s\x00%s\x00%d", t.Rule, t.Key, t.StartedAt)
		switch t.Kind {
		case Firing:
			if e.byKey[k] != nil {
				continue
			}
			a := &ExpectedAlert{Rule: t.Rule, Key: t.Key, Fired: Duration(time.Duration(t.At-testEpoch) * time.Millisecond)}
			e.byKey[k] = a
			e.list = append(e.list, a)
		case Resolved:
			if a := e.byKey[k]; a != nil && a.Resolved == nil {
				d := Duration(time.Duration(t.At-testEpoch) * time.Millisecond)
				a.Resolved = &d
			}
		}
	}
}

// alerts is the episodes in the order they fired.
func (e *episodes) alerts() []ExpectedAlert {
	out := make([]ExpectedAlert, len(e.list))
	for i, a := range e.list {
		out[i] = *a
	}
	return out
}

// expandValues reads "1 2 3x4 _ 5 _x3": nil entries are gaps.
func expandValues(s string) ([]*float64, error) {
	var out []*float64
	for _, f := range strings.Fields(s) {
		val, rep, ok := strings.Cut(f, "x")
		n := 1
		if ok {
			var err error
			if n, err = strconv.Atoi(rep); err != nil || n < 1 {
				return nil, fmt.Errorf("bad repeat %q", f)
			}
		}
		var v *float64
		if val != "_" {
			x, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return nil, fmt.Errorf("bad value %q", f)
			}
			v = &x
		}
		for range n {
			out = append(out, v)
		}
	}
	return out, nil
}

func (a ExpectedAlert) String() string {
	s := fmt.Sprintf("%s %s fired at %s", a.Rule, a.Key, time.Duration(a.Fired))
	if a.Resolved != nil {
		s += fmt.Sprintf(", resolved at %s", time.Duration(*a.Resolved))
	} else {
		s += ", still firing"
	}
	return s
}

// compareAlerts lists the differences between expected and actual episodes.
func compareAlerts(want, got []ExpectedAlert) []string {
	count := map[string]int{}
	for _, a := range want {
		count[a.String()]++
	}
	for _, a := range got {
		count[a.String()]--
	}
	var fails []string
	for _, k := range sortedKeys(count) {
		for n := count[k]; n > 0; n-- {
			fails = append(fails, "missing: "+k)
		}
		for n := count[k]; n < 0; n++ {
			fails = append(fails, "unexpected: "+k)
		}
	}
	return fails
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

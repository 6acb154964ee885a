// Package scenarios runs scenario files: a topology (the twin fleet, the
// cloud node, edges), a timeline of steps at sim or wall times (load, faults,
// edge outages, commands, backfill, bad input) and assertions checked against
// the platform's HTTP API, the way an operator would. It drives the platform
// as a black box: over HTTP, MQTT and the twin control API.
package scenarios

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/loadgen"
)

// Sentinel errors of Scenario.Validate.
var (
	ErrName      = errors.New("scenario needs a name")
	ErrTopology  = errors.New("invalid topology")
	ErrStep      = errors.New("invalid step")
	ErrAssertion = errors.New("invalid assertion")
)

// Edge modes of a topology.
const (
	EdgesNone   = "none"   // twin Modbus gateways are not polled
	EdgesNormal = "normal" // one edge per gateway, named like it (GW01)
	EdgesHA     = "ha"     // an active/standby pair per gateway (GW01/a, GW01/b)
)

// Scenario is one scenario file.
type Scenario struct {
	// Name names the scenario (the JUnit test suite).
	Name string `yaml:"name"`
	// Description says what the scenario shows.
	Description string `yaml:"description"`
	// Topology is what runs.
	Topology Topology `yaml:"topology"`
	// Timeline is run in order; each step waits for its time.
	Timeline []Step `yaml:"timeline"`
	// Assert is checked once the timeline and its background steps are done.
	Assert []Assertion `yaml:"assert"`

	file  string
	lines lines
}

// Topology is the stack a scenario runs on.
type Topology struct {
	// RunOn lists the clouds the scenario runs on: inprocess (the default)
	// and containers (the container suite, ci/).
	RunOn []string `yaml:"runOn"`
	// Nodes is how many cloud nodes (node-a, node-b, …, role all) share the
	// Kafka node; devices and the API reach them through load balancers.
	// Default 1.
	Nodes int `yaml:"nodes"`
	// Turbines is how many turbines of the demo farm sit behind Modbus
	// gateways (ten to a gateway, polled by edges), default 2.
	Turbines int `yaml:"turbines"`
	// Direct is how many more turbines (numbered after them) connect
	// directly over MQTT, as the met mast does; they post fault events.
	Direct int `yaml:"direct"`
	// Speed is the sim clock's speed factor (default 1).
	Speed float64 `yaml:"speed"`
	// Seed seeds the fleet (default 1).
	Seed uint64 `yaml:"seed"`
	// Edges is none, normal (default) or ha.
	Edges string `yaml:"edges"`
	// Rules are extra streaming rule files (paths relative to the scenario
	// file) installed next to the shipped rules.
	Rules []string `yaml:"rules"`
	// Settle is how long (wall time) an assertion may take to become true
	// after the timeline ends (default 30s).
	Settle time.Duration `yaml:"settle"`
	// TLS serves the cloud's MQTT and HTTP over TLS only, with a development
	// CA made for the run, which every client of the run trusts: the plant's
	// devices and edges, the load generator, the runner. In-process cloud only.
	TLS bool `yaml:"tls"`
}

// Step is one timeline entry. At (sim time since the start) or Wall (wall
// time since the start) says when it starts; a step with no action only
// waits. Load and Storm run in the background; the other actions finish
// before the next step.
//
// Kill and Start name an edge (GW01, GW01/a), a cloud node (node-a) or
// kafka; Pause and Resume a node or kafka (containers only).
type Step struct {
	At   *time.Duration `yaml:"at"`
	Wall *time.Duration `yaml:"wall"`

	Load      *LoadStep      `yaml:"load"`
	Inject    *FaultStep     `yaml:"inject"`
	Clear     *FaultStep     `yaml:"clear"`
	Cut       string         `yaml:"cut"`
	Restore   string         `yaml:"restore"`
	Kill      string         `yaml:"kill"`
	Start     string         `yaml:"start"`
	Pause     string         `yaml:"pause"`
	Resume    string         `yaml:"resume"`
	Partition *PartitionStep `yaml:"partition"`
	Heal      string         `yaml:"heal"`
	Command   *CommandStep   `yaml:"command"`
	Backfill  *BackfillStep  `yaml:"backfill"`
	Storm     *StormStep     `yaml:"storm"`
}

// Partition sides.
const (
	FromDevices = "devices" // the node loses the devices and the runner (in-process: its MQTT balancer drops them)
	FromKafka   = "kafka"   // the node loses Kafka and the other nodes (containers only)
)

// PartitionStep cuts Node off devices or off Kafka until a heal step names it.
type PartitionStep struct {
	Node string `yaml:"node"`
	From string `yaml:"from"`
}

// LoadStep runs the load generator: Devices devices of product scn publish
// Rate messages/s in total (QoS 1, each with a Seq point) for Duration, then
// the loss ledger checks every acknowledged sample.
type LoadStep struct {
	Name     string        `yaml:"name"`
	Devices  int           `yaml:"devices"`
	Rate     float64       `yaml:"rate"`
	Duration time.Duration `yaml:"duration"`
	// Points is the P points per message besides Seq (default 5).
	Points int `yaml:"points"`
	// Profile is synthetic (default) or turbine.
	Profile string `yaml:"profile"`
	// PublishTimeout is how long a message waits for its PUBACK before the
	// device gives up on the connection and redials (default 5s).
	PublishTimeout time.Duration `yaml:"publishTimeout"`
}

// FaultStep injects or clears a turbine fault (Turbine with Fault) or a
// Modbus gateway fault (Gateway with Fault, Unit, Code as the twin control
// API spells them). A clear with no Fault (and, for a gateway, no Unit)
// clears every fault of the turbine or gateway.
type FaultStep struct {
	Turbine string `yaml:"turbine"`
	Gateway string `yaml:"gateway"`
	Fault   string `yaml:"fault"`
	Unit    int    `yaml:"unit"`
	Code    int    `yaml:"code"`
}

// CommandStep calls a device service through the API Count times (default
// 1), Concurrency at a time (default 1), synchronously; the codes of the
// replies are kept under Name.
type CommandStep struct {
	Name string `yaml:"name"`
	// Device is productKey/deviceKey.
	Device      string         `yaml:"device"`
	Service     string         `yaml:"service"`
	Params      map[string]any `yaml:"params"`
	Count       int            `yaml:"count"`
	Concurrency int            `yaml:"concurrency"`
}

// BackfillStep registers Device (a wind turbine) and sends Value for Point
// every Interval (default 1s) over the Span of sim time before now, through
// resume/batch, as an edge replays its buffer.
type BackfillStep struct {
	Device   string        `yaml:"device"`
	Point    string        `yaml:"point"`
	Value    float64       `yaml:"value"`
	Span     time.Duration `yaml:"span"`
	Interval time.Duration `yaml:"interval"`
}

// StormStep sends bad input for Duration at Rate messages/s: malformed JSON,
// oversize payloads, wrong types, unknown points, logins with a wrong secret
// and publishes on another device's topics, in turn.
type StormStep struct {
	Name     string        `yaml:"name"`
	Rate     float64       `yaml:"rate"`
	Duration time.Duration `yaml:"duration"`
}

// Assertion is one check; exactly one of its fields is set.
type Assertion struct {
	PromQL     *PromQLAssert   `yaml:"promql"`
	Alert      *AlertAssert    `yaml:"alert"`
	Loss       *LoadRef        `yaml:"noLoss"`
	Duplicates *LoadRef        `yaml:"noDuplicates"`
	Rate       *RateAssert     `yaml:"rate"`
	Latency    *LatencyAssert  `yaml:"latency"`
	Commands   *CommandsAssert `yaml:"commands"`
	Rejected   *LoadRef        `yaml:"rejected"`
}

// PromQLAssert evaluates Query at sim time At since the start (default: the
// end of the timeline). Every resulting series must equal Equals (within
// Tolerance) or lie in [Min, Max]; with Empty the result must be empty.
type PromQLAssert struct {
	Query     string         `yaml:"query"`
	At        *time.Duration `yaml:"at"`
	Equals    *float64       `yaml:"equals"`
	Tolerance float64        `yaml:"tolerance"`
	Min       *float64       `yaml:"min"`
	Max       *float64       `yaml:"max"`
	Empty     bool           `yaml:"empty"`
}

// AlertAssert expects Count (default 1) alert episodes of Rule for Key
// ("pk/dk"; empty: any key), each fired in Fired and resolved in Resolved
// when given ([from, to] in sim time since the start). Count 0 expects none.
type AlertAssert struct {
	Rule     string          `yaml:"rule"`
	Key      string          `yaml:"key"`
	Count    *int            `yaml:"count"`
	Fired    []time.Duration `yaml:"fired"`
	Resolved []time.Duration `yaml:"resolved"`
}

// LoadRef names a load or storm step.
type LoadRef struct {
	Load string `yaml:"load"`
}

// RateAssert expects a load's achieved rate to be at least MinRatio of the offered rate.
type RateAssert struct {
	Load     string  `yaml:"load"`
	MinRatio float64 `yaml:"minRatio"`
}

// LatencyAssert expects a load's latency percentile (p50, p90, p99, p999 or
// max) of Kind below Below: puback, e2e (publish to queryable), connect,
// send_lag, reconnect (how long a device was without a connection after
// losing it or giving up on a PUBACK) or ack_gap (between two
// acknowledgements of one device; max: the longest any device could not publish).
type LatencyAssert struct {
	Load       string        `yaml:"load"`
	Kind       string        `yaml:"kind"`
	Percentile string        `yaml:"percentile"`
	Below      time.Duration `yaml:"below"`
}

// CommandsAssert expects every call of a command step answered with Code.
type CommandsAssert struct {
	Step string `yaml:"step"`
	Code int    `yaml:"code"`
}

// lines maps the positions of timeline steps and assertions to file lines.
type lines struct{ steps, asserts []int }

// Load reads and validates a scenario file.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	s, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	s.file = path
	return s, nil
}

// Parse decodes a scenario strictly (unknown fields are errors, with their
// line), fills defaults and validates it; validation errors name the line
// of the step or assertion at fault.
func Parse(data []byte) (*Scenario, error) { return parse("scenario", data) }

// parse is Parse of the file called name, whose errors name it.
func parse(name string, data []byte) (*Scenario, error) {
	var s Scenario
	if err := config.Decode(name, data, &s); err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s.lines = lines{steps: config.ItemLines(&root, "timeline"), asserts: config.ItemLines(&root, "assert")}
	s.Default()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

func lineAt(ls []int, i int) int {
	if i < len(ls) {
		return ls[i]
	}
	return 0
}

// StepLine is the file line of timeline step i (0 when unknown).
func (s *Scenario) StepLine(i int) int { return lineAt(s.lines.steps, i) }

// AssertLine is the file line of assertion i (0 when unknown).
func (s *Scenario) AssertLine(i int) int { return lineAt(s.lines.asserts, i) }

// Default fills defaults.
func (s *Scenario) Default() {
	t := &s.Topology
	if t.RunOn == nil {
		t.RunOn = []string{CloudInProcess}
	}
	t.Nodes = cmp.Or(t.Nodes, 1)
	t.Turbines = cmp.Or(t.Turbines, 2)
	t.Speed = cmp.Or(t.Speed, 1)
	t.Seed = cmp.Or(t.Seed, 1)
	t.Edges = cmp.Or(t.Edges, EdgesNormal)
	t.Settle = cmp.Or(t.Settle, 30*time.Second)
	for i := range s.Timeline {
		st := &s.Timeline[i]
		if l := st.Load; l != nil {
			l.Points = cmp.Or(l.Points, 5)
			l.Profile = cmp.Or(l.Profile, "synthetic")
			l.PublishTimeout = cmp.Or(l.PublishTimeout, 5*time.Second)
		}
		if c := st.Command; c != nil {
			c.Count = max(c.Count, 1)
			c.Concurrency = max(c.Concurrency, 1)
		}
		if b := st.Backfill; b != nil && b.Interval == 0 {
			b.Interval = time.Second
		}
	}
	for i := range s.Assert {
		if a := s.Assert[i].Alert; a != nil && a.Count == nil {
			one := 1
			a.Count = &one
		}
	}
}

// Validate checks the scenario.
func (s *Scenario) Validate() error {
	if s.Name == "" {
		return ErrName
	}
	t := s.Topology
	if len(t.RunOn) == 0 {
		return fmt.Errorf("%w: runOn is empty: name inprocess, containers or both", ErrTopology)
	}
	for _, c := range t.RunOn {
		if c != CloudInProcess && c != CloudContainers {
			return fmt.Errorf("%w: runOn %q: want inprocess or containers", ErrTopology, c)
		}
	}
	switch {
	case t.Nodes < 1 || t.Nodes > 6:
		return fmt.Errorf("%w: nodes must be between 1 and 6", ErrTopology)
	case t.Turbines < 1 || t.Turbines > 100:
		return fmt.Errorf("%w: turbines must be between 1 and 100", ErrTopology)
	case t.Direct < 0 || t.Direct > 100:
		return fmt.Errorf("%w: direct must be between 0 and 100", ErrTopology)
	case t.Speed < 1 || t.Speed > 10000:
		return fmt.Errorf("%w: speed must be between 1 and 10000", ErrTopology)
	case t.Edges != EdgesNone && t.Edges != EdgesNormal && t.Edges != EdgesHA:
		return fmt.Errorf("%w: edges %q: want none, normal or ha", ErrTopology, t.Edges)
	case t.Settle < 0:
		return fmt.Errorf("%w: settle must be positive", ErrTopology)
	case t.TLS && slices.Contains(t.RunOn, CloudContainers):
		return fmt.Errorf("%w: tls runs on the in-process cloud only", ErrTopology)
	}
	targets := targets{edges: s.edgeNames(), nodes: map[string]bool{}, inProcess: slices.Contains(t.RunOn, CloudInProcess)}
	for i := range t.Nodes {
		targets.nodes[NodeName(i)] = true
	}
	named := map[string]string{} // step name → kind
	for i, st := range s.Timeline {
		if err := st.validate(targets, named); err != nil {
			return fmt.Errorf("line %d: timeline[%d]: %w", s.StepLine(i), i, err)
		}
	}
	for i, a := range s.Assert {
		if err := a.validate(named); err != nil {
			return fmt.Errorf("line %d: assert[%d]: %w", s.AssertLine(i), i, err)
		}
	}
	return nil
}

// edgeNames are the edges the topology runs, and the gateways they poll.
func (s *Scenario) edgeNames() map[string]string {
	out := map[string]string{}
	for g := 1; g <= (s.Topology.Turbines+9)/10; g++ {
		gw := fmt.Sprintf("GW%02d", g)
		switch s.Topology.Edges {
		case EdgesNormal:
			out[gw] = gw
		case EdgesHA:
			out[gw+"/a"], out[gw+"/b"] = gw, gw
		}
	}
	return out
}

// targets are what steps may act on.
type targets struct {
	edges     map[string]string // edge → the gateway it polls
	nodes     map[string]bool
	inProcess bool // the scenario runs on the in-process cloud
}

// names lists the edges, nodes and kafka.
func (t targets) names() string {
	return strings.Join(append(append(sortedKeys(t.edges), sortedKeys(t.nodes)...), KafkaName), ", ")
}

// inProcessOnly refuses action on the in-process cloud, with the reason.
func (t targets) inProcessOnly(action string) error {
	if t.inProcess {
		return fmt.Errorf("%w: %s runs on containers only (runOn: [containers]): %s", ErrStep, action, inProcessUnsupported[action])
	}
	return nil
}

func (st Step) validate(tg targets, named map[string]string) error {
	if st.At != nil && st.Wall != nil {
		return fmt.Errorf("%w: at and wall are exclusive", ErrStep)
	}
	if st.At == nil && st.Wall == nil {
		return fmt.Errorf("%w: needs at (sim time) or wall (wall time)", ErrStep)
	}
	actions := 0
	for _, set := range []bool{st.Load != nil, st.Inject != nil, st.Clear != nil, st.Cut != "", st.Restore != "",
		st.Kill != "", st.Start != "", st.Pause != "", st.Resume != "", st.Partition != nil, st.Heal != "",
		st.Command != nil, st.Backfill != nil, st.Storm != nil} {
		if set {
			actions++
		}
	}
	if actions > 1 {
		return fmt.Errorf("%w: one action per step", ErrStep)
	}
	name := func(n, kind string) error {
		if n == "" {
			return fmt.Errorf("%w: %s needs a name", ErrStep, kind)
		}
		if _, dup := named[n]; dup {
			return fmt.Errorf("%w: name %q used twice", ErrStep, n)
		}
		named[n] = kind
		return nil
	}
	switch {
	case st.Load != nil:
		l := st.Load
		if l.Devices < 1 || l.Rate <= 0 || l.Duration <= 0 || l.PublishTimeout < 0 {
			return fmt.Errorf("%w: load needs devices, rate and duration", ErrStep)
		}
		if l.Profile != "synthetic" && l.Profile != "turbine" {
			return fmt.Errorf("%w: load profile %q: want synthetic or turbine", ErrStep, l.Profile)
		}
		return name(l.Name, "load")
	case st.Inject != nil:
		if st.Inject.Fault == "" || (st.Inject.Turbine == "") == (st.Inject.Gateway == "") {
			return fmt.Errorf("%w: inject needs a fault and one of turbine or gateway", ErrStep)
		}
	case st.Clear != nil:
		if (st.Clear.Turbine == "") == (st.Clear.Gateway == "") {
			return fmt.Errorf("%w: clear needs one of turbine or gateway", ErrStep)
		}
	case st.Cut != "" || st.Restore != "":
		gw := st.Cut + st.Restore
		if !containsValue(tg.edges, gw) {
			return fmt.Errorf("%w: no edge polls gateway %q", ErrStep, gw)
		}
	case st.Kill != "" || st.Start != "":
		e := st.Kill + st.Start
		if _, edge := tg.edges[e]; !edge && !tg.nodes[e] && e != KafkaName {
			return fmt.Errorf("%w: no edge, node or kafka named %q (there are %s)", ErrStep, e, tg.names())
		}
	case st.Pause != "" || st.Resume != "":
		e := st.Pause + st.Resume
		if !tg.nodes[e] && e != KafkaName {
			return fmt.Errorf("%w: pause and resume take a node or kafka, not %q (nodes: %s)", ErrStep, e, strings.Join(sortedKeys(tg.nodes), ", "))
		}
		if st.Pause != "" {
			return tg.inProcessOnly("pause")
		}
		return tg.inProcessOnly("resume")
	case st.Partition != nil:
		p := st.Partition
		if !tg.nodes[p.Node] {
			return fmt.Errorf("%w: partition needs a node (nodes: %s)", ErrStep, strings.Join(sortedKeys(tg.nodes), ", "))
		}
		switch p.From {
		case FromDevices:
		case FromKafka:
			return tg.inProcessOnly("partition from kafka")
		default:
			return fmt.Errorf("%w: partition from %q: want devices or kafka", ErrStep, p.From)
		}
	case st.Heal != "":
		if !tg.nodes[st.Heal] {
			return fmt.Errorf("%w: heal needs a node (nodes: %s)", ErrStep, strings.Join(sortedKeys(tg.nodes), ", "))
		}
	case st.Command != nil:
		c := st.Command
		if !strings.Contains(c.Device, "/") || c.Service == "" {
			return fmt.Errorf("%w: command needs device (productKey/deviceKey) and service", ErrStep)
		}
		return name(c.Name, "command")
	case st.Backfill != nil:
		b := st.Backfill
		if b.Device == "" || b.Point == "" || b.Span <= 0 || b.Interval <= 0 {
			return fmt.Errorf("%w: backfill needs device, point and span", ErrStep)
		}
	case st.Storm != nil:
		if st.Storm.Rate <= 0 || st.Storm.Duration <= 0 {
			return fmt.Errorf("%w: storm needs rate and duration", ErrStep)
		}
		return name(st.Storm.Name, "storm")
	}
	return nil
}

func (a Assertion) validate(named map[string]string) error {
	set := 0
	for _, ok := range []bool{a.PromQL != nil, a.Alert != nil, a.Loss != nil, a.Duplicates != nil, a.Rate != nil,
		a.Latency != nil, a.Commands != nil, a.Rejected != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%w: exactly one of promql, alert, noLoss, noDuplicates, rate, latency, commands, rejected", ErrAssertion)
	}
	ref := func(n, kind string) error {
		if named[n] != kind {
			return fmt.Errorf("%w: no %s step named %q", ErrAssertion, kind, n)
		}
		return nil
	}
	window := func(w []time.Duration, what string) error {
		if w != nil && (len(w) != 2 || w[0] > w[1]) {
			return fmt.Errorf("%w: %s must be [from, to]", ErrAssertion, what)
		}
		return nil
	}
	switch {
	case a.PromQL != nil:
		p := a.PromQL
		if p.Query == "" {
			return fmt.Errorf("%w: promql needs a query", ErrAssertion)
		}
		if !p.Empty && p.Equals == nil && p.Min == nil && p.Max == nil {
			return fmt.Errorf("%w: promql needs equals, min, max or empty", ErrAssertion)
		}
	case a.Alert != nil:
		if a.Alert.Rule == "" || *a.Alert.Count < 0 {
			return fmt.Errorf("%w: alert needs a rule and a count ≥ 0", ErrAssertion)
		}
		if err := window(a.Alert.Fired, "fired"); err != nil {
			return err
		}
		return window(a.Alert.Resolved, "resolved")
	case a.Loss != nil:
		return ref(a.Loss.Load, "load")
	case a.Duplicates != nil:
		return ref(a.Duplicates.Load, "load")
	case a.Rate != nil:
		if a.Rate.MinRatio <= 0 || a.Rate.MinRatio > 1 {
			return fmt.Errorf("%w: rate minRatio must be in (0, 1]", ErrAssertion)
		}
		return ref(a.Rate.Load, "load")
	case a.Latency != nil:
		l := a.Latency
		kinds := loadgen.LatencyKinds()
		if _, ok := (loadgen.Latency{}).Quantile(l.Percentile); !ok || !slices.Contains(kinds, l.Kind) || l.Below <= 0 {
			return fmt.Errorf("%w: latency needs kind (%s), percentile (p50, p90, p99, p999, max) and below",
				ErrAssertion, strings.Join(kinds, ", "))
		}
		return ref(l.Load, "load")
	case a.Commands != nil:
		if a.Commands.Code == 0 {
			return fmt.Errorf("%w: commands needs a code", ErrAssertion)
		}
		return ref(a.Commands.Step, "command")
	case a.Rejected != nil:
		return ref(a.Rejected.Load, "storm")
	}
	return nil
}

func containsValue(m map[string]string, v string) bool {
	for _, x := range m {
		if x == v {
			return true
		}
	}
	return false
}

package rules

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Sample is one live measurepoint value as the engine sees it.
type Sample struct {
	Org, Product, Device, Site, Point string
	Time                              int64 // Unix ms, event time
	Value                             float64
	// Source names the ordered stream the sample travels in: the gateway a
	// sub-device sits behind (its sub-devices share one stream), or the
	// device itself, and the bus partition, e.g. "gw/GW01@3"; "" is the
	// device's own stream. Lane is the bus partition ("" for one lane):
	// what arrived on a lane arrived in order. Received is when the platform
	// received the sample (the broker's clock, Unix ms; 0: Time). Nodata
	// rules judge silence with them (see Advance).
	Source, Lane string
	Received     int64
}

// DeviceKey is "productKey/deviceKey".
func (s Sample) DeviceKey() string { return s.Product + "/" + s.Device }

// Kind of a transition.
type Kind string

// Transition kinds of the alert lifecycle.
const (
	Pending   Kind = "pending"
	Cancelled Kind = "cancelled" // a pending condition cleared before its for-duration
	Firing    Kind = "firing"
	Resolved  Kind = "resolved"
)

// Transition is a change of a rule's state for one key (a device, or a group for count rules).
type Transition struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Kind     Kind   `json:"kind"`
	// Key is the device "pk/dk", or "site=…"/"org=…" for count rules.
	Key    string `json:"key"`
	Device string `json:"device,omitempty"`
	Site   string `json:"site,omitempty"`
	Org    string `json:"org,omitempty"`
	// StartedAt is the event time the condition began: with Rule and Key it names the episode.
	StartedAt int64   `json:"startedAt"`
	At        int64   `json:"at"`
	Value     float64 `json:"value"`
	Message   string  `json:"message,omitempty"`
}

// AssetSites resolves an asset id to the set of site and org ids at and below it.
type AssetSites func(asset string) map[string]bool

// Engine evaluates streaming rules. It is deterministic: the same rules and
// the same input give the same transitions. It is not safe for concurrent use.
//
// State is kept per device (its newest point values and the states of the
// rules active for it, by rule index) and per count-rule group, so a sample
// costs one device lookup and small integer-keyed lookups per rule.
type Engine struct {
	rules   []*Rule
	byPoint map[string][]int
	byEvent map[string][]int  // event → the event rules it fires or resolves
	scopes  []map[string]bool // by rule index: sites/orgs of its asset scope

	watermark int64
	devices   map[string]*deviceState
	groups    []map[string]*groupState // by rule index, for count rules

	// The clocks of nodata rules: per source (the stream a device's samples
	// travel in) and per lane (bus partition); last caches the source of
	// the previous sample, as records come in runs of one device.
	sources map[string]*source
	lanes   map[string]*lane
	last    struct {
		source, product, device string
		src                     *source
	}
}

type deviceState struct {
	points map[string]pointValue
	rules  map[int]*ruleState
	src    *source // the stream the device's samples arrived in last
	srcKey string
}

// source is what the engine heard from one stream: its newest event time
// and its newest arrival time.
type source struct {
	Event int64  `json:"event"`
	Recv  int64  `json:"recv"`
	Lane  string `json:"lane,omitempty"`
	lane  *lane
}

// lane is a bus partition: Done is the arrival time up to which everything
// sent on it has been observed; Behind says the consumer knows it is not
// (the partition has unread records), so the wall clock does not move it.
type lane struct {
	Done   int64 `json:"done"`
	Behind bool  `json:"behind,omitempty"`
}

type groupState struct {
	members map[string]bool
	states  map[int]*ruleState // the count rule's state, under its index, as step keeps it
}

type pointValue struct {
	T int64   `json:"t"`
	V float64 `json:"v"`
}

type ruleState struct {
	Active bool    `json:"active,omitempty"`
	Since  int64   `json:"since,omitempty"`
	Firing bool    `json:"firing,omitempty"`
	Last   int64   `json:"last,omitempty"`
	Value  float64 `json:"value,omitempty"`
	// Identity of the key, kept for transitions raised without a sample (nodata, event resolve).
	Device string `json:"device,omitempty"`
	Site   string `json:"site,omitempty"`
	Org    string `json:"org,omitempty"`
}

// NewEngine returns an engine for rules; sites resolves asset scopes (nil: asset scopes match nothing).
func NewEngine(rules []*Rule, sites AssetSites) *Engine {
	e := &Engine{devices: map[string]*deviceState{}, sources: map[string]*source{}, lanes: map[string]*lane{}}
	e.SetRules(rules, sites)
	return e
}

// SetRules replaces the rules, keeping the state of rules that remain (by name).
func (e *Engine) SetRules(rules []*Rule, sites AssetSites) {
	snap := e.snapshot()
	e.rules = rules
	e.byPoint = map[string][]int{}
	e.byEvent = map[string][]int{}
	e.scopes = make([]map[string]bool, len(rules))
	for i, r := range rules {
		if r.Type == TypeEvent {
			e.byEvent[r.Event] = append(e.byEvent[r.Event], i)
			if r.ResolveOn != "" {
				e.byEvent[r.ResolveOn] = append(e.byEvent[r.ResolveOn], i)
			}
		}
		for _, p := range r.points() {
			e.byPoint[p] = append(e.byPoint[p], i)
		}
		if r.Scope.Asset != "" && sites != nil {
			e.scopes[i] = sites(r.Scope.Asset)
		}
	}
	e.restore(snap)
}

// Rules returns the loaded rules.
func (e *Engine) Rules() []*Rule { return e.rules }

// Watermark is the newest event time seen.
func (e *Engine) Watermark() int64 { return e.watermark }

func (e *Engine) inScope(i int, org, product, device, site string) bool {
	r := e.rules[i]
	if r.Org != "" && r.Org != org {
		return false // an org's rule sees its org's devices only
	}
	sc := r.Scope
	if sc.Product != "" && sc.Product != product {
		return false
	}
	if len(sc.Devices) > 0 {
		found := false
		for _, d := range sc.Devices {
			found = found || d == product+"/"+device
		}
		if !found {
			return false
		}
	}
	if sc.Asset != "" {
		return e.scopes[i][site] || e.scopes[i][org]
	}
	return true
}

func (e *Engine) device(key string) *deviceState {
	d := e.devices[key]
	if d == nil {
		d = &deviceState{points: map[string]pointValue{}, rules: map[int]*ruleState{}}
		e.devices[key] = d
	}
	return d
}

func (e *Engine) lane(name string) *lane {
	l := e.lanes[name]
	if l == nil {
		l = &lane{}
		e.lanes[name] = l
	}
	return l
}

// sourceOf returns the source of s, creating it.
func (e *Engine) sourceOf(s *Sample) *source {
	c := &e.last
	if c.src != nil && c.source == s.Source && (s.Source != "" || c.product == s.Product && c.device == s.Device) {
		return c.src
	}
	var src *source
	if s.Source != "" {
		src = e.sources[s.Source]
	} else {
		src = e.sources[s.Product+"/"+s.Device] // a lookup: the key stays on the stack
	}
	if src == nil {
		key := s.Source
		if key == "" {
			key = s.DeviceKey()
		}
		src = &source{Lane: s.Lane, lane: e.lane(s.Lane)}
		e.sources[key] = src
	}
	c.source, c.product, c.device, c.src = s.Source, s.Product, s.Device, src
	return src
}

// hear moves the clocks of the sample's source and lane.
func (e *Engine) hear(s *Sample) *source {
	src := e.sourceOf(s)
	recv := s.Received
	if recv == 0 {
		recv = s.Time
	}
	if s.Time > src.Event {
		src.Event = s.Time
	}
	if recv > src.Recv {
		src.Recv = recv
	}
	if recv > src.lane.Done {
		src.lane.Done = recv
	}
	return src
}

// Heard records a sample that is not evaluated (one of bad quality) as a
// sign of life of its source: the stream delivered up to s.Time.
func (e *Engine) Heard(s Sample) { e.hear(&s) }

// Observe evaluates a live sample. Samples not newer than the last one of
// their device and point (late or duplicated) are not evaluated; it reports
// them with ok false.
func (e *Engine) Observe(s Sample) (out []Transition, ok bool) {
	if s.Time > e.watermark {
		e.watermark = s.Time
	}
	src := e.hear(&s)
	rules := e.byPoint[s.Point]
	if len(rules) == 0 {
		return nil, true
	}
	key := s.DeviceKey()
	d := e.device(key)
	if d.src != src {
		d.src, d.srcKey = src, s.Source
		if s.Source == "" {
			d.srcKey = key
		}
	}
	prev, seen := d.points[s.Point]
	if seen && s.Time <= prev.T {
		return nil, false
	}
	d.points[s.Point] = pointValue{s.Time, s.Value}
	for _, i := range rules {
		if !e.inScope(i, s.Org, s.Product, s.Device, s.Site) {
			continue
		}
		r := e.rules[i]
		switch r.Type {
		case TypeThreshold:
			out = e.step(out, i, key, d.rules, s, r.Condition.Test(s.Value), s.Value)
		case TypeRate:
			if seen {
				rate := (s.Value - prev.V) / (float64(s.Time-prev.T) / 1000)
				out = e.step(out, i, key, d.rules, s, r.Condition.Test(rate), rate)
			}
		case TypeAll, TypeAny:
			out = e.step(out, i, key, d.rules, s, combined(r, d.points), s.Value)
		case TypeCount:
			out = e.count(out, i, key, s, d.points)
		case TypeNoData:
			rs := stateOf(d.rules, i, s)
			if !rs.Firing && rs.Last > 0 && s.Time-rs.Last > r.After.Millis() {
				// The device's own stream shows the gap: the episode is
				// [previous sample + after, this sample), whenever it arrives.
				rs.Firing, rs.Since = true, rs.Last+r.After.Millis()
				out = append(out, e.transition(i, Firing, key, rs, rs.Since, prev.V, s.Point))
			}
			rs.Last = s.Time
			if rs.Firing {
				rs.Firing = false
				at := s.Time
				if at <= rs.Since {
					// No gap after all: the episode was raised because the whole
					// source said nothing (see Advance) and the data was only
					// late. It ended when the data arrived, never as it began.
					at = max(s.Received, rs.Since+1)
				}
				out = append(out, e.transition(i, Resolved, key, rs, at, s.Value, s.Point))
			}
		}
	}
	return out, true
}

// combined evaluates an all / any rule on a device's newest values; unknown points count as false.
func combined(r *Rule, pts map[string]pointValue) bool {
	for _, c := range r.Conditions {
		v, ok := pts[c.Point]
		met := ok && c.Condition.Test(v.V)
		if r.Type == TypeAny && met {
			return true
		}
		if r.Type == TypeAll && !met {
			return false
		}
	}
	return r.Type == TypeAll
}

// count updates the group a device belongs to and steps the group's state.
func (e *Engine) count(out []Transition, i int, dev string, s Sample, pts map[string]pointValue) []Transition {
	r := e.rules[i]
	c := r.Conditions[0]
	v, ok := pts[c.Point]
	met := ok && c.Condition.Test(v.V)
	group := "site=" + s.Site
	gs := s
	gs.Device = ""
	if r.GroupBy == "org" {
		group, gs.Site = "org="+s.Org, ""
	}
	if e.groups == nil {
		e.groups = make([]map[string]*groupState, len(e.rules))
	}
	if e.groups[i] == nil {
		e.groups[i] = map[string]*groupState{}
	}
	g := e.groups[i][group]
	if g == nil {
		g = &groupState{members: map[string]bool{}, states: map[int]*ruleState{}}
		e.groups[i][group] = g
	}
	if met {
		g.members[dev] = true
	} else {
		delete(g.members, dev)
	}
	return e.step(out, i, group, g.states, gs, len(g.members) >= r.AtLeast, float64(len(g.members)))
}

// stateOf returns rule i's state in states, creating it with the sample's identity.
func stateOf(states map[int]*ruleState, i int, s Sample) *ruleState {
	rs := states[i]
	if rs == nil {
		rs = &ruleState{Site: s.Site, Org: s.Org}
		if s.Device != "" {
			rs.Device = s.DeviceKey()
		}
		states[i] = rs
	}
	return rs
}

// step moves rule i's state for key on a new evaluation of its condition at s.Time.
func (e *Engine) step(out []Transition, i int, key string, states map[int]*ruleState, s Sample, cond bool, v float64) []Transition {
	r := e.rules[i]
	rs := states[i]
	if !cond && rs == nil {
		return out // the common case: nothing to remember
	}
	rs = stateOf(states, i, s)
	rs.Value = v
	if cond {
		if !rs.Active {
			rs.Active, rs.Since = true, s.Time
			if r.For > 0 {
				out = append(out, e.transition(i, Pending, key, rs, s.Time, v, s.Point))
			}
		}
		if !rs.Firing && s.Time-rs.Since >= r.For.Millis() {
			rs.Firing = true
			out = append(out, e.transition(i, Firing, key, rs, s.Time, v, s.Point))
		}
		return out
	}
	switch {
	case rs.Firing:
		out = append(out, e.transition(i, Resolved, key, rs, s.Time, v, s.Point))
	case rs.Active && r.For > 0:
		out = append(out, e.transition(i, Cancelled, key, rs, s.Time, v, s.Point))
	}
	// An inactive key needs no memory.
	delete(states, i)
	return out
}

// ObserveEvent evaluates a device event.
func (e *Engine) ObserveEvent(org, product, device, site, event string, t int64) []Transition {
	if t > e.watermark {
		e.watermark = t
	}
	var out []Transition
	s := Sample{Org: org, Product: product, Device: device, Site: site, Time: t}
	key := s.DeviceKey()
	for _, i := range e.byEvent[event] {
		if !e.inScope(i, org, product, device, site) {
			continue
		}
		r := e.rules[i]
		states := e.device(key).rules
		if event == r.ResolveOn {
			if rs := states[i]; rs != nil && rs.Firing {
				out = append(out, e.transition(i, Resolved, key, rs, max(t, rs.Since), 0, ""))
				delete(states, i)
			}
			continue
		}
		rs := stateOf(states, i, s)
		if rs.Firing && r.ResolveAfter > 0 && t-rs.Last >= r.ResolveAfter.Millis() {
			// The previous episode had ended before this event.
			out = append(out, e.transition(i, Resolved, key, rs, rs.Last+r.ResolveAfter.Millis(), 0, ""))
			rs.Firing = false
		}
		if t > rs.Last {
			rs.Last = t
		}
		if !rs.Firing {
			rs.Firing, rs.Active, rs.Since = true, true, t
			out = append(out, e.transition(i, Firing, key, rs, t, 0, ""))
		}
	}
	return out
}

// SetLaneBehind says whether the consumer knows lane to have unread records;
// Advance's clock does not move a lane that is behind.
func (e *Engine) SetLaneBehind(name string, behind bool) { e.lane(name).Behind = behind }

// SetLanesBehind marks every lane known as behind or not (after a restart,
// until the consumer has caught up; once it is idle).
func (e *Engine) SetLanesBehind(behind bool) {
	for _, l := range e.lanes {
		l.Behind = behind
	}
}

// slack is how far a source's event time must run past a device's nodata
// deadline before the device counts as silent: a gateway's sub-devices
// arrive in near, not strict, event-time order.
func slack(after int64) int64 { return min(after/4, 15_000) }

// Advance raises what the passage of time implies: nodata alerts for silent
// points, and the resolution of event alerts with no new event.
//
// now > 0 is a clock that every stream not behind has reached (the wall
// clock less a grace): it moves event time for event rules and the arrival
// time of every lane not behind. Pass 0 to use what was observed.
//
// A nodata rule for device D, whose newest sample of the point is at T,
// fires with StartedAt T+after (event time) when D's source shows the gap:
// its event time ran past T+after (+ slack, for near-order) while D's point
// did not — other sub-devices of D's gateway on the same lane, or other
// points of D, are current; or when the source said nothing at all for
// after, in arrival time, on a lane observed up to then (a gateway or
// device that is down; on an idle lane the wall clock moves arrival time).
// A source that is merely behind (an edge replaying slowly, a lagging
// partition) keeps sending or keeps its lane behind, so its devices do not
// fire however far other devices' event time ran ahead. A gap that neither
// rule saw is raised, fired and resolved, by the sample that ends it
// (Observe).
func (e *Engine) Advance(now int64) []Transition {
	if now > e.watermark {
		e.watermark = now
	}
	if now > 0 {
		for _, l := range e.lanes {
			if !l.Behind && now > l.Done {
				l.Done = now
			}
		}
	}
	wm := e.watermark
	var out []Transition
	for key, d := range e.devices {
		for i, rs := range d.rules {
			r := e.rules[i]
			switch {
			case r.Type == TypeNoData && !rs.Firing:
				pv, ok := d.points[r.Point]
				if !ok || d.src == nil {
					continue
				}
				after := r.After.Millis()
				deadline := pv.T + after
				if src := d.src; src.Event > deadline+slack(after) || src.lane.Done-src.Recv > after {
					rs.Firing, rs.Since = true, deadline
					out = append(out, e.transition(i, Firing, key, rs, rs.Since, pv.V, r.Point))
				}
			case r.Type == TypeEvent && rs.Firing && r.ResolveAfter > 0 && wm-rs.Last >= r.ResolveAfter.Millis():
				out = append(out, e.transition(i, Resolved, key, rs, rs.Last+r.ResolveAfter.Millis(), 0, ""))
				delete(d.rules, i)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].At != out[j].At {
			return out[i].At < out[j].At
		}
		return out[i].Rule+out[i].Key < out[j].Rule+out[j].Key
	})
	return out
}

func (e *Engine) transition(i int, k Kind, key string, rs *ruleState, at int64, v float64, point string) Transition {
	r := e.rules[i]
	t := Transition{Rule: r.Name, Severity: r.Severity, Kind: k, Key: key, Device: rs.Device, Site: rs.Site, Org: rs.Org,
		StartedAt: rs.Since, At: at, Value: v}
	if k == Firing {
		var b strings.Builder
		err := r.tmpl.Execute(&b, map[string]any{"Rule": r.Name, "Device": rs.Device, "Site": rs.Site, "Point": point,
			"Value": v, "Threshold": r.Condition.threshold(), "Key": key})
		if err != nil {
			t.Message = fmt.Sprintf("%s on %s (message template: %v)", r.Name, key, err)
		} else {
			t.Message = b.String()
		}
	}
	return t
}

// snapshot is the engine's state by rule name, independent of rule order.
type snapshot struct {
	Watermark int64                              `json:"watermark"`
	Latest    map[string]map[string]pointValue   `json:"latest"` // device → point → newest value
	Rules     map[string]map[string]*ruleState   `json:"rules"`  // rule → key → state
	Groups    map[string]map[string]groupMembers `json:"groups"` // count rule → group → members
	// Since issue 13 part 4 (absent in older snapshots: each device is then
	// its own source, heard last at its newest sample, on lane "").
	Sources       map[string]*source `json:"sources,omitempty"`       // source → clocks
	Lanes         map[string]*lane   `json:"lanes,omitempty"`         // lane → arrival clock
	DeviceSources map[string]string  `json:"deviceSources,omitempty"` // device → source, where not the device itself
}

type groupMembers struct {
	Members []string   `json:"members"`
	State   *ruleState `json:"state,omitempty"`
}

func (e *Engine) snapshot() snapshot {
	s := snapshot{Watermark: e.watermark, Latest: map[string]map[string]pointValue{}, Rules: map[string]map[string]*ruleState{},
		Groups: map[string]map[string]groupMembers{}}
	put := func(rule, key string, rs *ruleState) {
		if s.Rules[rule] == nil {
			s.Rules[rule] = map[string]*ruleState{}
		}
		s.Rules[rule][key] = rs
	}
	for key, d := range e.devices {
		s.Latest[key] = d.points
		for i, rs := range d.rules {
			put(e.rules[i].Name, key, rs)
		}
		if d.src != nil && d.srcKey != key {
			if s.DeviceSources == nil {
				s.DeviceSources = map[string]string{}
			}
			s.DeviceSources[key] = d.srcKey
		}
	}
	s.Sources, s.Lanes = e.sources, e.lanes
	for i, gs := range e.groups {
		for group, g := range gs {
			if s.Groups[e.rules[i].Name] == nil {
				s.Groups[e.rules[i].Name] = map[string]groupMembers{}
			}
			members := make([]string, 0, len(g.members))
			for m := range g.members {
				members = append(members, m)
			}
			sort.Strings(members)
			s.Groups[e.rules[i].Name][group] = groupMembers{Members: members, State: g.states[i]}
		}
	}
	return s
}

func (e *Engine) restore(s snapshot) {
	index := make(map[string]int, len(e.rules))
	for i, r := range e.rules {
		index[r.Name] = i
	}
	e.watermark = s.Watermark
	e.devices = map[string]*deviceState{}
	e.groups = nil
	e.last.src = nil
	e.sources, e.lanes = map[string]*source{}, map[string]*lane{}
	for name, l := range s.Lanes {
		if l != nil {
			c := *l
			e.lanes[name] = &c
		}
	}
	for key, src := range s.Sources {
		if src != nil {
			c := *src
			c.lane = e.lane(c.Lane)
			e.sources[key] = &c
		}
	}
	for key, pts := range s.Latest {
		d := e.device(key)
		d.points = pts
		d.srcKey = key
		if k, ok := s.DeviceSources[key]; ok {
			d.srcKey = k
		}
		d.src = e.sources[d.srcKey]
		if d.src == nil && len(pts) > 0 {
			// A snapshot from before sources: the device is its own
			// source, heard last when its newest sample was (event time).
			var newest int64
			for _, pv := range pts {
				newest = max(newest, pv.T)
			}
			d.src = &source{Event: newest, Recv: newest, lane: e.lane("")}
			e.sources[key], d.srcKey = d.src, key
		}
	}
	for name, keys := range s.Rules {
		i, ok := index[name]
		if !ok {
			continue
		}
		for key, rs := range keys {
			e.device(key).rules[i] = rs
		}
	}
	for name, groups := range s.Groups {
		i, ok := index[name]
		if !ok {
			continue
		}
		if e.groups == nil {
			e.groups = make([]map[string]*groupState, len(e.rules))
		}
		e.groups[i] = map[string]*groupState{}
		for group, g := range groups {
			gs := &groupState{members: map[string]bool{}, states: map[int]*ruleState{}}
			if g.State != nil {
				gs.states[i] = g.State
			}
			for _, m := range g.Members {
				gs.members[m] = true
			}
			e.groups[i][group] = gs
		}
	}
}

// Snapshot returns the engine's state, to be saved with the consumer's offsets.
func (e *Engine) Snapshot() ([]byte, error) { return json.Marshal(e.snapshot()) }

// Restore replaces the engine's state with a snapshot.
func (e *Engine) Restore(b []byte) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("restore rule state: %w", err)
	}
	e.restore(s)
	return nil
}

// PendingAlerts lists the keys whose condition holds but whose for-duration has not elapsed.
func (e *Engine) PendingAlerts() []Transition {
	var out []Transition
	add := func(i int, key string, rs *ruleState) {
		if rs != nil && rs.Active && !rs.Firing {
			r := e.rules[i]
			out = append(out, Transition{Rule: r.Name, Severity: r.Severity, Kind: Pending, Key: key, Device: rs.Device,
				Site: rs.Site, Org: rs.Org, StartedAt: rs.Since, At: rs.Since, Value: rs.Value})
		}
	}
	for key, d := range e.devices {
		for i, rs := range d.rules {
			add(i, key, rs)
		}
	}
	for i, gs := range e.groups {
		for group, g := range gs {
			add(i, group, g.states[i])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule+out[i].Key < out[j].Rule+out[j].Key })
	return out
}

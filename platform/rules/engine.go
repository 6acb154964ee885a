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
}

type deviceState struct {
	points map[string]pointValue
	rules  map[int]*ruleState
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
	e := &Engine{devices: map[string]*deviceState{}}
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
	sc := e.rules[i].Scope
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

// Observe evaluates a live sample. Samples not newer than the last one of
// their device and point (late or duplicated) are not evaluated; it reports
// them with ok false.
func (e *Engine) Observe(s Sample) (out []Transition, ok bool) {
	if s.Time > e.watermark {
		e.watermark = s.Time
	}
	rules := e.byPoint[s.Point]
	if len(rules) == 0 {
		return nil, true
	}
	key := s.DeviceKey()
	d := e.device(key)
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
				// The silence ended before Advance saw it: raise the episode it was.
				rs.Firing, rs.Since = true, rs.Last+r.After.Millis()
				out = append(out, e.transition(i, Firing, key, rs, rs.Since, prev.V, s.Point))
			}
			rs.Last = s.Time
			if rs.Firing {
				// A sample that arrives late (other devices moved event time past
				// the silence first) may be older than the firing: the episode
				// then ends as it began, never before.
				rs.Firing = false
				out = append(out, e.transition(i, Resolved, key, rs, max(s.Time, rs.Since), s.Value, s.Point))
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

// Advance raises what the passage of event time implies: nodata alerts for
// silent points, and the resolution of event alerts with no new event.
// watermark only moves forward; pass 0 to use the newest event time seen.
func (e *Engine) Advance(watermark int64) []Transition {
	if watermark > e.watermark {
		e.watermark = watermark
	}
	now := e.watermark
	var out []Transition
	for key, d := range e.devices {
		for i, rs := range d.rules {
			r := e.rules[i]
			switch {
			case r.Type == TypeNoData && !rs.Firing:
				pv, ok := d.points[r.Point]
				if ok && now-pv.T > r.After.Millis() {
					rs.Firing, rs.Since = true, pv.T+r.After.Millis()
					out = append(out, e.transition(i, Firing, key, rs, rs.Since, pv.V, r.Point))
				}
			case r.Type == TypeEvent && rs.Firing && r.ResolveAfter > 0 && now-rs.Last >= r.ResolveAfter.Millis():
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
	}
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
	for key, pts := range s.Latest {
		e.device(key).points = pts
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

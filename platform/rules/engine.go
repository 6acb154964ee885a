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
type Engine struct {
	rules   []*Rule
	byPoint map[string][]*Rule
	byEvent map[string][]*Rule
	scopes  map[string]map[string]bool // rule name → sites/orgs of its asset scope

	st state
}

// state is everything the engine remembers; it is what Snapshot saves.
type state struct {
	Watermark int64                            `json:"watermark"`
	Latest    map[string]map[string]pointValue `json:"latest"` // device → point → newest value
	Rules     map[string]*ruleState            `json:"rules"`  // rule \x00 key
	Groups    map[string]map[string]bool       `json:"groups"` // rule \x00 group → devices meeting the condition
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
	e := &Engine{byPoint: map[string][]*Rule{}, byEvent: map[string][]*Rule{}, scopes: map[string]map[string]bool{}}
	e.st = state{Latest: map[string]map[string]pointValue{}, Rules: map[string]*ruleState{}, Groups: map[string]map[string]bool{}}
	e.SetRules(rules, sites)
	return e
}

// SetRules replaces the rules, keeping the state of rules that remain.
func (e *Engine) SetRules(rules []*Rule, sites AssetSites) {
	e.rules = rules
	e.byPoint = map[string][]*Rule{}
	e.byEvent = map[string][]*Rule{}
	e.scopes = map[string]map[string]bool{}
	names := map[string]bool{}
	for _, r := range rules {
		names[r.Name] = true
		if r.Type == TypeEvent {
			e.byEvent[r.Event] = append(e.byEvent[r.Event], r)
		}
		for _, p := range r.points() {
			e.byPoint[p] = append(e.byPoint[p], r)
		}
		if r.Scope.Asset != "" && sites != nil {
			e.scopes[r.Name] = sites(r.Scope.Asset)
		}
	}
	for k := range e.st.Rules {
		if !names[strings.SplitN(k, "\x00", 2)[0]] {
			delete(e.st.Rules, k)
		}
	}
	for k := range e.st.Groups {
		if !names[strings.SplitN(k, "\x00", 2)[0]] {
			delete(e.st.Groups, k)
		}
	}
}

// Rules returns the loaded rules.
func (e *Engine) Rules() []*Rule { return e.rules }

// Watermark is the newest event time seen.
func (e *Engine) Watermark() int64 { return e.st.Watermark }

func (e *Engine) inScope(r *Rule, org, product, device, site string) bool {
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
		set := e.scopes[r.Name]
		return set[site] || set[org]
	}
	return true
}

// Observe evaluates a live sample. Samples not newer than the last one of
// their device and point (late or duplicated) are not evaluated; it reports
// them with ok false.
func (e *Engine) Observe(s Sample) (out []Transition, ok bool) {
	if s.Time > e.st.Watermark {
		e.st.Watermark = s.Time
	}
	rules := e.byPoint[s.Point]
	if len(rules) == 0 {
		return nil, true
	}
	dev := s.DeviceKey()
	pts := e.st.Latest[dev]
	if pts == nil {
		pts = map[string]pointValue{}
		e.st.Latest[dev] = pts
	}
	prev, seen := pts[s.Point]
	if seen && s.Time <= prev.T {
		return nil, false
	}
	pts[s.Point] = pointValue{s.Time, s.Value}
	for _, r := range rules {
		if !e.inScope(r, s.Org, s.Product, s.Device, s.Site) {
			continue
		}
		switch r.Type {
		case TypeThreshold:
			out = e.step(out, r, dev, s, r.Condition.Test(s.Value), s.Value)
		case TypeRate:
			if seen && s.Time > prev.T {
				rate := (s.Value - prev.V) / (float64(s.Time-prev.T) / 1000)
				out = e.step(out, r, dev, s, r.Condition.Test(rate), rate)
			}
		case TypeAll, TypeAny:
			out = e.step(out, r, dev, s, e.combined(r, pts), s.Value)
		case TypeCount:
			out = e.count(out, r, dev, s, pts)
		case TypeNoData:
			rs := e.ruleState(r, dev, s)
			if !rs.Firing && rs.Last > 0 && s.Time-rs.Last > r.After.Millis() {
				// The silence ended before Advance saw it: raise the episode it was.
				rs.Firing, rs.Since = true, rs.Last+r.After.Millis()
				out = append(out, e.transition(r, Firing, dev, rs, rs.Since, prev.V, s.Point))
			}
			rs.Last = s.Time
			if rs.Firing {
				rs.Firing = false
				out = append(out, e.transition(r, Resolved, dev, rs, s.Time, s.Value, s.Point))
			}
		}
	}
	return out, true
}

// combined evaluates an all / any rule on a device's newest values; unknown points count as false.
func (e *Engine) combined(r *Rule, pts map[string]pointValue) bool {
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
func (e *Engine) count(out []Transition, r *Rule, dev string, s Sample, pts map[string]pointValue) []Transition {
	c := r.Conditions[0]
	v, ok := pts[c.Point]
	met := ok && c.Condition.Test(v.V)
	group := "site=" + s.Site
	if r.GroupBy == "org" {
		group = "org=" + s.Org
	}
	gk := r.Name + "\x00" + group
	members := e.st.Groups[gk]
	if members == nil {
		members = map[string]bool{}
		e.st.Groups[gk] = members
	}
	if met {
		members[dev] = true
	} else {
		delete(members, dev)
	}
	gs := s
	gs.Device = ""
	if r.GroupBy == "org" {
		gs.Site = ""
	}
	return e.step(out, r, group, gs, len(members) >= r.AtLeast, float64(len(members)))
}

func (e *Engine) ruleState(r *Rule, key string, s Sample) *ruleState {
	k := r.Name + "\x00" + key
	rs := e.st.Rules[k]
	if rs == nil {
		rs = &ruleState{Device: s.Device, Site: s.Site, Org: s.Org}
		if s.Device != "" {
			rs.Device = s.DeviceKey()
		}
		e.st.Rules[k] = rs
	}
	return rs
}

// step moves a rule's state for key on a new evaluation of its condition at s.Time.
func (e *Engine) step(out []Transition, r *Rule, key string, s Sample, cond bool, v float64) []Transition {
	rs := e.ruleState(r, key, s)
	rs.Value = v
	if cond {
		if !rs.Active {
			rs.Active, rs.Since = true, s.Time
			if r.For > 0 {
				out = append(out, e.transition(r, Pending, key, rs, s.Time, v, s.Point))
			}
		}
		if !rs.Firing && s.Time-rs.Since >= r.For.Millis() {
			rs.Firing = true
			out = append(out, e.transition(r, Firing, key, rs, s.Time, v, s.Point))
		}
		return out
	}
	switch {
	case rs.Firing:
		out = append(out, e.transition(r, Resolved, key, rs, s.Time, v, s.Point))
	case rs.Active && r.For > 0:
		out = append(out, e.transition(r, Cancelled, key, rs, s.Time, v, s.Point))
	}
	// An inactive key needs no memory.
	delete(e.st.Rules, r.Name+"\x00"+key)
	return out
}

// ObserveEvent evaluates a device event.
func (e *Engine) ObserveEvent(org, product, device, site, event string, t int64) []Transition {
	if t > e.st.Watermark {
		e.st.Watermark = t
	}
	var out []Transition
	s := Sample{Org: org, Product: product, Device: device, Site: site, Time: t}
	for _, r := range e.byEvent[event] {
		if !e.inScope(r, org, product, device, site) {
			continue
		}
		rs := e.ruleState(r, s.DeviceKey(), s)
		if rs.Firing && t-rs.Last >= r.ResolveAfter.Millis() {
			// The previous episode had ended before this event.
			out = append(out, e.transition(r, Resolved, s.DeviceKey(), rs, rs.Last+r.ResolveAfter.Millis(), 0, ""))
			rs.Firing = false
		}
		if t > rs.Last {
			rs.Last = t
		}
		if !rs.Firing {
			rs.Firing, rs.Active, rs.Since = true, true, t
			out = append(out, e.transition(r, Firing, s.DeviceKey(), rs, t, 0, ""))
		}
	}
	return out
}

// Advance raises what the passage of event time implies: nodata alerts for
// silent points, and the resolution of event alerts with no new event.
// watermark only moves forward; pass 0 to use the newest event time seen.
func (e *Engine) Advance(watermark int64) []Transition {
	if watermark > e.st.Watermark {
		e.st.Watermark = watermark
	}
	now := e.st.Watermark
	var out []Transition
	for _, r := range e.rules {
		switch r.Type {
		case TypeNoData:
			for dev, pts := range e.st.Latest {
				pv, ok := pts[r.Point]
				if !ok {
					continue
				}
				rs := e.st.Rules[r.Name+"\x00"+dev]
				if rs == nil || rs.Firing || now-pv.T <= r.After.Millis() {
					continue
				}
				rs.Firing, rs.Since = true, pv.T+r.After.Millis()
				out = append(out, e.transition(r, Firing, dev, rs, rs.Since, pv.V, r.Point))
			}
		case TypeEvent:
			for k, rs := range e.st.Rules {
				name, key, _ := strings.Cut(k, "\x00")
				if name != r.Name || !rs.Firing || now-rs.Last < r.ResolveAfter.Millis() {
					continue
				}
				out = append(out, e.transition(r, Resolved, key, rs, rs.Last+r.ResolveAfter.Millis(), 0, ""))
				delete(e.st.Rules, k)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

func (e *Engine) transition(r *Rule, k Kind, key string, rs *ruleState, at int64, v float64, point string) Transition {
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

// Snapshot returns the engine's state, to be saved with the consumer's offsets.
func (e *Engine) Snapshot() ([]byte, error) { return json.Marshal(e.st) }

// Restore replaces the engine's state with a snapshot.
func (e *Engine) Restore(b []byte) error {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("restore rule state: %w", err)
	}
	if st.Latest == nil {
		st.Latest = map[string]map[string]pointValue{}
	}
	if st.Rules == nil {
		st.Rules = map[string]*ruleState{}
	}
	if st.Groups == nil {
		st.Groups = map[string]map[string]bool{}
	}
	e.st = st
	return nil
}

// PendingAlerts lists the keys whose condition holds but whose for-duration has not elapsed.
func (e *Engine) PendingAlerts() []Transition {
	byName := map[string]*Rule{}
	for _, r := range e.rules {
		byName[r.Name] = r
	}
	var out []Transition
	for k, rs := range e.st.Rules {
		name, key, _ := strings.Cut(k, "\x00")
		if r := byName[name]; r != nil && rs.Active && !rs.Firing {
			out = append(out, Transition{Rule: name, Severity: r.Severity, Kind: Pending, Key: key, Device: rs.Device,
				Site: rs.Site, Org: rs.Org, StartedAt: rs.Since, At: rs.Since, Value: rs.Value})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule+out[i].Key < out[j].Rule+out[j].Key })
	return out
}

// Package rules is Gale's event engine: streaming rules evaluated on every
// live sample in event time (threshold, rate of change, for-durations, no
// data, combinations across points and devices, device events), the alert
// lifecycle they drive, and the `gale rules test` runner.
package rules

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/gale-iot/gale/internal/config"
	"gopkg.in/yaml.v3"
)

// Rule types.
const (
	TypeThreshold = "threshold"
	TypeRate      = "rate"
	TypeNoData    = "nodata"
	TypeAll       = "all"
	TypeAny       = "any"
	TypeCount     = "count"
	TypeEvent     = "event"
)

// Rule is one streaming rule.
type Rule struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Org, when set, owns the rule: it watches that org's devices only,
	// whatever its scope says, and its org's users list it. Empty is a
	// cluster rule, watching every org's devices.
	Org string `yaml:"org"`
	// Scope selects the devices the rule watches.
	Scope Scope `yaml:"scope"`
	// Point and Condition are used by threshold and rate rules.
	Point     string    `yaml:"point"`
	Condition Condition `yaml:",inline"`
	// Conditions are combined by all / any rules (per device) and count rules (one, per device).
	Conditions []PointCondition `yaml:"conditions"`
	// AtLeast is how many devices of a group must meet the condition (count rules).
	AtLeast int `yaml:"atLeast"`
	// GroupBy is the label devices are grouped by for count rules: site (default) or org.
	GroupBy string `yaml:"groupBy"`
	// After is how long without a sample makes a nodata rule fire.
	After Duration `yaml:"after"`
	// Event is the device event that fires an event rule. ResolveOn, when
	// set, is the device event that resolves it (e.g. faultCleared);
	// ResolveAfter resolves it when no new event came for that long (default
	// 10m without ResolveOn, never with it unless given).
	Event        string   `yaml:"event"`
	ResolveOn    string   `yaml:"resolveOn"`
	ResolveAfter Duration `yaml:"resolveAfter"`
	// For is how long (event time) the condition must hold before the alert fires.
	For      Duration `yaml:"for"`
	Severity string   `yaml:"severity"`
	// Message is a text/template with .Rule .Device .Site .Point .Value .Threshold.
	Message string `yaml:"message"`

	file string
	line int
	tmpl *template.Template
}

// Scope selects devices by product, device keys ("pk/dk") or asset (a site or org and everything below it).
type Scope struct {
	Product string   `yaml:"product" json:"product,omitempty"`
	Devices []string `yaml:"devices" json:"devices,omitempty"`
	Asset   string   `yaml:"asset" json:"asset,omitempty"`
}

// Condition is a test on one value: above and below are strict; both set
// means outside [below, above] is a breach when Outside is true.
type Condition struct {
	Above  *float64 `yaml:"above" json:"above,omitempty"`
	Below  *float64 `yaml:"below" json:"below,omitempty"`
	Equals *float64 `yaml:"equals" json:"equals,omitempty"`
	// Outside [Min, Max]: the value is below Min or above Max.
	Outside *[2]float64 `yaml:"outside" json:"outside,omitempty"`
	// Not negates the test.
	Not bool `yaml:"not" json:"not,omitempty"`
}

// PointCondition is a condition on one point of a device.
type PointCondition struct {
	Point     string `yaml:"point"`
	Condition `yaml:",inline"`
}

// File is a rule file.
type File struct {
	// Org is the org of every rule of the file that names none.
	Org   string  `yaml:"org"`
	Rules []*Rule `yaml:"rules"`
}

// ownedBy gives an item of a file of org (an org for all its items) org
// when it names none; an item naming another org than its file's is an error.
func ownedBy(item *string, file string) error {
	switch {
	case *item == "":
		*item = file
	case file != "" && *item != file:
		return fmt.Errorf("org %q in a file of org %q", *item, file)
	}
	return nil
}

// Duration is a time.Duration read from YAML as "90s", "5m".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: duration %q: %w", n.Line, n.Value, err)
	}
	*d = Duration(v)
	return nil
}

// Millis returns the duration in milliseconds.
func (d Duration) Millis() int64 { return time.Duration(d).Milliseconds() }

// ErrInvalid is wrapped by every rule file error.
var ErrInvalid = errors.New("invalid rule")

// Test reports whether v meets the condition.
func (c Condition) Test(v float64) bool {
	ok := true
	if c.Above != nil {
		ok = ok && v > *c.Above
	}
	if c.Below != nil {
		ok = ok && v < *c.Below
	}
	if c.Equals != nil {
		ok = ok && v == *c.Equals
	}
	if c.Outside != nil {
		ok = ok && (v < c.Outside[0] || v > c.Outside[1])
	}
	return ok != c.Not
}

func (c Condition) empty() bool {
	return c.Above == nil && c.Below == nil && c.Equals == nil && c.Outside == nil
}

// threshold returns the value the message calls the threshold.
func (c Condition) threshold() float64 {
	switch {
	case c.Above != nil:
		return *c.Above
	case c.Below != nil:
		return *c.Below
	case c.Equals != nil:
		return *c.Equals
	case c.Outside != nil:
		return c.Outside[1]
	}
	return 0
}

// LoadFiles reads and validates rule files; the error names each bad file and line.
func LoadFiles(paths ...string) ([]*Rule, error) {
	all, errs := loadEach(paths)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return all, nil
}

// loadEach reads and validates rule files one by one: the rules of the valid
// files, and an error (with file and line) for each refused file.
func loadEach(paths []string) ([]*Rule, []error) {
	return loadEachFile(paths, "rule", Parse, func(r *Rule) (string, string) { return r.Name, r.Location() })
}

// loadEachFile reads files one by one with parse: what the valid files
// define, and an error for each refused file, one that does not parse or
// that defines a name (of kind) an earlier file or itself already has.
func loadEachFile[T any](paths []string, kind string, parse func(name string, b []byte) ([]T, error), id func(T) (name, location string)) ([]T, []error) {
	var all []T
	var errs []error
	names := map[string]string{} // name → where it is defined
	for _, p := range paths {
		items, err := loadFile(p, kind, names, parse, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, it := range items {
			name, loc := id(it)
			names[name] = loc
		}
		all = append(all, items...)
	}
	return all, errs
}

// loadFile reads and parses one file, refusing a name defined in names or twice in the file.
func loadFile[T any](path, kind string, names map[string]string, parse func(name string, b []byte) ([]T, error), id func(T) (name, location string)) ([]T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", kind, err)
	}
	items, err := parse(filepath.Base(path), b)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for _, it := range items {
		name, loc := id(it)
		prev, ok := names[name]
		if !ok {
			prev, ok = seen[name]
		}
		if ok {
			return nil, fmt.Errorf("%w: %s: %s %q already defined in %s", ErrInvalid, loc, kind, name, prev)
		}
		seen[name] = loc
	}
	return items, nil
}

// Parse decodes and validates one rule file's content.
func Parse(name string, b []byte) ([]*Rule, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	var f File
	if err := config.Decode(name, b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	lines := config.ItemLines(&root, "rules")
	for i, r := range f.Rules {
		if r == nil { // "rules: [~]" or a bare "-": a null entry
			line := 0
			if i < len(lines) {
				line = lines[i]
			}
			return nil, fmt.Errorf("%w: %s:%d: rule %d is empty", ErrInvalid, name, line, i+1)
		}
		r.file = name
		if i < len(lines) {
			r.line = lines[i]
		}
		err := ownedBy(&r.Org, f.Org)
		if err == nil {
			err = r.validate()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: rule %q: %v", ErrInvalid, name, r.line, r.Name, err)
		}
	}
	return f.Rules, nil
}

func (r *Rule) validate() error {
	if r.Name == "" {
		return errors.New("name is empty")
	}
	r.Severity = cmp.Or(r.Severity, "warning")
	if r.For < 0 {
		return errors.New("for is negative")
	}
	if r.Type != TypeEvent && (r.Event != "" || r.ResolveOn != "" || r.ResolveAfter != 0) {
		return errors.New("event, resolveOn and resolveAfter belong to event rules")
	}
	switch r.Type {
	case TypeThreshold, TypeRate:
		if r.Point == "" {
			return errors.New("point is empty")
		}
		if r.Condition.empty() {
			return errors.New("needs above, below, equals or outside")
		}
	case TypeNoData:
		if r.Point == "" {
			return errors.New("point is empty")
		}
		if r.After <= 0 {
			return errors.New("after must be a positive duration")
		}
	case TypeAll, TypeAny:
		if len(r.Conditions) < 1 {
			return errors.New("conditions are empty")
		}
	case TypeCount:
		if len(r.Conditions) != 1 {
			return errors.New("a count rule has exactly one condition")
		}
		if r.AtLeast < 1 {
			return errors.New("atLeast must be at least 1")
		}
		switch r.GroupBy {
		case "":
			r.GroupBy = "site"
		case "site", "org":
		default:
			return fmt.Errorf("groupBy %q: want site or org", r.GroupBy)
		}
	case TypeEvent:
		if r.Event == "" {
			return errors.New("event is empty")
		}
		if r.ResolveAfter < 0 || r.ResolveOn == r.Event {
			return errors.New("resolveAfter must be positive, and resolveOn another event than the one that fires")
		}
		if r.ResolveAfter == 0 && r.ResolveOn == "" {
			r.ResolveAfter = Duration(10 * time.Minute)
		}
	default:
		return fmt.Errorf("type %q: want threshold, rate, nodata, all, any, count or event", r.Type)
	}
	for _, c := range r.Conditions {
		if c.Point == "" || c.Condition.empty() {
			return errors.New("each condition needs a point and above, below, equals or outside")
		}
	}
	r.Message = cmp.Or(r.Message, "{{.Rule}} on {{.Device}}")
	t, err := template.New(r.Name).Option("missingkey=error").Parse(r.Message)
	if err != nil {
		return fmt.Errorf("message template: %w", err)
	}
	r.tmpl = t
	return nil
}

// Location is the rule's file and line.
func (r *Rule) Location() string { return fmt.Sprintf("%s:%d", r.file, r.line) }

// points returns the points the rule reads.
func (r *Rule) points() []string {
	if r.Point != "" {
		return []string{r.Point}
	}
	out := make([]string, 0, len(r.Conditions))
	for _, c := range r.Conditions {
		out = append(out, c.Point)
	}
	return out
}

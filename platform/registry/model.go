package registry

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/gale-iot/gale/platform/api"
)

// Validation errors for device values.
var (
	ErrUnknownPoint = errors.New("unknown measurepoint")
	ErrBadValue     = errors.New("bad value")
)

// Model is a product with its thing model indexed for validation.
type Model struct {
	Product api.Product
	points  map[string]*api.Measurepoint
}

func compile(p api.Product) *Model {
	m := &Model{Product: p, points: make(map[string]*api.Measurepoint, len(p.Model.Measurepoints))}
	for i := range p.Model.Measurepoints {
		mp := &p.Model.Measurepoints[i]
		m.points[mp.ID] = mp
	}
	return m
}

// Point returns the measurepoint id of the model.
func (m *Model) Point(id string) (*api.Measurepoint, bool) {
	mp, ok := m.points[id]
	return mp, ok
}

// PointID returns the model's own string of measurepoint id, given as
// bytes (a lookup that does not allocate), and whether the model has it.
func (m *Model) PointID(id []byte) (string, bool) {
	mp, ok := m.points[string(id)]
	if !ok {
		return "", false
	}
	return mp.ID, true
}

// Service returns the service id of the model.
func (m *Model) Service(id string) (*api.Service, bool) {
	for i := range m.Product.Model.Services {
		if s := &m.Product.Model.Services[i]; s.ID == id {
			return s, true
		}
	}
	return nil, false
}

// Value checks a JSON scalar against measurepoint id and returns it as a float.
func (m *Model) Value(id string, raw []byte) (float64, error) {
	mp, ok := m.points[id]
	if !ok {
		return 0, fmt.Errorf("%w %q", ErrUnknownPoint, id)
	}
	v, err := scalar(mp.Type, raw)
	if err != nil {
		return 0, fmt.Errorf("%w for %s: %v", ErrBadValue, id, err)
	}
	if err := CheckRange(v, mp.Min, mp.Max); err != nil {
		return 0, fmt.Errorf("%w for %s: %v", ErrBadValue, id, err)
	}
	return v, nil
}

// CheckRange refuses a v below min or above max (either may be unset).
func CheckRange(v float64, min, max *float64) error {
	if min != nil && v < *min || max != nil && v > *max {
		return fmt.Errorf("%g outside [%s, %s]", v, bound(min), bound(max))
	}
	return nil
}

func bound(b *float64) string {
	if b == nil {
		return "∞"
	}
	return strconv.FormatFloat(*b, 'g', -1, 64)
}

// scalar parses raw as typ. Its errors quote raw rather than s, so that s
// stays on the stack (no allocation per value).
func scalar(typ string, raw []byte) (float64, error) {
	s := string(raw)
	switch typ {
	case api.TypeBool:
		switch s {
		case "true", "1":
			return 1, nil
		case "false", "0":
			return 0, nil
		}
		return 0, fmt.Errorf("want a boolean, got %s", raw)
	case api.TypeInt, api.TypeEnum:
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("want an integer, got %s", raw)
		}
		return float64(v), nil
	default:
		if s == "" || s[0] == '"' || s == "true" || s == "false" || s == "null" || s[0] == '{' || s[0] == '[' {
			return 0, fmt.Errorf("want a number, got %s", raw)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("want a number, got %s", raw)
		}
		return v, nil
	}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$`)

// ValidateProduct checks a product definition.
func ValidateProduct(p *api.Product) error {
	if !identRE.MatchString(p.Key) {
		return fmt.Errorf("%w: productKey %q must be 1-128 letters, digits, '_', '.', '-'", ErrInvalid, p.Key)
	}
	if p.Name == "" {
		p.Name = p.Key
	}
	seen := map[string]bool{}
	for _, mp := range p.Model.Measurepoints {
		if !identRE.MatchString(mp.ID) {
			return fmt.Errorf("%w: measurepoint id %q", ErrInvalid, mp.ID)
		}
		if seen[mp.ID] {
			return fmt.Errorf("%w: measurepoint %q defined twice", ErrInvalid, mp.ID)
		}
		seen[mp.ID] = true
		switch mp.Type {
		case api.TypeFloat, api.TypeInt, api.TypeBool, api.TypeEnum:
		default:
			return fmt.Errorf("%w: measurepoint %q has type %q, want float, int, bool or enum", ErrInvalid, mp.ID, mp.Type)
		}
		if mp.Min != nil && mp.Max != nil && *mp.Min > *mp.Max {
			return fmt.Errorf("%w: measurepoint %q has min above max", ErrInvalid, mp.ID)
		}
		if mp.Resolution != 0 && (!(mp.Resolution > 0) || math.IsInf(mp.Resolution, 0) || mp.Type == api.TypeBool) {
			return fmt.Errorf("%w: measurepoint %q has resolution %g, want a positive finite step of a number", ErrInvalid, mp.ID, mp.Resolution)
		}
	}
	for _, s := range p.Model.Services {
		if !identRE.MatchString(s.ID) {
			return fmt.Errorf("%w: service id %q", ErrInvalid, s.ID)
		}
		for _, in := range s.Input {
			if in.Min != nil && in.Max != nil && *in.Min > *in.Max {
				return fmt.Errorf("%w: input %q of service %q has min above max", ErrInvalid, in.ID, s.ID)
			}
		}
	}
	for _, e := range p.Model.Events {
		if !identRE.MatchString(e.ID) {
			return fmt.Errorf("%w: event id %q", ErrInvalid, e.ID)
		}
	}
	return nil
}

// Package regmap is the Modbus register map schema shared by the twin gateways
// and the edge gateway: YAML maps that place a device's points in the four
// Modbus areas, the unit ids of the devices behind a gateway, and encode/decode
// helpers for 16- and 32-bit values in all four word/byte orders.
//
// It imports nothing else of the project.
package regmap

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/gale-iot/gale/internal/config"
)

// Sentinel errors returned (wrapped) by Validate, Parse and the codecs.
var (
	ErrName            = errors.New("map name missing")
	ErrNoPoint         = errors.New("register without point")
	ErrArea            = errors.New("invalid area")
	ErrType            = errors.New("invalid type")
	ErrOrder           = errors.New("invalid byte order")
	ErrScale           = errors.New("scale must be a non-zero finite number")
	ErrResolution      = errors.New("invalid resolution")
	ErrWritable        = errors.New("only coils and holding registers can be writable")
	ErrOverlap         = errors.New("registers overlap")
	ErrDuplicatePoint  = errors.New("point mapped twice")
	ErrGroup           = errors.New("invalid poll group")
	ErrHeartbeat       = errors.New("invalid heartbeat register")
	ErrRange           = errors.New("value out of range")
	ErrWordCount       = errors.New("wrong number of words")
	ErrUnknownMap      = errors.New("unknown register map")
	ErrUnit            = errors.New("invalid unit")
	ErrDuplicateUnitID = errors.New("unit id used twice")
)

// DefaultPollInterval is the interval of the poll group that Default adds to a
// map without groups.
const DefaultPollInterval = time.Second

// PollGroup is a set of registers the edge polls together at one interval.
type PollGroup struct {
	// Name identifies the group in Register.Group.
	Name string `yaml:"name"`
	// Interval is the time between two polls.
	Interval time.Duration `yaml:"interval"`
}

// Map is the register map of one kind of device.
type Map struct {
	// Name identifies the map (e.g. wind-turbine).
	Name string `yaml:"name"`
	// Description says what device the map is for.
	Description string `yaml:"description,omitempty"`
	// Order is the default byte order of registers (default ABCD).
	Order Order `yaml:"byte_order,omitempty"`
	// Heartbeat is a counter register the device increments while its data is
	// fresh; a counter that stops means stale values.
	Heartbeat *Register `yaml:"heartbeat,omitempty"`
	// Groups are the poll groups (default: one group "default" at 1 s).
	Groups []PollGroup `yaml:"poll_groups,omitempty"`
	// Registers place the points.
	Registers []Register `yaml:"registers"`

	index  map[Area][]*Register
	points map[string]int
}

// Parse decodes a YAML register map strictly (unknown fields are errors),
// fills defaults and validates it.
func Parse(data []byte) (*Map, error) {
	var m Map
	if err := config.Decode("register map", data, &m); err != nil {
		return nil, err
	}
	m.Default()
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("register map %q: %w", m.Name, err)
	}
	return &m, nil
}

// Load reads and parses a register map file.
func Load(path string) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read register map: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Default fills unset fields: byte order ABCD, scale 1, a default poll group,
// and each register's order and group from the map.
func (m *Map) Default() {
	m.Order = cmp.Or(m.Order, OrderABCD)
	if len(m.Groups) == 0 {
		m.Groups = []PollGroup{{Name: "default", Interval: DefaultPollInterval}}
	}
	fill := func(r *Register) {
		r.Order = cmp.Or(r.Order, m.Order)
		r.Scale = cmp.Or(r.Scale, 1)
		r.Group = cmp.Or(r.Group, m.Groups[0].Name)
	}
	for i := range m.Registers {
		fill(&m.Registers[i])
	}
	if m.Heartbeat != nil {
		fill(m.Heartbeat)
	}
}

// Validate checks the map (types, areas, orders, overlaps, unique points,
// groups, heartbeat) and indexes it for At, Span and Register. Call Default
// first on a hand-built map.
func (m *Map) Validate() error {
	if m.Name == "" {
		return ErrName
	}
	if !m.Order.Valid() {
		return fmt.Errorf("%w: %q", ErrOrder, m.Order)
	}
	groups := map[string]bool{}
	for _, g := range m.Groups {
		if g.Name == "" || g.Interval <= 0 || groups[g.Name] {
			return fmt.Errorf("%w: %q (%v)", ErrGroup, g.Name, g.Interval)
		}
		groups[g.Name] = true
	}
	index := map[Area][]*Register{}
	points := map[string]int{}
	for i := range m.Registers {
		r := &m.Registers[i]
		if err := r.validate(); err != nil {
			return err
		}
		if !groups[r.Group] {
			return fmt.Errorf("%w: %s: group %q not defined", ErrGroup, r.Point, r.Group)
		}
		if _, dup := points[r.Point]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicatePoint, r.Point)
		}
		points[r.Point] = i
		index[r.Area] = append(index[r.Area], r)
	}
	if hb := m.Heartbeat; hb != nil {
		if err := hb.validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrHeartbeat, err)
		}
		if hb.Area.Bits() || hb.Writable || (hb.Type != TypeUint16 && hb.Type != TypeUint32) || hb.Scale != 1 || hb.Offset != 0 {
			return fmt.Errorf("%w: must be an unscaled, read-only uint16 or uint32 register", ErrHeartbeat)
		}
		if _, dup := points[hb.Point]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicatePoint, hb.Point)
		}
		index[hb.Area] = append(index[hb.Area], hb)
	}
	for area, regs := range index {
		slices.SortFunc(regs, func(a, b *Register) int { return int(a.Address) - int(b.Address) })
		for i := 1; i < len(regs); i++ {
			if regs[i-1].End() > int(regs[i].Address) {
				return fmt.Errorf("%w: %s and %s in %s area", ErrOverlap, regs[i-1].Point, regs[i].Point, area)
			}
		}
	}
	m.index, m.points = index, points
	return nil
}

// At returns the register covering address addr of area, and which of its
// words addr is (0 or 1). The map must have been validated.
func (m *Map) At(area Area, addr uint16) (*Register, int, bool) {
	regs := m.index[area]
	i, _ := slices.BinarySearchFunc(regs, int(addr), func(r *Register, a int) int {
		switch {
		case r.End() <= a:
			return -1
		case int(r.Address) > a:
			return 1
		}
		return 0
	})
	if i == len(regs) || int(regs[i].Address) > int(addr) || regs[i].End() <= int(addr) {
		return nil, 0, false
	}
	return regs[i], int(addr) - int(regs[i].Address), true
}

// Span returns the lowest mapped address of area and one past the highest;
// lo == hi when nothing is mapped there. Addresses inside the span that no
// register covers read as zero.
func (m *Map) Span(area Area) (lo, hi int) {
	regs := m.index[area]
	if len(regs) == 0 {
		return 0, 0
	}
	return int(regs[0].Address), regs[len(regs)-1].End()
}

// Register returns the register of a point (the heartbeat is not a point).
func (m *Map) Register(point string) (Register, bool) {
	i, ok := m.points[point]
	if !ok {
		return Register{}, false
	}
	return m.Registers[i], true
}

package edge

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
)

// Modbus limits on one read: registers (FC 3, 4) and bits (FC 1, 2).
const (
	maxReadRegisters = 125
	maxReadBits      = 2000
)

// point is a register the edge polls and the measurepoint it feeds; mp is
// nil for the heartbeat.
type point struct {
	reg regmap.Register
	mp  *api.Measurepoint
}

// block is one Modbus read: registers of one area at contiguous addresses.
type block struct {
	area   regmap.Area
	addr   uint16
	n      uint16
	points []point
}

// group is a poll group of one unit: the reads made at each of its ticks.
type group struct {
	name     string
	interval time.Duration
	blocks   []block
}

// service turns a service call into Modbus writes: 1 to a coil, or input
// parameters to registers.
type service struct {
	coil   *regmap.Register
	params map[string]regmap.Register
}

// write is one Modbus write of a service call.
type write struct {
	reg   regmap.Register
	value float64
}

// plan is what the edge does for one unit: the reads of each poll group and
// the services it can run. It is built once from the unit's register map and
// its product's thing model.
type plan struct {
	groups   []group
	services map[string]service
}

// newPlan polls the registers of m whose points are measurepoints of
// product p (plus the heartbeat), batching contiguous registers of a group
// and area into reads of at most 125 registers or 2000 bits. mapped are the
// configured service mappings of the product (service → param → point).
func newPlan(m *regmap.Map, p api.Product, mapped map[string]map[string]string) (*plan, error) {
	mps := map[string]*api.Measurepoint{}
	for i := range p.Model.Measurepoints {
		mps[p.Model.Measurepoints[i].ID] = &p.Model.Measurepoints[i]
	}
	var polled []point
	for _, r := range m.Registers {
		if mp, ok := mps[r.Point]; ok {
			polled = append(polled, point{reg: r, mp: mp})
		}
	}
	if len(polled) == 0 {
		return nil, fmt.Errorf("%w: map %s has no register for a measurepoint of product %s", ErrUnit, m.Name, p.Key)
	}
	if m.Heartbeat != nil {
		polled = append(polled, point{reg: *m.Heartbeat})
	}
	pl := &plan{services: map[string]service{}}
	for _, g := range m.Groups {
		var regs []point
		for _, pt := range polled {
			if pt.reg.Group == g.Name {
				regs = append(regs, pt)
			}
		}
		if len(regs) > 0 {
			pl.groups = append(pl.groups, group{name: g.Name, interval: g.Interval, blocks: blocks(regs)})
		}
	}
	for _, s := range p.Model.Services {
		if params, ok := mapped[s.ID]; ok {
			svc := service{params: map[string]regmap.Register{}}
			for param, pt := range params {
				if !slices.ContainsFunc(s.Input, func(in api.Param) bool { return in.ID == param }) {
					return nil, fmt.Errorf("%w: %s.%s has no input %q", ErrService, p.Key, s.ID, param)
				}
				svc.params[param], _ = m.Register(pt) // checked writable by Config.Validate
			}
			pl.services[s.ID] = svc
			continue
		}
		if r, ok := m.Register(s.ID); ok && r.Area == regmap.AreaCoil && r.Writable {
			pl.services[s.ID] = service{coil: &r}
		}
	}
	for svc := range mapped {
		if _, ok := pl.services[svc]; !ok {
			return nil, fmt.Errorf("%w: product %s has no service %q", ErrService, p.Key, svc)
		}
	}
	return pl, nil
}

// blocks batches registers into reads: same area, contiguous addresses,
// within the Modbus limits.
func blocks(regs []point) []block {
	slices.SortFunc(regs, func(a, b point) int {
		if a.reg.Area != b.reg.Area {
			return cmp.Compare(a.reg.Area, b.reg.Area)
		}
		return int(a.reg.Address) - int(b.reg.Address)
	})
	var out []block
	for _, pt := range regs {
		limit := maxReadRegisters
		if pt.reg.Area.Bits() {
			limit = maxReadBits
		}
		words := uint16(pt.reg.Type.Words())
		if n := len(out); n > 0 {
			b := &out[n-1]
			if b.area == pt.reg.Area && int(b.addr)+int(b.n) == int(pt.reg.Address) && int(b.n)+int(words) <= limit {
				b.n += words
				b.points = append(b.points, pt)
				continue
			}
		}
		out = append(out, block{area: pt.reg.Area, addr: pt.reg.Address, n: words, points: []point{pt}})
	}
	return out
}

// jsonValue turns a decoded value into the JSON value of measurepoint mp:
// a number, an integer for int and enum, a boolean for bool. ok is false for
// garbage: NaN, infinities and values outside the model's range, which the
// cloud would refuse.
func jsonValue(mp *api.Measurepoint, v float64) (value any, ok bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) || mp.Min != nil && v < *mp.Min || mp.Max != nil && v > *mp.Max {
		return nil, false
	}
	switch mp.Type {
	case api.TypeInt, api.TypeEnum:
		return int64(math.Round(v)), true
	case api.TypeBool:
		return v != 0, true
	}
	return v, true
}

// writes reads the call's parameters into the Modbus writes of the service,
// and returns the parameters as the call's output.
func (s service) writes(params json.RawMessage) ([]write, map[string]float64, error) {
	if s.coil != nil {
		return []write{{reg: *s.coil, value: 1}}, nil, nil
	}
	var in map[string]json.RawMessage
	if len(params) > 0 {
		if err := json.Unmarshal(params, &in); err != nil {
			return nil, nil, fmt.Errorf("params must be an object: %w", err)
		}
	}
	names := make([]string, 0, len(s.params))
	for name := range s.params {
		names = append(names, name)
	}
	slices.Sort(names)
	out := map[string]float64{}
	ws := make([]write, 0, len(names))
	for _, name := range names {
		raw, ok := in[name]
		if !ok {
			return nil, nil, fmt.Errorf("missing parameter %q", name)
		}
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("parameter %q must be a number", name)
		}
		ws = append(ws, write{reg: s.params[name], value: v})
		out[name] = v
	}
	return ws, out, nil
}

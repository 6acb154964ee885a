package regmap

import (
	"fmt"
	"math"
)

// Area is one of the four Modbus data areas.
type Area string

// The Modbus data areas: coils (FC 1, 5, 15), discrete inputs (FC 2),
// input registers (FC 4) and holding registers (FC 3, 6, 16).
const (
	AreaCoil     Area = "coil"
	AreaDiscrete Area = "discrete"
	AreaInput    Area = "input"
	AreaHolding  Area = "holding"
)

// Valid reports whether a is one of the four areas.
func (a Area) Valid() bool {
	switch a {
	case AreaCoil, AreaDiscrete, AreaInput, AreaHolding:
		return true
	}
	return false
}

// Bits reports whether a holds single bits (coils, discrete inputs) rather than
// 16-bit registers.
func (a Area) Bits() bool { return a == AreaCoil || a == AreaDiscrete }

// Type is the data type of a mapped value.
type Type string

// The supported data types. Bool is the only type of coils and discrete inputs;
// registers hold the integer and float types.
const (
	TypeBool    Type = "bool"
	TypeInt16   Type = "int16"
	TypeUint16  Type = "uint16"
	TypeInt32   Type = "int32"
	TypeUint32  Type = "uint32"
	TypeFloat32 Type = "float32"
)

// Words is the number of 16-bit registers (or bits, for bool) a value of type t
// occupies, or 0 for an unknown type.
func (t Type) Words() int {
	switch t {
	case TypeBool, TypeInt16, TypeUint16:
		return 1
	case TypeInt32, TypeUint32, TypeFloat32:
		return 2
	}
	return 0
}

// bounds is the raw integer range of t; floats report ±MaxFloat32.
func (t Type) bounds() (lo, hi float64) {
	switch t {
	case TypeBool:
		return 0, 1
	case TypeInt16:
		return math.MinInt16, math.MaxInt16
	case TypeUint16:
		return 0, math.MaxUint16
	case TypeInt32:
		return math.MinInt32, math.MaxInt32
	case TypeUint32:
		return 0, math.MaxUint32
	}
	return -math.MaxFloat32, math.MaxFloat32
}

// Register maps one point to a place in a device's Modbus address space.
// The engineering value is raw·Scale + Offset, where raw is the number on the wire.
type Register struct {
	// Point is the measurepoint or service name (e.g. WTUR.W, start).
	Point string `yaml:"point"`
	// Area is the data area.
	Area Area `yaml:"area"`
	// Address is the zero-based PDU address of the first word or bit.
	Address uint16 `yaml:"address"`
	// Type is the wire type; coils and discrete inputs are bool.
	Type Type `yaml:"type"`
	// Order overrides the map's byte order for this register.
	Order Order `yaml:"order,omitempty"`
	// Scale multiplies the raw value (default 1).
	Scale float64 `yaml:"scale,omitempty"`
	// Offset is added after scaling.
	Offset float64 `yaml:"offset,omitempty"`
	// Resolution is the step of a float32 register's engineering value:
	// the device rounds to a multiple of it (a power meter's 1 kW). Integer
	// registers step by their scale; 0 means the float's own precision.
	Resolution float64 `yaml:"resolution,omitempty"`
	// Unit is the engineering unit, for documentation and thing models.
	Unit string `yaml:"unit,omitempty"`
	// Writable marks setpoints and commands (holding registers and coils only).
	Writable bool `yaml:"writable,omitempty"`
	// Group names the poll group the edge reads this register with.
	Group string `yaml:"group,omitempty"`
	// Description says what the point is.
	Description string `yaml:"description,omitempty"`
}

// End is one past the last address the register occupies.
func (r Register) End() int { return int(r.Address) + r.Type.Words() }

// Clamp limits v to the engineering range the register can carry, as a device
// saturates a value that does not fit its register.
func (r Register) Clamp(v float64) float64 {
	lo, hi := r.Type.bounds()
	a, b := lo*r.scale()+r.Offset, hi*r.scale()+r.Offset
	if a > b {
		a, b = b, a
	}
	return math.Max(a, math.Min(b, v))
}

func (r Register) scale() float64 {
	if r.Scale == 0 {
		return 1
	}
	return r.Scale
}

// Encode converts the engineering value v into the register's words in its
// own byte order. Integers are rounded to the nearest raw value; a value
// that does not fit the type is ErrRange.
func (r Register) Encode(v float64) ([]uint16, error) { return r.EncodeAs(v, r.Order) }

// EncodeAs is Encode with byte order o instead of the register's own.
func (r Register) EncodeAs(v float64, o Order) ([]uint16, error) {
	if math.IsNaN(v) && r.Type != TypeFloat32 {
		return nil, fmt.Errorf("%w: %s: NaN", ErrRange, r.Point)
	}
	if r.Resolution > 0 {
		v = math.Round(v/r.Resolution) * r.Resolution
	}
	raw := (v - r.Offset) / r.scale()
	if r.Type != TypeFloat32 {
		raw = math.Round(raw)
	}
	if lo, hi := r.Type.bounds(); raw < lo || raw > hi {
		if !(r.Type == TypeFloat32 && math.IsInf(raw, 0)) {
			return nil, fmt.Errorf("%w: %s: %g does not fit %s", ErrRange, r.Point, v, r.Type)
		}
	}
	switch r.Type {
	case TypeBool:
		return []uint16{uint16(raw)}, nil
	case TypeInt16:
		return []uint16{Word16(uint16(int16(raw)), o)}, nil
	case TypeUint16:
		return []uint16{Word16(uint16(raw), o)}, nil
	case TypeInt32:
		w := Words32(uint32(int32(raw)), o)
		return w[:], nil
	case TypeUint32:
		w := Words32(uint32(raw), o)
		return w[:], nil
	case TypeFloat32:
		w := Words32(math.Float32bits(float32(raw)), o)
		return w[:], nil
	}
	return nil, fmt.Errorf("%w: %q", ErrType, r.Type)
}

// Decode converts the register's words, in its own byte order, into the
// engineering value.
func (r Register) Decode(words []uint16) (float64, error) { return r.DecodeAs(words, r.Order) }

// DecodeAs is Decode with byte order o instead of the register's own.
func (r Register) DecodeAs(words []uint16, o Order) (float64, error) {
	n := r.Type.Words()
	if n == 0 {
		return 0, fmt.Errorf("%w: %q", ErrType, r.Type)
	}
	if len(words) != n {
		return 0, fmt.Errorf("%w: %s needs %d words, got %d", ErrWordCount, r.Point, n, len(words))
	}
	var raw float64
	switch r.Type {
	case TypeBool:
		if words[0] != 0 {
			raw = 1
		}
	case TypeInt16:
		raw = float64(int16(Value16(words[0], o)))
	case TypeUint16:
		raw = float64(Value16(words[0], o))
	case TypeInt32:
		raw = float64(int32(Value32([2]uint16(words), o)))
	case TypeUint32:
		raw = float64(Value32([2]uint16(words), o))
	case TypeFloat32:
		raw = float64(math.Float32frombits(Value32([2]uint16(words), o)))
	}
	return raw*r.scale() + r.Offset, nil
}

// validate checks the register on its own; the map checks overlaps.
func (r Register) validate() error {
	switch {
	case r.Point == "":
		return fmt.Errorf("%w at %s %d", ErrNoPoint, r.Area, r.Address)
	case !r.Area.Valid():
		return fmt.Errorf("%w: %s: %q", ErrArea, r.Point, r.Area)
	case r.Type.Words() == 0:
		return fmt.Errorf("%w: %s: %q", ErrType, r.Point, r.Type)
	case r.Area.Bits() != (r.Type == TypeBool):
		return fmt.Errorf("%w: %s: %s in %s area", ErrType, r.Point, r.Type, r.Area)
	case !r.Order.Valid():
		return fmt.Errorf("%w: %s: %q", ErrOrder, r.Point, r.Order)
	case r.Scale == 0 || math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0):
		return fmt.Errorf("%w: %s", ErrScale, r.Point)
	case r.Resolution != 0 && (r.Type != TypeFloat32 || !(r.Resolution > 0) || math.IsInf(r.Resolution, 0)):
		return fmt.Errorf("%w: %s: resolution %g (float32 registers only, positive and finite)", ErrResolution, r.Point, r.Resolution)
	case r.Writable && (r.Area == AreaInput || r.Area == AreaDiscrete):
		return fmt.Errorf("%w: %s in %s area", ErrWritable, r.Point, r.Area)
	case r.End() > 0x10000:
		return fmt.Errorf("%w: %s ends past 65535", ErrOverlap, r.Point)
	}
	return nil
}

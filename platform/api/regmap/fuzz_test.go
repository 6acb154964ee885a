package regmap

import (
	"errors"
	"math"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/platform/api/fuzzinput"
)

var (
	allOrders = []Order{OrderABCD, OrderCDAB, OrderBADC, OrderDCBA}
	regTypes  = []Type{TypeInt16, TypeUint16, TypeInt32, TypeUint32, TypeFloat32}
)

// FuzzDecode decodes arbitrary register words as every register type in
// every word/byte order, scaled by an arbitrary scale and offset. A wrong
// word count is ErrWordCount; otherwise the value is raw·scale + offset,
// where raw is the same in every order once the words are reordered, and
// encoding an unscaled value gives back the words it came from.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x12, 0x34, 0x56, 0x78}, 1.0, 0.0)
	f.Add([]byte{0x80, 0x00, 0x00, 0x00}, 0.1, -40.0)
	f.Add([]byte{0x7f, 0xc0, 0x00, 0x01}, 1.0, 0.0) // a float32 NaN
	f.Add([]byte{0x7f, 0x80, 0x00, 0x00}, 1.0, 0.0) // +Inf
	f.Add([]byte{0xff, 0xff}, 0.01, 0.0)
	f.Add([]byte{0x01, 0x02, 0x03}, 1.0, 0.0) // odd length
	f.Add([]byte{}, 1.0, 0.0)
	f.Fuzz(func(t *testing.T, b []byte, scale, offset float64) {
		words := fuzzinput.Words(b)
		for _, typ := range regTypes {
			for _, o := range allOrders {
				r := Register{Point: "p", Area: AreaHolding, Type: typ, Order: o, Scale: scale, Offset: offset}
				v, err := r.Decode(words)
				if len(words) != typ.Words() {
					if !errors.Is(err, ErrWordCount) {
						t.Fatalf("%s %s: %d words: err %v, want ErrWordCount", typ, o, len(words), err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s %s %04x: %v", typ, o, words, err)
				}
				// The same value sent big-endian (ABCD) decodes the same.
				abcd := reorder(words, o)
				u := Register{Point: "p", Area: AreaHolding, Type: typ, Order: OrderABCD}
				raw, err := u.Decode(abcd)
				if err != nil {
					t.Fatal(err)
				}
				if want := raw*r.scale() + offset; !same(v, want) {
					t.Fatalf("%s %s %04x scale %g offset %g: %g, want %g", typ, o, words, scale, offset, v, want)
				}
				// Unscaled, a decoded value encodes back to its words.
				back, err := u.EncodeAs(raw, o)
				if err != nil {
					if typ == TypeFloat32 && math.IsNaN(raw) {
						continue // NaN payloads are not kept through float64
					}
					t.Fatalf("%s %s %04x: encode %g: %v", typ, o, words, raw, err)
				}
				if typ == TypeFloat32 && (math.IsNaN(raw) || raw == 0) {
					continue // NaN payloads and the sign of a zero are not kept
				}
				if !equalWords(back, words) {
					t.Fatalf("%s %s %04x: decode %g encodes to %04x", typ, o, words, raw, back)
				}
			}
		}
	})
}

// reorder returns words (in order o) as ABCD words of the same value.
func reorder(words []uint16, o Order) []uint16 {
	if len(words) == 1 {
		return []uint16{Value16(words[0], o)}
	}
	w := Words32(Value32([2]uint16(words), o), OrderABCD)
	return w[:]
}

func same(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func equalWords(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzEncode encodes an arbitrary engineering value into every register
// type and order: either ErrRange, or words that decode to the value within
// half a raw step (exactly for float32 values a float32 holds).
func FuzzEncode(f *testing.F) {
	f.Add(837.4, 0.1, 0.0)
	f.Add(-40.0, 0.5, -40.0)
	f.Add(math.MaxFloat64, 1.0, 0.0)
	f.Add(4294967295.0, 1.0, 0.0)
	f.Add(-0.5, 1.0, 0.0)
	f.Add(math.Inf(1), 1.0, 0.0)
	f.Add(1e-300, 1e-300, 0.0)
	f.Fuzz(func(t *testing.T, v, scale, offset float64) {
		if scale == 0 || math.IsNaN(scale) || math.IsInf(scale, 0) || math.IsNaN(offset) || math.IsInf(offset, 0) {
			return // Validate refuses such registers
		}
		for _, typ := range regTypes {
			for _, o := range allOrders {
				r := Register{Point: "p", Area: AreaHolding, Type: typ, Order: o, Scale: scale, Offset: offset}
				words, err := r.Encode(v)
				if err != nil {
					if !errors.Is(err, ErrRange) {
						t.Fatalf("%s %s: encode %g: %v, want ErrRange", typ, o, v, err)
					}
					continue
				}
				if len(words) != typ.Words() {
					t.Fatalf("%s %s: encode %g: %d words", typ, o, v, len(words))
				}
				// The raw number on the wire is the value unscaled, rounded
				// to an integer or to a float32.
				u := Register{Point: "p", Area: AreaHolding, Type: typ, Order: o, Scale: 1}
				back, err := u.Decode(words)
				if err != nil {
					t.Fatalf("%s %s: decode %04x: %v", typ, o, words, err)
				}
				raw := (v - offset) / scale
				want := math.Round(raw)
				if typ == TypeFloat32 {
					want = float64(float32(raw))
				}
				if !same(back, want) {
					t.Fatalf("%s %s: %g (raw %g) came back as raw %g, want %g", typ, o, v, raw, back, want)
				}
			}
		}
	})
}

// FuzzParse parses arbitrary register map YAML: an error, or a valid map
// whose every register is found at each of its addresses, whose points look
// up, whose values round-trip through their registers, and which parses to
// the same map once written back as YAML.
func FuzzParse(f *testing.F) {
	fuzzinput.Seed(f, "testdata/*.yaml", "maps/*.yaml", "../../edge/testdata/meter.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a map", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("a parsed map does not validate: %v", err)
		}
		for i := range m.Registers {
			r := m.Registers[i]
			for a := int(r.Address); a < r.End(); a++ {
				got, word, ok := m.At(r.Area, uint16(a))
				if !ok || got.Point != r.Point || word != a-int(r.Address) {
					t.Fatalf("At(%s, %d) = %v %d %v, want %s", r.Area, a, got, word, ok, r.Point)
				}
			}
			if lo, hi := m.Span(r.Area); int(r.Address) < lo || r.End() > hi {
				t.Fatalf("span %d..%d of %s misses %s", lo, hi, r.Area, r.Point)
			}
			if got, ok := m.Register(r.Point); !ok || got != r {
				t.Fatalf("Register(%q) = %v %v", r.Point, got, ok)
			}
			for _, v := range []float64{0, r.Offset, math.MaxFloat64, -math.MaxFloat64} {
				c := r.Clamp(v)
				words, err := r.Encode(c)
				if err != nil {
					if r.Type == TypeFloat32 || math.IsInf(c, 0) || math.Abs(c) > 1e300 {
						continue // float rounding at the edges of the range
					}
					t.Fatalf("%s: a clamped value %g does not encode: %v", r.Point, c, err)
				}
				if _, err := r.Decode(words); err != nil {
					t.Fatalf("%s: decode %04x: %v", r.Point, words, err)
				}
			}
		}
		out, err := yaml.Marshal(m)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("a valid map written back does not parse: %v\n%s", err, out)
		}
		if len(again.Registers) != len(m.Registers) || again.Name != m.Name || again.Order != m.Order {
			t.Fatalf("written back and parsed: %+v, want %+v", again, m)
		}
		for i := range m.Registers {
			if !sameRegister(again.Registers[i], m.Registers[i]) {
				t.Fatalf("register %d written back and parsed: %+v, want %+v", i, again.Registers[i], m.Registers[i])
			}
		}
	})
}

func sameRegister(a, b Register) bool {
	return a.Point == b.Point && a.Area == b.Area && a.Address == b.Address && a.Type == b.Type && a.Order == b.Order &&
		a.Scale == b.Scale && (a.Offset == b.Offset) && a.Unit == b.Unit && a.Writable == b.Writable && a.Group == b.Group &&
		a.Description == b.Description
}

// FuzzValidateUnits checks arbitrary unit lists: an error, or ids in 1…247
// and devices used once.
func FuzzValidateUnits(f *testing.F) {
	f.Add("WT01", uint8(1), "wind-turbine", "WT02", uint8(2), "met-mast")
	f.Add("WT01", uint8(1), "wind-turbine", "WT01", uint8(2), "wind-turbine")
	f.Add("WT01", uint8(0), "wind-turbine", "", uint8(248), "")
	f.Fuzz(func(t *testing.T, d1 string, id1 uint8, m1 string, d2 string, id2 uint8, m2 string) {
		units := []Unit{{Device: d1, ID: id1, Map: m1}, {Device: d2, ID: id2, Map: m2}}
		err := ValidateUnits(units)
		valid := d1 != "" && d2 != "" && m1 != "" && m2 != "" && id1 >= 1 && id1 <= 247 && id2 >= 1 && id2 <= 247 &&
			id1 != id2 && d1 != d2
		if valid != (err == nil) {
			t.Fatalf("%+v: err %v, want valid %v", units, err, valid)
		}
	})
}

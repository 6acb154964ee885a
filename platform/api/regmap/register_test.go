package regmap

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRegisterEncodeDecode(t *testing.T) {
	tests := []struct {
		typ    Type
		order  Order
		scale  float64
		offset float64
		value  float64
		words  []uint16
	}{
		{TypeFloat32, OrderABCD, 1, 0, 123.456, []uint16{0x42F6, 0xE979}},
		{TypeFloat32, OrderCDAB, 1, 0, 123.456, []uint16{0xE979, 0x42F6}},
		{TypeFloat32, OrderBADC, 1, 0, 123.456, []uint16{0xF642, 0x79E9}},
		{TypeFloat32, OrderDCBA, 1, 0, 123.456, []uint16{0x79E9, 0xF642}},
		{TypeInt32, OrderABCD, 1, 0, -2, []uint16{0xFFFF, 0xFFFE}},
		{TypeInt32, OrderCDAB, 1, 0, -2, []uint16{0xFFFE, 0xFFFF}},
		{TypeInt32, OrderBADC, 1, 0, -2, []uint16{0xFFFF, 0xFEFF}},
		{TypeInt32, OrderDCBA, 1, 0, -2, []uint16{0xFEFF, 0xFFFF}},
		{TypeUint32, OrderABCD, 1, 0, 0x01020304, []uint16{0x0102, 0x0304}},
		{TypeUint32, OrderCDAB, 1, 0, 0x01020304, []uint16{0x0304, 0x0102}},
		{TypeUint32, OrderBADC, 1, 0, 0x01020304, []uint16{0x0201, 0x0403}},
		{TypeUint32, OrderDCBA, 1, 0, 0x01020304, []uint16{0x0403, 0x0201}},
		{TypeUint32, OrderABCD, 1000, 0, 12_345_678_000, []uint16{0x00BC, 0x614E}},
		{TypeInt16, OrderABCD, 1, 0, -300, []uint16{0xFED4}},
		{TypeInt16, OrderCDAB, 1, 0, -300, []uint16{0xFED4}},
		{TypeInt16, OrderBADC, 1, 0, -300, []uint16{0xD4FE}},
		{TypeInt16, OrderDCBA, 1, 0, -300, []uint16{0xD4FE}},
		{TypeInt16, OrderABCD, 0.1, 0, -12.3, []uint16{0xFF85}},
		{TypeUint16, OrderABCD, 0.1, 0, 466, []uint16{0x1234}},
		{TypeUint16, OrderBADC, 0.1, 0, 466, []uint16{0x3412}},
		{TypeUint16, OrderABCD, 0.5, -40, 10, []uint16{100}},
		{TypeBool, OrderABCD, 1, 0, 1, []uint16{1}},
		{TypeBool, OrderABCD, 1, 0, 0, []uint16{0}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%g", tt.typ, tt.order, tt.value), func(t *testing.T) {
			r := Register{Point: "p", Type: tt.typ, Order: tt.order, Scale: tt.scale, Offset: tt.offset}
			words, err := r.Encode(tt.value)
			require.NoError(t, err)
			require.Equal(t, tt.words, words)
			got, err := r.Decode(words)
			require.NoError(t, err)
			if tt.typ == TypeFloat32 {
				require.InDelta(t, tt.value, got, 1e-4)
			} else {
				require.InDelta(t, tt.value, got, 1e-9)
			}
		})
	}
}

func TestRegisterRoundTripAllOrders(t *testing.T) {
	values := map[Type][]float64{
		TypeInt16:   {math.MinInt16, -1, 0, 1, math.MaxInt16},
		TypeUint16:  {0, 1, 0x8000, math.MaxUint16},
		TypeInt32:   {math.MinInt32, -65536, -1, 0, 65535, math.MaxInt32},
		TypeUint32:  {0, 65535, 65536, math.MaxUint32},
		TypeFloat32: {-3.4e38, -1.5, 0, 1e-30, 5000, 3.4e38, math.Inf(1)},
	}
	for typ, vs := range values {
		for _, o := range []Order{OrderABCD, OrderCDAB, OrderBADC, OrderDCBA} {
			for _, v := range vs {
				t.Run(fmt.Sprintf("%s/%s/%g", typ, o, v), func(t *testing.T) {
					r := Register{Point: "p", Type: typ, Order: o, Scale: 1}
					words, err := r.Encode(v)
					require.NoError(t, err)
					require.Len(t, words, typ.Words())
					got, err := r.Decode(words)
					require.NoError(t, err)
					require.Equal(t, float64(float32(v)), float64(float32(got)))
				})
			}
		}
	}
}

func TestRegisterEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		reg  Register
		v    float64
		err  error
	}{
		{"int16 too big", Register{Type: TypeInt16, Scale: 1}, 32768, ErrRange},
		{"int16 too small after scale", Register{Type: TypeInt16, Scale: 0.1}, -3276.9, ErrRange},
		{"uint16 negative", Register{Type: TypeUint16, Scale: 1}, -1, ErrRange},
		{"uint32 too big", Register{Type: TypeUint32, Scale: 1}, 1 << 32, ErrRange},
		{"int32 NaN", Register{Type: TypeInt32, Scale: 1}, math.NaN(), ErrRange},
		{"float32 overflow", Register{Type: TypeFloat32, Scale: 1}, 1e39, ErrRange},
		{"unknown type", Register{Type: "int64", Scale: 1}, 1, ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.reg.Order = OrderABCD
			_, err := tt.reg.Encode(tt.v)
			require.ErrorIs(t, err, tt.err)
		})
	}
	_, err := Register{Type: TypeFloat32, Scale: 1, Order: OrderABCD}.Decode([]uint16{1})
	require.ErrorIs(t, err, ErrWordCount)
}

// TestRegisterResolution: a float32 register with a resolution carries the
// nearest multiple of it, which decodes exactly.
func TestRegisterResolution(t *testing.T) {
	for _, tt := range []struct{ res, in, out float64 }{
		{1, 2345.67, 2346},
		{1, -12.4, -12},
		{0.5, 1013.26, 1013.5},
		{0, 2345.67, float64(float32(2345.67))},
	} {
		r := Register{Type: TypeFloat32, Scale: 1, Order: OrderABCD, Resolution: tt.res}
		w, err := r.Encode(tt.in)
		require.NoError(t, err)
		got, err := r.Decode(w)
		require.NoError(t, err)
		require.Equal(t, tt.out, got, "resolution %g of %g", tt.res, tt.in)
	}
}

func TestRegisterClamp(t *testing.T) {
	tests := []struct {
		reg     Register
		in, out float64
	}{
		{Register{Type: TypeInt16, Scale: 0.1}, 5000, 3276.7},
		{Register{Type: TypeInt16, Scale: 0.1}, -5000, -3276.8},
		{Register{Type: TypeUint16, Scale: 0.01}, -3, 0},
		{Register{Type: TypeUint16, Scale: -1}, -3, -3},
		{Register{Type: TypeUint16, Scale: 1}, 12, 12},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%g", tt.reg.Type, tt.in), func(t *testing.T) {
			require.InDelta(t, tt.out, tt.reg.Clamp(tt.in), 1e-9)
			_, err := Register{Type: tt.reg.Type, Scale: tt.reg.Scale, Order: OrderABCD}.Encode(tt.reg.Clamp(tt.in))
			require.NoError(t, err)
		})
	}
}

func TestWordSwapped(t *testing.T) {
	for _, o := range []Order{OrderABCD, OrderCDAB, OrderBADC, OrderDCBA} {
		require.NotEqual(t, o, o.WordSwapped())
		require.Equal(t, o, o.WordSwapped().WordSwapped())
		w := Words32(0x01020304, o)
		require.Equal(t, [2]uint16{w[1], w[0]}, Words32(0x01020304, o.WordSwapped()))
	}
}

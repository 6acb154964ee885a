package regmap

// Order is the byte and word order of a register value on the wire. Letters name
// the bytes of a 32-bit value from most (A) to least (D) significant, in the order
// they are sent: ABCD is big-endian, DCBA little-endian, CDAB big-endian bytes with
// the low word first ("word swap"), BADC big-endian words with swapped bytes.
// For 16-bit values only the byte order matters: ABCD and CDAB send the high byte
// first, BADC and DCBA the low byte first.
type Order string

// The four word/byte orders.
const (
	OrderABCD Order = "ABCD"
	OrderCDAB Order = "CDAB"
	OrderBADC Order = "BADC"
	OrderDCBA Order = "DCBA"
)

// Valid reports whether o is one of the four orders.
func (o Order) Valid() bool {
	switch o {
	case OrderABCD, OrderCDAB, OrderBADC, OrderDCBA:
		return true
	}
	return false
}

// WordSwapped returns the order with the two 16-bit words of a 32-bit value
// exchanged (ABCD↔CDAB, BADC↔DCBA): the most common byte order mistake.
func (o Order) WordSwapped() Order {
	switch o {
	case OrderABCD:
		return OrderCDAB
	case OrderCDAB:
		return OrderABCD
	case OrderBADC:
		return OrderDCBA
	default:
		return OrderBADC
	}
}

func (o Order) swapBytes() bool { return o == OrderBADC || o == OrderDCBA }
func (o Order) swapWords() bool { return o == OrderCDAB || o == OrderDCBA }

// Word16 returns the register word that carries the 16-bit value v in order o.
func Word16(v uint16, o Order) uint16 {
	if o.swapBytes() {
		return v<<8 | v>>8
	}
	return v
}

// Value16 is the inverse of Word16.
func Value16(w uint16, o Order) uint16 { return Word16(w, o) }

// Words32 returns the two register words, in address order, that carry the
// 32-bit value v in order o.
func Words32(v uint32, o Order) [2]uint16 {
	hi, lo := Word16(uint16(v>>16), o), Word16(uint16(v), o)
	if o.swapWords() {
		return [2]uint16{lo, hi}
	}
	return [2]uint16{hi, lo}
}

// Value32 is the inverse of Words32.
func Value32(w [2]uint16, o Order) uint32 {
	hi, lo := w[0], w[1]
	if o.swapWords() {
		hi, lo = lo, hi
	}
	return uint32(Value16(hi, o))<<16 | uint32(Value16(lo, o))
}

package modbus

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/gale-iot/gale/platform/api/fuzzinput"
	"github.com/gale-iot/gale/platform/api/regmap"
)

// fuzzDevice is a device whose every point reads value and which accepts
// every write.
type fuzzDevice struct {
	m      *regmap.Map
	value  float64
	writes map[string]float64
}

func (d *fuzzDevice) Points() map[string]float64 {
	out := map[string]float64{}
	for _, r := range d.m.Registers {
		out[r.Point] = d.value
	}
	return out
}

func (d *fuzzDevice) Online() bool { return true }

func (d *fuzzDevice) WritePoint(point string, v float64) error {
	d.writes[point] = v
	return nil
}

// exceptionErrors are the errors the server turns into exception responses.
var exceptionErrors = []error{mb.ErrIllegalFunction, mb.ErrIllegalDataAddress, mb.ErrIllegalDataValue,
	mb.ErrServerDeviceFailure, mb.ErrAcknowledge, mb.ErrServerDeviceBusy, mb.ErrMemoryParityError,
	mb.ErrGWPathUnavailable, mb.ErrGWTargetFailedToRespond}

// FuzzRequest serves arbitrary requests (function, unit, address,
// quantity, written words or bits, device value, byte-order fault) as the
// Modbus server hands them to the gateway: every error is one the server
// answers as an exception; a read returns one word or bit per address; a
// write reaches only writable points of the unit's map.
func FuzzRequest(f *testing.F) {
	f.Add(uint8(3), uint8(1), uint16(0), uint16(2), []byte{}, 1.0, uint8(0))
	f.Add(uint8(4), uint8(1), uint16(0), uint16(23), []byte{}, 837.4, uint8(0))
	f.Add(uint8(4), uint8(3), uint16(0), uint16(125), []byte{}, math.NaN(), uint8(1))
	f.Add(uint8(16), uint8(1), uint16(22), uint16(2), []byte{0x44, 0x7a, 0, 0}, 0.0, uint8(2))
	f.Add(uint8(16), uint8(1), uint16(65535), uint16(3), []byte{0, 1, 0, 2, 0, 3}, 0.0, uint8(0))
	f.Add(uint8(15), uint8(1), uint16(0), uint16(3), []byte{1, 0, 1}, 0.0, uint8(0))
	f.Add(uint8(1), uint8(2), uint16(0), uint16(2000), []byte{}, math.Inf(1), uint8(0))
	f.Add(uint8(2), uint8(9), uint16(0), uint16(1), []byte{}, -1e300, uint8(3))
	f.Fuzz(func(t *testing.T, fc, unitID uint8, addr, quantity uint16, args []byte, value float64, order uint8) {
		maps := map[string]*regmap.Map{}
		devices := map[string]Device{}
		for key, name := range map[string]string{"WT01": "wind-turbine", "MM01": "met-mast"} {
			m, err := regmap.Shipped(name)
			if err != nil {
				t.Fatal(err)
			}
			maps[key] = m
			devices[key] = &fuzzDevice{m: m, value: value, writes: map[string]float64{}}
		}
		g, err := New(Config{ID: "GW", Addr: "127.0.0.1:0", TimeoutHold: time.Millisecond,
			Units: []regmap.Unit{{Device: "WT01", ID: 1, Map: "wind-turbine"}, {Device: "MM01", ID: 2, Map: "met-mast"}}},
			func(k string) (Device, bool) { d, ok := devices[k]; return d, ok }, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if order%5 != 0 {
			if err := g.Inject(Fault{Kind: FaultByteOrder, Order: []regmap.Order{"", regmap.OrderCDAB, regmap.OrderBADC, regmap.OrderDCBA}[order%5-1]}); err != nil {
				t.Fatal(err)
			}
		}
		h := handler{g}
		words, bits := fuzzinput.Words(args), fuzzinput.Bits(args)
		var (
			regs []uint16
			got  []bool
			n    = int(quantity)
		)
		switch fc % 6 {
		case 0:
			got, err = h.HandleCoils(&mb.CoilsRequest{UnitId: unitID, Addr: addr, Quantity: quantity})
		case 1:
			got, err = h.HandleDiscreteInputs(&mb.DiscreteInputsRequest{UnitId: unitID, Addr: addr, Quantity: quantity})
		case 2:
			regs, err = h.HandleHoldingRegisters(&mb.HoldingRegistersRequest{UnitId: unitID, Addr: addr, Quantity: quantity})
		case 3:
			regs, err = h.HandleInputRegisters(&mb.InputRegistersRequest{UnitId: unitID, Addr: addr, Quantity: quantity})
		case 4:
			_, err = h.HandleHoldingRegisters(&mb.HoldingRegistersRequest{UnitId: unitID, Addr: addr, IsWrite: true, Args: words, Quantity: uint16(len(words))})
			n = 0
		case 5:
			_, err = h.HandleCoils(&mb.CoilsRequest{UnitId: unitID, Addr: addr, IsWrite: true, Args: bits, Quantity: uint16(len(bits))})
			n = 0
		}
		if err != nil {
			known := false
			for _, e := range exceptionErrors {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("fc %d unit %d @%d+%d: %v is no exception", fc%6, unitID, addr, quantity, err)
			}
		} else if len(regs)+len(got) != n {
			t.Fatalf("fc %d unit %d @%d+%d: %d words, %d bits", fc%6, unitID, addr, quantity, len(regs), len(got))
		}
		for key, d := range devices {
			for point := range d.(*fuzzDevice).writes {
				r, ok := maps[key].Register(point)
				if !ok || !r.Writable {
					t.Fatalf("write of %s.%s, which is not a writable register", key, point)
				}
			}
		}
	})
}

// FuzzFault validates arbitrary gateway faults as the control API and the
// fleet config spell them: an error wrapping ErrFault, or a fault a
// gateway injects and clears.
func FuzzFault(f *testing.F) {
	f.Add("exception", uint8(0), uint8(4), 0, "")
	f.Add("exception", uint8(3), uint8(7), 0, "")
	f.Add("max_clients", uint8(0), uint8(0), 2, "")
	f.Add("byte_order", uint8(1), uint8(0), 0, "ABDC")
	f.Add("timeout", uint8(0), uint8(0), 0, "")
	f.Fuzz(func(t *testing.T, kind string, unitID, code uint8, clients int, order string) {
		fault := Fault{Kind: FaultKind(kind), Unit: unitID, Code: code, Clients: clients, Order: regmap.Order(order)}
		err := fault.Validate()
		if err != nil {
			if !errors.Is(err, ErrFault) {
				t.Fatalf("%+v: %v does not wrap ErrFault", fault, err)
			}
			return
		}
		if fault.Kind == FaultException && exception(fault.Code) == nil {
			t.Fatalf("%+v: valid, but the server cannot send code %d", fault, fault.Code)
		}
	})
}

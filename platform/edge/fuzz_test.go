package edge

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/fuzzinput"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/registry"
)

// FuzzConfig parses arbitrary edge config YAML: an error, or a config that
// validates again and parses to a valid config once written back as YAML.
func FuzzConfig(f *testing.F) {
	fuzzinput.Seed(f, "testdata/*.yaml")
	fuzzinput.Validated(f, func(b []byte) (Config, error) { return config.Parse[Config]("fuzz.yaml", b) }, nil)
}

// fuzzPlan is the plan of a wind turbine behind the edge: its shipped map
// and thing model, setPowerLimit mapped to WTUR.DmdW.
func fuzzPlan(tb testing.TB) *plan {
	tb.Helper()
	m, err := regmap.Shipped("wind-turbine")
	if err != nil {
		tb.Fatal(err)
	}
	products, err := registry.ShippedProducts()
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range products {
		if p.Key == "wind-turbine" {
			pl, err := newPlan(m, p, map[string]map[string]string{"setPowerLimit": {"limit": "WTUR.DmdW"}})
			if err != nil {
				tb.Fatal(err)
			}
			return pl
		}
	}
	tb.Fatal("no shipped product wind-turbine")
	return nil
}

// allBlocks lists the reads of every poll group of pl.
func allBlocks(pl *plan) []block {
	var out []block
	for _, g := range pl.groups {
		out = append(out, g.blocks...)
	}
	return out
}

// checkValues checks what decode made of a block: only the block's
// measurepoints, each a JSON value of its model's type within its range.
func checkValues(t *testing.T, b block, values map[string]any) {
	t.Helper()
	points := map[string]*api.Measurepoint{}
	for _, pt := range b.points {
		if pt.mp != nil {
			points[pt.reg.Point] = pt.mp
		}
	}
	for id, v := range values {
		mp, ok := points[id]
		if !ok {
			t.Fatalf("value for %s, which block %s@%d does not read", id, b.area, b.addr)
		}
		var x float64
		switch v := v.(type) {
		case int64:
			if mp.Type != api.TypeInt && mp.Type != api.TypeEnum {
				t.Fatalf("%s: int64 for a %s", id, mp.Type)
			}
			x = float64(v)
		case bool:
			if mp.Type != api.TypeBool {
				t.Fatalf("%s: bool for a %s", id, mp.Type)
			}
			continue
		case float64:
			x = v
		default:
			t.Fatalf("%s: %T", id, v)
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			t.Fatalf("%s: %g is not a JSON number", id, x)
		}
		// An int or enum is the rounded value, which may round past the range by less than one.
		if slack := 0.5; mp.Min != nil && x < *mp.Min-slack || mp.Max != nil && x > *mp.Max+slack {
			t.Fatalf("%s: %g outside its measurepoint's range", id, x)
		}
	}
	if _, err := json.Marshal(values); err != nil {
		t.Fatalf("values do not encode: %v", err)
	}
}

// FuzzDecodeBlock feeds decode arbitrary register words and bits, of any
// length, for every read of a wind turbine's plan: no panic, values only
// for the block's points and within their models; too few words or bits
// is garbage.
func FuzzDecodeBlock(f *testing.F) {
	pl := fuzzPlan(f)
	blocks := allBlocks(pl)
	f.Add(uint8(0), []byte{0, 1, 0, 2, 0, 3, 0, 4})
	f.Add(uint8(1), []byte{0x41, 0xf0, 0, 0, 0x7f, 0xc0, 0, 0, 0x7f, 0x80, 0, 0, 0xff, 0x80, 0, 0, 1, 2, 3})
	f.Add(uint8(2), []byte{1})
	f.Add(uint8(3), []byte{})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		b := blocks[int(which)%len(blocks)]
		regs, bits := fuzzinput.Words(data), fuzzinput.Bits(data)
		u := &unitState{last: map[string]any{}}
		p := &poller{staleAfter: 5 * time.Second}
		values := map[string]any{}
		garbage := p.decode(u, b, regs, bits, time.Unix(0, 0), values)
		checkValues(t, b, values)
		have := len(regs)
		if b.area.Bits() {
			have = len(bits)
		}
		if have < int(b.n) && !garbage {
			t.Fatalf("%s@%d+%d: %d words or bits decoded without complaint", b.area, b.addr, b.n, have)
		}
	})
}

// modbusFake is a Modbus TCP server that answers every request with the
// response PDU it is given, in an MBAP frame built as mode says.
type modbusFake struct {
	l    net.Listener
	resp atomic.Pointer[fakeResponse]
}

type fakeResponse struct {
	pdu  []byte
	mode uint8
}

// Framing modes of the fake's answer.
const (
	frameGood      = iota // the request's transaction and unit id, the PDU's length
	frameOtherTxn         // another transaction id: the client waits for its own
	frameOtherUnit        // another unit id
	frameRaw              // the PDU bytes alone, as if they were a frame
	frameModes
)

func (s *modbusFake) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				hdr := make([]byte, 7)
				if _, err := io.ReadFull(c, hdr); err != nil {
					return
				}
				req := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				r := s.resp.Load()
				var frame []byte
				switch r.mode {
				case frameRaw:
					frame = r.pdu
				default:
					frame = binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(hdr))
					if r.mode == frameOtherTxn {
						frame[1]++
					}
					frame = append(frame, 0, 0)
					frame = binary.BigEndian.AppendUint16(frame, uint16(len(r.pdu)+1))
					unit := hdr[6]
					if r.mode == frameOtherUnit {
						unit++
					}
					frame = append(append(frame, unit), r.pdu...)
				}
				if _, err := c.Write(frame); err != nil {
					return
				}
			}
		}()
	}
}

var (
	fakeOnce sync.Once
	fake     *modbusFake
)

// startFake starts the process's fake Modbus server once.
func startFake(tb testing.TB) *modbusFake {
	fakeOnce.Do(func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		fake = &modbusFake{l: l}
		go fake.serve()
	})
	return fake
}

// readFunction is the Modbus function code of a read of each area.
var readFunction = map[regmap.Area]byte{regmap.AreaCoil: 1, regmap.AreaDiscrete: 2, regmap.AreaHolding: 3, regmap.AreaInput: 4}

// FuzzPollFrame answers the poller's reads with arbitrary response frames,
// as the Modbus client hands them over: every error is classified, an
// exception response is an exception with its code (the connection kept),
// a read that succeeds has one word or bit per address asked, and decode
// makes values within the thing model of whatever arrived.
func FuzzPollFrame(f *testing.F) {
	pl := fuzzPlan(f)
	blocks := allBlocks(pl)
	s := startFake(f)
	p := &poller{
		target: Target{Name: "fuzz", Addr: s.l.Addr().String(), Timeout: 20 * time.Millisecond},
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)), staleAfter: 5 * time.Second,
	}
	f.Cleanup(p.close)
	f.Add(uint8(0), uint8(frameGood), []byte{0x03, 0x04, 0x00, 0x01, 0x00, 0x02})
	f.Add(uint8(1), uint8(frameGood), []byte{0x04, 0x0c, 0x41, 0xf0, 0, 0, 0x7f, 0xc0, 0, 0, 0, 1, 2, 3})
	f.Add(uint8(1), uint8(frameGood), []byte{0x84, 0x02})
	f.Add(uint8(1), uint8(frameGood), []byte{0x84, 0x07}) // an exception code the client has no error for
	f.Add(uint8(1), uint8(frameGood), []byte{0x84, 0x00})
	f.Add(uint8(1), uint8(frameGood), []byte{0x84})
	f.Add(uint8(1), uint8(frameGood), []byte{0x04, 0x03, 0x00})
	f.Add(uint8(2), uint8(frameGood), []byte{0x02, 0x01, 0xff})
	f.Add(uint8(2), uint8(frameGood), []byte{0x02, 0x02, 0xff, 0xff})
	f.Add(uint8(0), uint8(frameOtherUnit), []byte{0x03, 0x04, 0x00, 0x01, 0x00, 0x02})
	f.Add(uint8(0), uint8(frameRaw), []byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01})
	f.Add(uint8(0), uint8(frameOtherTxn), []byte{0x03, 0x04, 0x00, 0x01, 0x00, 0x02})
	f.Fuzz(func(t *testing.T, which, mode uint8, pdu []byte) {
		b := blocks[int(which)%len(blocks)]
		mode %= frameModes
		s.resp.Store(&fakeResponse{pdu: pdu, mode: mode})
		regs, bits, err := p.read(1, b)
		if err != nil {
			kind := errorKind(err)
			switch kind {
			case kindTimeout, kindException, kindProtocol, kindConnection:
			default:
				t.Fatalf("error %v of kind %q", err, kind)
			}
			if mode == frameGood && len(pdu) == 2 && pdu[0] == readFunction[b.area]|0x80 && pdu[1] != 0 {
				if kind != kindException || exceptionCode(err) != pdu[1] {
					t.Fatalf("exception %02X answered: %v is %s, code %02X", pdu[1], err, kind, exceptionCode(err))
				}
			}
			if (kind == kindException) != (p.client != nil) {
				t.Fatalf("%s error %v: connection kept %v", kind, err, p.client != nil)
			}
			if kind != kindException {
				return
			}
		}
		if err == nil {
			if b.area.Bits() && len(bits) != int(b.n) || !b.area.Bits() && len(regs) != int(b.n) {
				t.Fatalf("%s@%d+%d read %d words, %d bits", b.area, b.addr, b.n, len(regs), len(bits))
			}
		}
		values := map[string]any{}
		p.decode(&unitState{last: map[string]any{}}, b, regs, bits, time.Unix(0, 0), values)
		checkValues(t, b, values)
	})
}

// TestExceptionKinds: every exception code a device may answer with is an
// exception with that code, whether or not the Modbus client has an error
// of its own for it (it has for 01–06, 08, 0A and 0B); the connection is
// kept and the target is not backed off.
func TestExceptionKinds(t *testing.T) {
	for c := 1; c <= 0xff; c++ {
		err := clientException(uint8(c))
		if k := errorKind(err); k != kindException || exceptionCode(err) != uint8(c) {
			t.Fatalf("exception %02X: %v is %s with code %02X", c, err, k, exceptionCode(err))
		}
	}
	if k := errorKind(clientException(0)); k != kindProtocol {
		t.Fatalf("exception 00 (no such code) is %s, want protocol", k)
	}
	if k := errorKind(errors.New("dial tcp: connection refused")); k != kindConnection {
		t.Fatal(k)
	}
}

// clientException is the error the Modbus client returns for exception code c.
func clientException(c uint8) error {
	if e, ok := map[uint8]error{
		0x01: mb.ErrIllegalFunction, 0x02: mb.ErrIllegalDataAddress, 0x03: mb.ErrIllegalDataValue,
		0x04: mb.ErrServerDeviceFailure, 0x05: mb.ErrAcknowledge, 0x06: mb.ErrServerDeviceBusy,
		0x08: mb.ErrMemoryParityError, 0x0A: mb.ErrGWPathUnavailable, 0x0B: mb.ErrGWTargetFailedToRespond,
	}[c]; ok {
		return e
	}
	return fmt.Errorf("unknown exception code (%v)", c) // as github.com/simonvetter/modbus spells it
}

// FuzzServiceWrites runs arbitrary service call parameters through the
// wind turbine's services: a bad call is an error; otherwise the writes
// carry the parameters, and each either encodes into its register, whose
// words decode back to the written value within a raw step, or is ErrRange.
func FuzzServiceWrites(f *testing.F) {
	pl := fuzzPlan(f)
	f.Add("setPowerLimit", []byte(`{"limit":1500}`))
	f.Add("setPowerLimit", []byte(`{"limit":-1e300}`))
	f.Add("setPowerLimit", []byte(`{"limit":1.000001e+08}`)) // float32 rounds it by 4
	f.Add("setPowerLimit", []byte(`{"limit":"high"}`))
	f.Add("setPowerLimit", []byte(`[1]`))
	f.Add("start", []byte(nil))
	f.Fuzz(func(t *testing.T, name string, params []byte) {
		svc, ok := pl.services[name]
		if !ok {
			return
		}
		ws, out, err := svc.writes(json.RawMessage(params))
		if err != nil {
			return
		}
		for _, w := range ws {
			if svc.coil == nil && out[paramOf(svc, w.reg.Point)] != w.value {
				t.Fatalf("write %s=%g is not what the call asked: %v", w.reg.Point, w.value, out)
			}
			if w.reg.Area != regmap.AreaHolding {
				continue
			}
			words, err := w.reg.Encode(w.value)
			if err != nil {
				if !errors.Is(err, regmap.ErrRange) {
					t.Fatalf("encode %s=%g: %v", w.reg.Point, w.value, err)
				}
				continue
			}
			got, err := w.reg.Decode(words)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-w.value) > writeTolerance(w.reg, w.value) {
				t.Fatalf("%s=%g written as %04x, which reads %g", w.reg.Point, w.value, words, got)
			}
		}
	})
}

// writeTolerance is how far a value read back from r may be from the v
// written: half the register's resolution (Encode rounds to it first), and
// half a raw step for integer registers or half a float32 ulp of the raw
// value for float32 ones, plus float64 rounding of scale and offset.
func writeTolerance(r regmap.Register, v float64) float64 {
	tol := 1e-9*math.Abs(v) + max(r.Resolution, 0)/2
	if r.Type == regmap.TypeFloat32 {
		return tol + math.Abs(v-r.Offset)*0x1p-24
	}
	return tol + math.Abs(r.Scale)/2
}

func paramOf(s service, point string) string {
	for name, r := range s.params {
		if r.Point == point {
			return name
		}
	}
	return ""
}

package modbus

// Tests against real Modbus peers no one here wrote: Debian's mbpoll
// (libmodbus) and python3-pymodbus (with python3-serial-asyncio, which it only
// recommends). CI installs them; without them the tests skip.

import (
	"encoding/json"
	"math"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/turbine"
)

func needMbpoll(tb testing.TB) {
	if _, err := exec.LookPath("mbpoll"); err != nil {
		tb.Skip("mbpoll not found: install the Debian package mbpoll (apt-get install -y mbpoll)")
	}
}

// mbpoll runs mbpoll once against the gateway with zero-based addresses.
func mbpoll(tb testing.TB, gw *Gateway, args ...string) (string, error) {
	tb.Helper()
	_, port, err := net.SplitHostPort(gw.Addr())
	require.NoError(tb, err)
	all := append([]string{"-m", "tcp", "-p", port, "-0", "-1", "-o", "2"}, args...)
	// the host goes after the options, write values after the host
	out, err := exec.Command("mbpoll", all...).CombinedOutput()
	return string(out), err
}

// mbpollValues parses mbpoll's "[ref]: value" lines.
func mbpollValues(tb testing.TB, out string) map[int]float64 {
	tb.Helper()
	vals := map[int]float64{}
	for _, m := range regexp.MustCompile(`(?m)^\[(\d+)\]:\s+(\S+)`).FindAllStringSubmatch(out, -1) {
		ref, _ := strconv.Atoi(m[1])
		v, err := strconv.ParseFloat(m[2], 64)
		require.NoError(tb, err, out)
		vals[ref] = v
	}
	return vals
}

func TestMbpoll(t *testing.T) {
	needMbpoll(t)
	r := newRig(t)
	m := shipped(t, "wind-turbine")

	// FC 4: the whole input register block, decoded with the register map
	lo, hi := m.Span(regmap.AreaInput)
	out, err := mbpoll(t, r.gw, "-a", "1", "-t", "3", "-r", strconv.Itoa(lo), "-c", strconv.Itoa(hi-lo), "127.0.0.1")
	require.NoError(t, err, out)
	raw := mbpollValues(t, out)
	require.Len(t, raw, hi-lo, out)
	words := make([]uint16, hi-lo)
	for ref, v := range raw {
		words[ref-lo] = uint16(int16(v)) // mbpoll prints 16-bit registers signed
	}
	want := r.wt1.Points()
	for _, reg := range m.Registers {
		if reg.Area != regmap.AreaInput {
			continue
		}
		v, err := reg.Decode(words[int(reg.Address)-lo : reg.End()-lo])
		require.NoError(t, err)
		require.InDelta(t, want[reg.Point], v, reg.Scale/2+reg.Resolution/2+1e-3*(1+math.Abs(want[reg.Point])), reg.Point)
	}
	require.Equal(t, uint16(600), words[0], "heartbeat")

	// 32-bit float, big-endian word order, as mbpoll decodes it itself
	out, err = mbpoll(t, r.gw, "-a", "1", "-t", "3:float", "-B", "-r", "2", "127.0.0.1")
	require.NoError(t, err, out)
	require.InDelta(t, want[turbine.PointW], mbpollValues(t, out)[2], 0.01*want[turbine.PointW])

	// FC 16: a setpoint the turbine then obeys
	out, err = mbpoll(t, r.gw, "-a", "1", "-t", "4:float", "-B", "-r", "0", "127.0.0.1", "1500")
	require.NoError(t, err, out)
	require.Contains(t, out, "Written 1 references")
	r.step(time.Minute, 14)
	p := r.wt1.Points()
	require.Equal(t, 1500.0, p[turbine.PointDmdW])
	require.LessOrEqual(t, p[turbine.PointW], 1500.0)
	require.InDelta(t, 1500, p[turbine.PointW], 1)
	out, err = mbpoll(t, r.gw, "-a", "1", "-t", "4:float", "-B", "-r", "0", "127.0.0.1")
	require.NoError(t, err, out)
	require.Equal(t, 1500.0, mbpollValues(t, out)[0], "FC 3 reads the setpoint back")

	// FC 5: stop through a command coil
	out, err = mbpoll(t, r.gw, "-a", "2", "-t", "0", "-r", "1", "127.0.0.1", "1")
	require.NoError(t, err, out)
	r.step(time.Minute, 14)
	require.Equal(t, turbine.StateStopped, r.wt2.State())

	// injected exception codes reach mbpoll as those exceptions
	tests := []struct {
		code uint8
		text string
	}{
		{0x02, "Illegal data address"},
		{0x04, "Slave device or server failure"},
		{0x06, "Slave device or server is busy"},
		{0x0A, "Gateway path unavailable"},
		{0x0B, "Target device failed to respond"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			require.NoError(t, r.gw.Inject(Fault{Kind: FaultException, Code: tt.code, Unit: 1}))
			out, err := mbpoll(t, r.gw, "-a", "1", "-t", "3", "-r", "0", "-c", "2", "127.0.0.1")
			require.Error(t, err, out)
			require.Contains(t, out, "Read input register failed: "+tt.text)
			out, err = mbpoll(t, r.gw, "-a", "2", "-t", "3", "-r", "0", "-c", "2", "127.0.0.1")
			require.NoError(t, err, out)
			require.NoError(t, r.gw.Clear(FaultException, 0))
		})
	}
	out, err = mbpoll(t, r.gw, "-a", "42", "-t", "3", "-r", "0", "127.0.0.1")
	require.Error(t, err, out)
	require.Contains(t, out, "Target device failed to respond", "unknown unit id")
}

// pymodbusScript reads and writes through pymodbus' synchronous TCP client and
// prints what it saw as JSON. It copes with the unit keyword's renames across
// pymodbus 3.x (slave=, device_id=).
const pymodbusScript = `
import inspect, json, struct, sys
from pymodbus.client import ModbusTcpClient

host, port, setpoint, faulted = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
c = ModbusTcpClient(host, port=port, timeout=2)
assert c.connect(), "connect"
params = inspect.signature(c.read_input_registers).parameters
unit = next(k for k in ("device_id", "slave", "unit") if k in params)
def u(n): return {unit: n}
out = {}
r = c.read_input_registers(0, count=4, **u(1))
out["input"] = r.registers
hi, lo = struct.unpack(">HH", struct.pack(">f", setpoint))
out["write_error"] = c.write_registers(0, [hi, lo], **u(1)).isError()
h = c.read_holding_registers(0, count=2, **u(1))
out["setpoint"] = struct.unpack(">f", struct.pack(">HH", *h.registers))[0]
out["discrete"] = c.read_discrete_inputs(0, count=1, **u(1)).bits[:1]
out["coils"] = c.read_coils(0, count=3, **u(1)).bits[:3]
e = c.read_input_registers(0, count=1, **u(faulted))
out["exception"] = e.exception_code if e.isError() else None
c.close()
print(json.dumps(out))
`

func findPymodbus(tb testing.TB) string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import pymodbus.client").Run() == nil {
			return py
		}
	}
	// Debian's pymodbus client needs serial_asyncio, a package it only recommends.
	tb.Skip("pymodbus's client not found: install the Debian packages python3-pymodbus and python3-serial-asyncio")
	return ""
}

func TestPymodbus(t *testing.T) {
	py := findPymodbus(t)
	r := newRig(t)
	require.NoError(t, r.gw.Inject(Fault{Kind: FaultException, Code: 4, Unit: 2}))
	host, port, err := net.SplitHostPort(r.gw.Addr())
	require.NoError(t, err)
	out, err := exec.Command(py, "-c", pymodbusScript, host, port, "2000", "2").CombinedOutput()
	require.NoError(t, err, string(out))
	var got struct {
		Input      []uint16 `json:"input"`
		WriteError bool     `json:"write_error"`
		Setpoint   float64  `json:"setpoint"`
		Discrete   []bool   `json:"discrete"`
		Coils      []bool   `json:"coils"`
		Exception  *int     `json:"exception"`
	}
	require.NoError(t, json.Unmarshal(out, &got), string(out))
	require.Equal(t, uint16(600), got.Input[0], "heartbeat")
	require.Equal(t, uint16(turbine.StateRunning), got.Input[1])
	w, err := shipped(t, "wind-turbine").Registers[1].Decode(got.Input[2:4])
	require.NoError(t, err)
	require.InDelta(t, r.wt1.Points()[turbine.PointW], w, 1)
	require.False(t, got.WriteError)
	require.Equal(t, 2000.0, got.Setpoint)
	require.Equal(t, []bool{false}, got.Discrete)
	require.Equal(t, []bool{false, false, false}, got.Coils)
	require.NotNil(t, got.Exception)
	require.Equal(t, 4, *got.Exception, "the injected exception reaches pymodbus")

	r.step(time.Minute, 14)
	require.LessOrEqual(t, r.wt1.Points()[turbine.PointW], 2000.0)
	require.InDelta(t, 2000, r.wt1.Points()[turbine.PointW], 1)
}

package regmap

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
)

func TestLoadGoodAndBad(t *testing.T) {
	bad := map[string]error{
		"unknown-field.bad.yaml":       nil, // a yaml decode error
		"overlap.bad.yaml":             ErrOverlap,
		"heartbeat-overlap.bad.yaml":   ErrOverlap,
		"duplicate-point.bad.yaml":     ErrDuplicatePoint,
		"writable-input.bad.yaml":      ErrWritable,
		"coil-type.bad.yaml":           ErrType,
		"register-bool.bad.yaml":       ErrType,
		"order.bad.yaml":               ErrOrder,
		"type.bad.yaml":                ErrType,
		"area.bad.yaml":                ErrArea,
		"group.bad.yaml":               ErrGroup,
		"no-name.bad.yaml":             ErrName,
		"no-point.bad.yaml":            ErrNoPoint,
		"past-end.bad.yaml":            ErrOverlap,
		"heartbeat-float.bad.yaml":     ErrHeartbeat,
		"resolution-integer.bad.yaml":  ErrResolution,
		"resolution-negative.bad.yaml": ErrResolution,
	}
	testkit.FixtureTable(t, "testdata/*.yaml", bad, func(t *testing.T, path string) error {
		m, err := Load(path)
		if err == nil {
			require.NotEmpty(t, m.Registers)
		}
		return err
	})
}

func TestMapDefaultsAndLookup(t *testing.T) {
	m, err := Load("testdata/orders.good.yaml")
	require.NoError(t, err)

	f, ok := m.Register("f")
	require.True(t, ok)
	require.Equal(t, OrderCDAB, f.Order, "map order is the default")
	require.Equal(t, 1.0, f.Scale)
	i, _ := m.Register("i")
	require.Equal(t, OrderDCBA, i.Order, "register order wins")
	gap, _ := m.Register("gap")
	require.Equal(t, "fast", gap.Group, "first group is the default")
	_, ok = m.Register("hb")
	require.False(t, ok, "the heartbeat is not a point")

	tests := []struct {
		area  Area
		addr  uint16
		point string
		word  int
	}{
		{AreaInput, 0, "f", 0},
		{AreaInput, 1, "f", 1},
		{AreaInput, 3, "i", 1},
		{AreaInput, 4, "", 0},
		{AreaInput, 10, "gap", 0},
		{AreaInput, 11, "", 0},
		{AreaHolding, 1, "sp", 1},
		{AreaHolding, 101, "hb", 1},
		{AreaHolding, 102, "", 0},
		{AreaCoil, 0, "run", 0},
		{AreaDiscrete, 7, "alarm", 0},
		{AreaDiscrete, 6, "", 0},
	}
	for _, tt := range tests {
		r, word, ok := m.At(tt.area, tt.addr)
		if tt.point == "" {
			require.False(t, ok, "%s %d", tt.area, tt.addr)
			continue
		}
		require.True(t, ok, "%s %d", tt.area, tt.addr)
		require.Equal(t, tt.point, r.Point)
		require.Equal(t, tt.word, word)
	}

	lo, hi := m.Span(AreaInput)
	require.Equal(t, [2]int{0, 11}, [2]int{lo, hi})
	lo, hi = m.Span(AreaHolding)
	require.Equal(t, [2]int{0, 102}, [2]int{lo, hi})
	lo, hi = m.Span("nothing")
	require.Equal(t, lo, hi)
}

func TestShippedMaps(t *testing.T) {
	require.ElementsMatch(t, []string{"met-mast", "wind-turbine"}, ShippedNames())
	for _, name := range ShippedNames() {
		t.Run(name, func(t *testing.T) {
			m, err := Shipped(name)
			require.NoError(t, err)
			require.Equal(t, name, m.Name)
			require.NotNil(t, m.Heartbeat)
			// The embedded file is the one in the source tree.
			data, err := os.ReadFile(filepath.Join("maps", name+".yaml"))
			require.NoError(t, err)
			fromFile, err := Parse(data)
			require.NoError(t, err)
			require.Equal(t, fromFile.Registers, m.Registers)
		})
	}
	wt, err := Shipped("wind-turbine")
	require.NoError(t, err)
	for _, p := range []string{"WTUR.W", "WTUR.VAr", "WTUR.TurSt", "WTUR.TotWh", "WROT.RotSpd",
		"WROT.PtAngValBl1", "WROT.PtAngValBl2", "WROT.PtAngValBl3", "WGEN.GnSpd", "WGEN.GnTmpSta",
		"WTRM.TrmTmpGbxOil", "WTRM.TrmTmpShfBrg1", "WNAC.WdSpd", "WNAC.WdDir", "WNAC.Dir", "WNAC.ExTmp",
		"WNAC.IceSt", "WCNV.Hz", "WCNV.GriPPV"} {
		r, ok := wt.Register(p)
		require.True(t, ok, p)
		require.False(t, r.Writable, p)
	}
	for p, area := range map[string]Area{"WTUR.DmdW": AreaHolding, "start": AreaCoil, "stop": AreaCoil, "resetFault": AreaCoil} {
		r, ok := wt.Register(p)
		require.True(t, ok, p)
		require.True(t, r.Writable, p)
		require.Equal(t, area, r.Area, p)
	}
	_, err = Shipped("toaster")
	require.ErrorIs(t, err, ErrUnknownMap)
}

func TestValidateUnits(t *testing.T) {
	tests := []struct {
		name  string
		units []Unit
		err   error
	}{
		{"ok", []Unit{{"WT01", 1, "wind-turbine"}, {"MM01", 2, "met-mast"}}, nil},
		{"no device", []Unit{{"", 1, "wind-turbine"}}, ErrUnit},
		{"unit 0", []Unit{{"WT01", 0, "wind-turbine"}}, ErrUnit},
		{"unit 248", []Unit{{"WT01", 248, "wind-turbine"}}, ErrUnit},
		{"no map", []Unit{{"WT01", 1, ""}}, ErrUnit},
		{"duplicate id", []Unit{{"WT01", 1, "m"}, {"WT02", 1, "m"}}, ErrDuplicateUnitID},
		{"duplicate device", []Unit{{"WT01", 1, "m"}, {"WT01", 2, "m"}}, ErrUnit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateUnits(tt.units)
			if tt.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.err)
		})
	}
}

package edge

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/platform/registry"
)

func shippedProduct(t *testing.T, pk string) api.Product {
	t.Helper()
	products, err := registry.ShippedProducts()
	require.NoError(t, err)
	for _, p := range products {
		if p.Key == pk {
			return p
		}
	}
	t.Fatalf("no shipped product %s", pk)
	return api.Product{}
}

// span describes a block as "area@addr+n".
func span(b block) string { return fmt.Sprintf("%s@%d+%d", b.area, b.addr, b.n) }

func TestPlanWindTurbine(t *testing.T) {
	m, err := regmap.Shipped("wind-turbine")
	require.NoError(t, err)
	pl, err := newPlan(m, shippedProduct(t, "wind-turbine"), map[string]map[string]string{"setPowerLimit": {"limit": "WTUR.DmdW"}})
	require.NoError(t, err)
	got := map[string][]string{}
	for _, g := range pl.groups {
		for _, b := range g.blocks {
			got[g.name] = append(got[g.name], span(b))
		}
	}
	require.Equal(t, map[string][]string{
		// heartbeat..VAr, RotSpd..GnSpd, WdSpd..Dir, Hz..GriPPV, DmdW
		"fast": {"holding@0+2", "input@0+6", "input@8+5", "input@16+3", "input@20+3"},
		// TotWh, GnTmpSta..TrmTmpShfBrg1, ExTmp, IceSt
		"slow": {"discrete@0+1", "input@6+2", "input@13+3", "input@19+1"},
	}, got, "contiguous registers of a group and area are read together; coils are services, not points")
	require.Equal(t, time.Second, pl.groups[0].interval)

	require.Contains(t, pl.services, "start", "a writable coil named like a service runs it")
	require.Contains(t, pl.services, "resetFault")
	ws, out, err := pl.services["setPowerLimit"].writes(json.RawMessage(`{"limit":1500}`))
	require.NoError(t, err)
	require.Equal(t, "WTUR.DmdW", ws[0].reg.Point)
	require.Equal(t, 1500.0, ws[0].value)
	require.Equal(t, map[string]float64{"limit": 1500}, out)
	_, _, err = pl.services["setPowerLimit"].writes(json.RawMessage(`{"limit":"high"}`))
	require.Error(t, err)
	_, _, err = pl.services["setPowerLimit"].writes(json.RawMessage(`{}`))
	require.Error(t, err)
	ws, _, err = pl.services["stop"].writes(nil)
	require.NoError(t, err)
	require.Equal(t, regmap.AreaCoil, ws[0].reg.Area)
	require.Equal(t, 1.0, ws[0].value)

	_, err = newPlan(m, shippedProduct(t, "wind-turbine"), map[string]map[string]string{"setPowerLimit": {"kW": "WTUR.DmdW"}})
	require.ErrorIs(t, err, ErrService, "the thing model has no input kW")
	_, err = newPlan(m, shippedProduct(t, "wind-turbine"), map[string]map[string]string{"curtail": {"limit": "WTUR.DmdW"}})
	require.ErrorIs(t, err, ErrService, "the thing model has no service curtail")
	_, err = newPlan(m, shippedProduct(t, "met-mast"), nil)
	require.ErrorIs(t, err, ErrUnit, "no register feeds a met-mast measurepoint")
}

func TestPlanBatchLimits(t *testing.T) {
	m := &regmap.Map{Name: "big"}
	p := api.Product{Key: "big"}
	for i := range 130 { // 130 contiguous input registers, then a gap, then two more
		addr := uint16(i)
		if i >= 128 {
			addr += 10
		}
		id := fmt.Sprintf("R%03d", i)
		m.Registers = append(m.Registers, regmap.Register{Point: id, Area: regmap.AreaInput, Address: addr, Type: regmap.TypeUint16})
		p.Model.Measurepoints = append(p.Model.Measurepoints, api.Measurepoint{ID: id, Type: api.TypeFloat})
	}
	for i := range 2100 {
		id := fmt.Sprintf("B%04d", i)
		m.Registers = append(m.Registers, regmap.Register{Point: id, Area: regmap.AreaCoil, Address: uint16(i), Type: regmap.TypeBool})
		p.Model.Measurepoints = append(p.Model.Measurepoints, api.Measurepoint{ID: id, Type: api.TypeBool})
	}
	m.Default()
	require.NoError(t, m.Validate())
	pl, err := newPlan(m, p, nil)
	require.NoError(t, err)
	var got []string
	for _, b := range pl.groups[0].blocks {
		got = append(got, span(b))
	}
	require.Equal(t, []string{"coil@0+2000", "coil@2000+100", "input@0+125", "input@125+3", "input@138+2"}, got)
}

func TestJSONValue(t *testing.T) {
	lo, hi := 0.0, 100.0
	mp := func(typ string) *api.Measurepoint { return &api.Measurepoint{ID: "x", Type: typ, Min: &lo, Max: &hi} }
	for _, c := range []struct {
		typ  string
		in   float64
		want any
		ok   bool
	}{
		{api.TypeFloat, 12.5, 12.5, true},
		{api.TypeEnum, 3.0000001, int64(3), true},
		{api.TypeInt, 41.6, int64(42), true},
		{api.TypeBool, 1, true, true},
		{api.TypeBool, 0, false, true},
		{api.TypeFloat, 100.5, nil, false},
		{api.TypeFloat, -1, nil, false},
		{api.TypeFloat, math.NaN(), nil, false},
	} {
		got, ok := jsonValue(mp(c.typ), c.in)
		require.Equal(t, c.ok, ok, "%s %g", c.typ, c.in)
		require.Equal(t, c.want, got, "%s %g", c.typ, c.in)
	}
}

func TestByDevice(t *testing.T) {
	items := []Item{{ID: 1, DeviceKey: "a"}, {ID: 2, DeviceKey: "b"}, {ID: 3, DeviceKey: "a"}, {ID: 4, DeviceKey: "a"}, {ID: 5, DeviceKey: "b"}}
	var got [][]int64
	for _, run := range byDevice(items, 2) {
		var ids []int64
		for _, it := range run {
			ids = append(ids, it.ID)
		}
		got = append(got, ids)
	}
	require.Equal(t, [][]int64{{1, 3}, {2, 5}, {4}}, got, "runs of one device, at most n long, each in queue order")
}

func TestTidy(t *testing.T) {
	for _, c := range []struct {
		reg  regmap.Register
		in   float64
		want float64
	}{
		{regmap.Register{Type: regmap.TypeUint16, Scale: 0.1}, 8374 * 0.1, 837.4},
		{regmap.Register{Type: regmap.TypeInt16, Scale: 0.01}, -1411 * 0.01, -14.11},
		{regmap.Register{Type: regmap.TypeUint16, Scale: 0.25, Offset: 0.5}, 3*0.25 + 0.5, 1.25},
		{regmap.Register{Type: regmap.TypeUint32, Scale: 1000}, 5e9, 5e9},
		{regmap.Register{Type: regmap.TypeFloat32, Scale: 1}, float64(float32(688.77)), 688.77},
	} {
		require.Equal(t, c.want, tidy(c.reg, c.in), "%+v", c.reg)
	}
}

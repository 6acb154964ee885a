package twins

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api/regmap"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/modbus"
	"github.com/gale-iot/gale/twins/turbine"
	"github.com/gale-iot/gale/twins/wind"
)

func TestLoadGoodAndBad(t *testing.T) {
	bad := map[string]error{
		"unknown-field.bad.yaml":    config.ErrSyntax,
		"no-farms.bad.yaml":         ErrNoFarms,
		"speed.bad.yaml":            ErrSpeed,
		"step.bad.yaml":             ErrStep,
		"duplicate-device.bad.yaml": ErrDuplicateDevice,
		"unknown-device.bad.yaml":   ErrUnknownDevice,
		"device-twice.bad.yaml":     ErrDuplicateDevice,
		"gateway-twice.bad.yaml":    ErrDuplicateGateway,
		"map-kind.bad.yaml":         ErrMapKind,
		"unit-id.bad.yaml":          regmap.ErrDuplicateUnitID,
		"farm.bad.yaml":             turbine.ErrUnknownModel,
		"wind.bad.yaml":             wind.ErrDirection,
		"fault-fault.bad.yaml":      turbine.ErrUnknownFault,
		"fault-target.bad.yaml":     ErrUnknownDevice,
		"fault-gateway.bad.yaml":    modbus.ErrFault,
		"fault-both.bad.yaml":       ErrScheduledFault,
		"fault-mast.bad.yaml":       ErrScheduledFault,
	}
	testkit.ConfigFiles(t, "testdata/*.yaml", bad, func(t *testing.T, path string) error {
		c, err := config.Load[Config](path)
		if err == nil {
			require.NotEmpty(t, c.Farms)
		}
		return err
	})
}

func TestConfigDefaults(t *testing.T) {
	demo, err := config.Load[Config]("testdata/demo.good.yaml")
	require.NoError(t, err)
	require.Equal(t, DefaultConfig(), demo, "the demo file spells out DefaultConfig")

	c, err := config.Load[Config]("testdata/two-farms.good.yaml")
	require.NoError(t, err)
	require.Equal(t, time.Date(2025, 1, 15, 6, 0, 0, 0, time.UTC), c.Start)
	require.Equal(t, time.Second, c.Step)
	require.Equal(t, []regmap.Unit{{Device: "N01", ID: 1, Map: "wind-turbine"}, {Device: "N02", ID: 2, Map: "wind-turbine"},
		{Device: "NM1", ID: 3, Map: "met-mast"}}, c.Gateways[0].Units)
	require.Equal(t, 3*time.Second, c.Gateways[0].TimeoutHold)
	require.Equal(t, 10, DefaultConfig().Gateways[1].MaxClients)
	require.Equal(t, farm.Config{Site: "south", TurbineType: "nrel-5mw", Count: 4, Prefix: "S", Rows: 1, RowSpacing: 7,
		TurbineSpacing: 4, Wind: wind.Config{MeanSpeed: 8, WeibullK: 2, Iref: 0.14, WakeDecay: 0.075}}, c.Farms[1])
	require.Equal(t, modbus.Fault{Kind: modbus.FaultException, Code: 4, Unit: 2}, c.Faults[3].Fault)
}

func TestDemoConfig(t *testing.T) {
	c, err := DemoConfig(25, 0, "127.0.0.1:6000")
	require.NoError(t, err)
	require.Len(t, c.Gateways, 3)
	for i, want := range []struct {
		addr  string
		units int
	}{{"127.0.0.1:6000", 10}, {"127.0.0.1:6001", 10}, {"127.0.0.1:6002", 5}} {
		require.Equal(t, want.addr, c.Gateways[i].Addr)
		require.Len(t, c.Gateways[i].Units, want.units)
	}
	require.Equal(t, regmap.Unit{Device: "WT21", ID: 1, Map: "wind-turbine"}, c.Gateways[2].Units[0])

	c, err = DemoConfig(1, 0, "[::1]:0")
	require.NoError(t, err)
	require.Equal(t, 1, c.Farms[0].Rows)
	require.Equal(t, "[::1]:0", c.Gateways[0].Addr)

	c, err = DemoConfig(3, 2, "127.0.0.1:0")
	require.NoError(t, err)
	require.Equal(t, 5, c.Farms[0].Count, "WT04 and WT05 are turbines of the farm too")
	require.Len(t, c.Gateways, 1)
	require.Len(t, c.Gateways[0].Units, 3, "but behind no gateway: they connect directly")

	for _, bad := range []struct {
		n    int
		addr string
		err  error
	}{{0, "127.0.0.1:5020", farm.ErrCount}, {20, "localhost", modbus.ErrAddr}, {20, "127.0.0.1:x", modbus.ErrAddr}, {30, "127.0.0.1:65534", modbus.ErrAddr}} {
		_, err := DemoConfig(bad.n, 0, bad.addr)
		require.ErrorIs(t, err, bad.err, "%d %s", bad.n, bad.addr)
	}
	require.NoError(t, DefaultConfig().Validate())
}

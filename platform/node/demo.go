package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// Demo names the fleet `gale up` seeds.
const (
	DemoOrg  = "demo"
	DemoSite = "demo-farm"
)

// DemoTurbineKey is the device key of demo turbine i (1-based): WT01, WT02, …
func DemoTurbineKey(i int) string { return fmt.Sprintf("WT%02d", i) }

// DemoGatewayKey is the gateway turbine i (1-based) sits behind: ten turbines to a gateway, GW01, GW02, …,
// as the twin fleet's demo config places them.
func DemoGatewayKey(i int) string { return fmt.Sprintf("GW%02d", (i-1)/10+1) }

// Demo is the size of the demo fleet: Turbines behind Modbus gateways (ten
// to a gateway) and Direct more turbines connected directly over MQTT.
type Demo struct {
	Turbines int `yaml:"turbines"`
	Direct   int `yaml:"direct"`
}

// SeedDemo creates, if missing, the demo org and site, the shipped products,
// gateways GW01… (one per ten turbines), turbines WT01…WTnn behind them, the
// directly connected turbines after them and met mast MM01.
func SeedDemo(ctx context.Context, reg *registry.Registry, demo Demo) error {
	for _, a := range []api.Asset{{ID: DemoOrg, Kind: api.AssetOrg, Name: "Demo"}, {ID: DemoSite, Kind: api.AssetSite, Name: "Demo wind farm", Parent: DemoOrg}} {
		if _, err := reg.PutAsset(ctx, a); err != nil && !errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("seed demo: %w", err)
		}
	}
	products, err := registry.ShippedProducts()
	if err != nil {
		return fmt.Errorf("seed demo: %w", err)
	}
	for _, p := range products {
		if err := reg.PutProduct(ctx, p, false); err != nil && !errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("seed demo: %w", err)
		}
	}
	devices := []api.Device{{ProductKey: "met-mast", DeviceKey: "MM01", Name: "Met mast 1"}}
	for g := 1; g <= (demo.Turbines+9)/10; g++ {
		devices = append(devices, api.Device{ProductKey: "modbus-gateway", DeviceKey: DemoGatewayKey(g * 10), Name: fmt.Sprintf("Gateway %d", g)})
	}
	for i := 1; i <= demo.Turbines+demo.Direct; i++ {
		d := api.Device{ProductKey: "wind-turbine", DeviceKey: DemoTurbineKey(i), Name: fmt.Sprintf("Turbine %d", i)}
		if i <= demo.Turbines {
			d.GatewayProductKey, d.GatewayDeviceKey = "modbus-gateway", DemoGatewayKey(i)
		}
		devices = append(devices, d)
	}
	for _, d := range devices {
		d.Site, d.Enabled = DemoSite, true
		if _, err := reg.CreateDevice(ctx, d); err != nil && !errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("seed demo: %w", err)
		}
	}
	return nil
}

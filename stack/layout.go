package stack

import (
	"context"
	"fmt"
	"maps"
	"math"

	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/farm"
	"github.com/gale-iot/gale/twins/turbine"
)

// describeFleet sets, on the registered devices of the fleet, the
// attributes the console's farm map and power curve need: the turbine
// type's ratings and power curve, and each device's place in the farm (x
// east, y north, metres from the farm's centre). Devices that are not
// registered are left out; attributes already right are not written again.
func describeFleet(ctx context.Context, reg *registry.Registry, cfg twins.Config) error {
	for _, fc := range cfg.Farms {
		fc.Default()
		model, err := turbine.ModelNamed(fc.TurbineType)
		if err != nil {
			return err
		}
		curve := make([][2]float64, len(model.Curve))
		for i, p := range model.Curve {
			curve[i] = [2]float64{p.Speed, p.Power}
		}
		sites := farm.Layout(fc, model.RotorDiameter)
		keys := append(fc.DeviceKeys(), fc.Mast)
		for i, key := range keys {
			pk := twins.ProductTurbine
			attrs := map[string]any{
				"turbineType": model.Name, "ratedPower": model.RatedPower, "rotorDiameter": model.RotorDiameter,
				"hubHeight": model.HubHeight, "powerCurve": curve,
			}
			if i == len(keys)-1 { // the met mast
				if key == "" {
					break
				}
				pk, attrs = twins.ProductMast, map[string]any{}
			}
			attrs["x"], attrs["y"] = math.Round(sites[i].X), math.Round(sites[i].Y)
			if err := mergeAttributes(ctx, reg, pk, key, attrs); err != nil {
				return err
			}
		}
	}
	return nil
}

// mergeAttributes adds attrs to device pk/dk's attributes unless they are there already.
func mergeAttributes(ctx context.Context, reg *registry.Registry, pk, dk string, attrs map[string]any) error {
	d, ok := reg.Device(pk, dk)
	if !ok {
		return nil
	}
	merged := maps.Clone(d.Attributes)
	if merged == nil {
		merged = map[string]any{}
	}
	maps.Copy(merged, attrs)
	if fmt.Sprint(merged) == fmt.Sprint(d.Attributes) {
		return nil
	}
	if _, err := reg.PatchDevice(ctx, pk, dk, registry.DevicePatch{Attributes: &merged}); err != nil {
		return fmt.Errorf("describe device %s/%s: %w", pk, dk, err)
	}
	return nil
}

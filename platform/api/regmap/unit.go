package regmap

import "fmt"

// Unit places one device behind a Modbus gateway: its device key, the unit id
// (slave address) it answers to, and the name of its register map.
type Unit struct {
	// Device is the device key (e.g. WT01).
	Device string `yaml:"device" json:"device"`
	// ID is the Modbus unit id, 1 to 247.
	ID uint8 `yaml:"unit" json:"unit"`
	// Map names the register map (e.g. wind-turbine).
	Map string `yaml:"map" json:"map"`
}

// ValidateUnits checks each unit and that unit ids and devices are unique
// behind one gateway.
func ValidateUnits(units []Unit) error {
	ids := map[uint8]bool{}
	devices := map[string]bool{}
	for _, u := range units {
		switch {
		case u.Device == "":
			return fmt.Errorf("%w: unit %d has no device", ErrUnit, u.ID)
		case u.ID < 1 || u.ID > 247:
			return fmt.Errorf("%w: %s: unit id %d not in 1..247", ErrUnit, u.Device, u.ID)
		case u.Map == "":
			return fmt.Errorf("%w: %s: no register map", ErrUnit, u.Device)
		case ids[u.ID]:
			return fmt.Errorf("%w: %d", ErrDuplicateUnitID, u.ID)
		case devices[u.Device]:
			return fmt.Errorf("%w: device %s listed twice", ErrUnit, u.Device)
		}
		ids[u.ID], devices[u.Device] = true, true
	}
	return nil
}

package registry

import (
	"encoding/json"
	"fmt"

	"github.com/gale-iot/gale/platform/api"
)

// Size limits of registry entities, checked before anything is stored so
// that every change fits a change-log record (Kafka refuses messages over
// about 1 MB by default). A change over them is refused with ErrInvalid.
const (
	// MaxNameBytes bounds names of devices, products, assets and tokens.
	MaxNameBytes = 256
	// MaxAttributesBytes bounds a device's attributes, encoded as JSON.
	MaxAttributesBytes = 16 << 10
	// MaxDescriptionBytes bounds a product's description.
	MaxDescriptionBytes = 4 << 10
	// MaxModelBytes bounds a product's thing model, encoded as JSON.
	MaxModelBytes = 256 << 10
)

func checkName(what, name string) error {
	if len(name) > MaxNameBytes {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrInvalid, what, len(name), MaxNameBytes)
	}
	return nil
}

// checkAttributes checks that attrs encode to at most MaxAttributesBytes.
func checkAttributes(attrs map[string]any) error {
	b, err := json.Marshal(attrs)
	if err != nil {
		return fmt.Errorf("%w: attributes: %v", ErrInvalid, err)
	}
	if len(b) > MaxAttributesBytes {
		return fmt.Errorf("%w: attributes are %d bytes as JSON, at most %d", ErrInvalid, len(b), MaxAttributesBytes)
	}
	return nil
}

// checkDeviceSize checks the sizes of d's free-form fields.
func checkDeviceSize(d *api.Device) error {
	if err := checkName("device name", d.Name); err != nil {
		return err
	}
	if err := checkName("device secret", d.Secret); err != nil {
		return err
	}
	return checkAttributes(d.Attributes)
}

// checkPatchSize checks the sizes of p's free-form fields.
func checkPatchSize(p DevicePatch) error {
	if p.Name != nil {
		if err := checkName("device name", *p.Name); err != nil {
			return err
		}
	}
	if p.Attributes != nil {
		return checkAttributes(*p.Attributes)
	}
	return nil
}

// checkProductSize checks the sizes of p's free-form fields and model.
func checkProductSize(p *api.Product) error {
	if err := checkName("product name", p.Name); err != nil {
		return err
	}
	if len(p.Description) > MaxDescriptionBytes {
		return fmt.Errorf("%w: description is %d bytes, at most %d", ErrInvalid, len(p.Description), MaxDescriptionBytes)
	}
	b, err := json.Marshal(p.Model)
	if err != nil {
		return fmt.Errorf("%w: model: %v", ErrInvalid, err)
	}
	if len(b) > MaxModelBytes {
		return fmt.Errorf("%w: the thing model is %d bytes as JSON, at most %d", ErrInvalid, len(b), MaxModelBytes)
	}
	return nil
}

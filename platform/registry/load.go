package registry

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/platform/api"
)

//go:embed models/*.yaml
var shipped embed.FS

// ShippedProducts returns the products Gale ships (wind turbine, Modbus gateway, met mast).
func ShippedProducts() ([]api.Product, error) {
	sub, err := fs.Sub(shipped, "models")
	if err != nil {
		return nil, err
	}
	return LoadProducts(sub)
}

// LoadProducts reads every *.yaml file of fsys as a product, strictly.
func LoadProducts(fsys fs.FS) ([]api.Product, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	var out []api.Product
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read product file %s: %w", name, err)
		}
		p, err := ParseProduct("product file "+path.Base(name), b)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseProduct decodes and validates one product YAML document, the
// contents of what name calls it (errors name it, and the line).
func ParseProduct(name string, b []byte) (api.Product, error) {
	var p api.Product
	if err := config.Decode(name, b, &p); err != nil {
		return p, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := ValidateProduct(&p); err != nil {
		return p, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

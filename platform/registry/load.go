package registry

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

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
		p, err := ParseProduct(b)
		if err != nil {
			return nil, fmt.Errorf("product file %s: %w", path.Base(name), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseProduct decodes and validates one product YAML document.
func ParseProduct(b []byte) (api.Product, error) {
	var p api.Product
	if err := api.DecodeYAML(b, &p); err != nil && !errors.Is(err, io.EOF) {
		return p, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := ValidateProduct(&p); err != nil {
		return p, err
	}
	return p, nil
}

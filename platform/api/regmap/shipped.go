package regmap

import (
	"embed"
	"fmt"
	"path"
	"strings"
)

// maps holds the register maps shipped with Gale. It is read-only.
//
//go:embed maps/*.yaml
var maps embed.FS

// Shipped parses the shipped register map called name (e.g. wind-turbine,
// met-mast). Each call returns a fresh copy.
func Shipped(name string) (*Map, error) {
	data, err := maps.ReadFile(path.Join("maps", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w: %q (shipped: %s)", ErrUnknownMap, name, strings.Join(ShippedNames(), ", "))
	}
	return Parse(data)
}

// ShippedNames lists the names of the shipped register maps.
func ShippedNames() []string {
	entries, _ := maps.ReadDir("maps") // the embedded directory always exists
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return names
}

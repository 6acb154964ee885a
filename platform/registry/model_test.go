package registry

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// A product whose service input has min above max is refused; bounds in
// order, or one alone, pass.
func TestValidateProductServiceInputBounds(t *testing.T) {
	one, two := 1.0, 2.0
	for _, tc := range []struct {
		min, max *float64
		ok       bool
	}{{&one, &two, true}, {&one, &one, true}, {nil, &one, true}, {&two, nil, true}, {&two, &one, false}} {
		p := api.Product{Key: "wt", Model: api.ThingModel{Services: []api.Service{{ID: "set", Input: []api.Param{{ID: "v", Type: api.TypeFloat, Min: tc.min, Max: tc.max}}}}}}
		if err := ValidateProduct(&p); tc.ok {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, ErrInvalid)
		}
	}
	require.Error(t, CheckRange(-1.1, new(0.0), nil))
	require.NoError(t, CheckRange(5, nil, nil))
}

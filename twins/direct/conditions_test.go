package direct

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/twins/turbine"
)

// TestClearPostedWhenNoConditionIsLeft: a derate that ends while the oil
// trip is latched clears nothing; the trip's reset does.
func TestClearPostedWhenNoConditionIsLeft(t *testing.T) {
	rc := raisedConditions{}
	for _, step := range []struct {
		device string
		code   int
		active bool
		posted bool
	}{
		{"WT01", turbine.CodeGearboxOilHigh, true, true},
		{"WT01", turbine.CodeGearboxOilTrip, true, true},
		{"WT02", turbine.CodeGridLoss, true, true},
		{"WT01", turbine.CodeGearboxOilHigh, false, false},
		{"WT02", turbine.CodeGridLoss, false, true},
		{"WT01", turbine.CodeGearboxOilTrip, false, true},
		{"WT01", turbine.CodeIcing, false, true}, // a clear of nothing raised (after a restart) still says all is clear
	} {
		e := turbine.Event{Device: step.device, Code: step.code, Active: step.active}
		require.Equal(t, step.posted, rc.post(e), "%+v", step)
	}
}

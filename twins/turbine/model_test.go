package turbine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNREL5MWCurve(t *testing.T) {
	m := NREL5MW()
	tests := []struct {
		v, kW float64
	}{
		{0, 0}, {2.99, 0}, {5, 404}, {8, 1771}, {10, 3448}, {11.4, 5000}, {15, 5000}, {24.9, 5000}, {25, 0}, {30, 0},
	}
	for _, tt := range tests {
		require.InDelta(t, tt.kW, m.Power(tt.v), 1e-9, "%g m/s", tt.v)
	}
	require.InDelta(t, 0.81, m.Thrust(11.4), 1e-9)
	require.Zero(t, m.Thrust(26))
	require.Zero(t, m.PitchAngle(8))
	require.InDelta(t, 3.83, m.PitchAngle(12), 1e-9)
	require.InDelta(t, 12.1, m.RotorSpeed(11.4), 1e-9, "rated rotor speed")
	require.InDelta(t, 6.9, m.RotorSpeed(3), 1e-9, "minimum rotor speed")
	require.InDelta(t, 1173.7, m.RatedRotorSpeed*m.GearRatio, 0.1, "rated generator speed")
}

func TestModelsAreConsistent(t *testing.T) {
	for _, name := range []string{"nrel-5mw", "onshore-2.3mw"} {
		t.Run(name, func(t *testing.T) {
			m, err := ModelNamed(name)
			require.NoError(t, err)
			require.Equal(t, m.CutIn, m.Curve[0].Speed)
			require.Equal(t, m.CutOut, m.Curve[len(m.Curve)-1].Speed)
			require.Less(t, m.Restart, m.CutOut)
			prevP, prevPitch := -1.0, -1.0
			for v := 0.0; v < 30; v += 0.05 {
				p := m.Power(v)
				require.LessOrEqual(t, p, m.RatedPower)
				if v >= m.CutIn && v < m.CutOut {
					require.GreaterOrEqual(t, p, prevP, "power curve rises up to rated (%g m/s)", v)
					prevP = p
					require.InDelta(t, 0.5, m.Thrust(v), 0.45)
				}
				pitch := m.PitchAngle(v)
				require.GreaterOrEqual(t, pitch, prevPitch)
				prevPitch = pitch
				if v <= m.RatedSpeed {
					require.Zero(t, pitch, "no pitch below rated")
				}
			}
			require.Equal(t, m.RatedPower, m.Power(m.RatedSpeed))
		})
	}
	_, err := ModelNamed("vestas")
	require.ErrorIs(t, err, ErrUnknownModel)
	m := Onshore2300()
	require.Equal(t, 113.0, m.RotorDiameter)
	require.Equal(t, 3.25, m.CutIn)
	require.Zero(t, m.Power(3.2))
}

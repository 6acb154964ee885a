package ingest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

func TestSeriesLabels(t *testing.T) {
	r := &api.Record{Org: "demo", Product: "wind-turbine", Device: "WT01", Site: "demo-farm"}
	for _, tc := range []struct {
		point   string
		quality bool
		want    string
	}{
		{"WTUR.W", false, `{__name__="WTUR_W", device="WT01", org="demo", point="WTUR.W", product="wind-turbine", site="demo-farm"}`},
		{"WTUR.W", true, `{__name__="WTUR_W_quality", device="WT01", org="demo", point="WTUR.W", product="wind-turbine", site="demo-farm"}`},
		{"Temp", false, `{__name__="Temp", device="WT01", org="demo", point="Temp", product="wind-turbine", site="demo-farm"}`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			k := KeyOf(r, tc.point, tc.quality)
			require.Equal(t, tc.want, k.Labels().String())
			require.NotEqual(t, KeyOf(r, tc.point, !tc.quality), k, "value and quality are two series")
		})
	}
}

package dashboards

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

func shippedDashboards(t testing.TB) []*Dashboard {
	t.Helper()
	ds, err := Shipped()
	require.NoError(t, err)
	require.Len(t, ds, 6)
	return ds
}

func knownMetrics(t testing.TB) map[string]bool {
	t.Helper()
	known, err := KnownMetrics()
	require.NoError(t, err)
	return known
}

func TestShippedDashboardsLintClean(t *testing.T) {
	known := knownMetrics(t)
	for _, d := range shippedDashboards(t) {
		t.Run(d.File, func(t *testing.T) {
			require.Empty(t, Lint(d, known))
			require.NotEmpty(t, d.Queries())
		})
	}
}

func TestKnownMetricsDeriveFromCode(t *testing.T) {
	known := knownMetrics(t)
	for _, name := range []string{"WTUR_W", "WTUR_W_quality", "WMET_HorWdSpd", "site:WTUR_W:sum", "site:turbines_running:ratio",
		"ALERTS", "up", "gale_broker_puback_seconds_bucket", "go_gc_duration_seconds_count"} {
		require.True(t, known[name], name)
	}
	require.False(t, known["WTUR_TurSt_quality"], "WTUR.TurSt has no quality flag")
}

// TestEveryIECPointIsOnADashboard: every measurepoint of the turbine model is
// on the turbine dashboard, every met-mast point on the wind-farm dashboard.
func TestEveryIECPointIsOnADashboard(t *testing.T) {
	products, err := registry.ShippedProducts()
	require.NoError(t, err)
	byFile := map[string]string{}
	for _, d := range shippedDashboards(t) {
		var all []string
		for _, q := range d.Queries() {
			all = append(all, q.Expr)
		}
		byFile[d.File] = strings.Join(all, "\n")
	}
	for product, file := range map[string]string{"wind-turbine": "turbine.json", "met-mast": "wind-farm.json"} {
		for _, p := range products {
			if p.Key != product {
				continue
			}
			for _, mp := range p.Model.Measurepoints {
				require.Contains(t, byFile[file], api.MetricName(mp.ID)+"{", "%s of %s is on no panel of %s", mp.ID, product, file)
			}
		}
	}
}

// modify returns a copy of the fleet dashboard changed by edit.
func modify(t *testing.T, edit func(m map[string]any)) *Dashboard {
	t.Helper()
	for _, d := range shippedDashboards(t) {
		if d.File != "fleet.json" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(d.JSON, &m))
		edit(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		out, err := Parse("fleet.json", b)
		require.NoError(t, err)
		return out
	}
	t.Fatal("no fleet.json")
	return nil
}

// firstTarget returns the first target of the first panel with targets.
func firstTarget(m map[string]any) map[string]any {
	for _, p := range m["panels"].([]any) {
		if ts, ok := p.(map[string]any)["targets"].([]any); ok && len(ts) > 0 {
			return ts[0].(map[string]any)
		}
	}
	return nil
}

func variables(m map[string]any) []any { return m["templating"].(map[string]any)["list"].([]any) }

func TestLintFindsProblems(t *testing.T) {
	known := knownMetrics(t)
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"misspelt metric", func(m map[string]any) {
			firstTarget(m)["expr"] = `count(WTUR_TurStt{org=~"$org", site=~"$site"})`
		}, "metric WTUR_TurStt is not exported by Gale"},
		{"query that does not parse", func(m map[string]any) {
			firstTarget(m)["expr"] = `sum(WTUR_W{org=~"$org"}`
		}, "does not parse"},
		{"undefined variable", func(m map[string]any) {
			firstTarget(m)["expr"] = `count(WTUR_TurSt{org=~"$org", site=~"$site", device=~"$turbine"})`
		}, "variable $turbine is not defined"},
		{"unused variable", func(m map[string]any) {
			l := m["templating"].(map[string]any)
			l["list"] = append(variables(m), map[string]any{"name": "spare", "type": "query", "query": "label_values(WTUR_W, device)",
				"datasource": map[string]any{"type": "prometheus", "uid": DatasourceUID}})
		}, "variable $spare: defined but never used"},
		{"variable used before it is defined", func(m map[string]any) {
			vs := variables(m)
			vs[0], vs[1] = vs[1], vs[0]
		}, "variable $org is not defined (or is defined after its use)"},
		{"variable query not label_values", func(m map[string]any) {
			variables(m)[0].(map[string]any)["query"] = "metrics(WTUR)"
		}, "want a label_values(selector, label) query"},
		{"selector without a metric name", func(m map[string]any) {
			firstTarget(m)["expr"] = `count({org=~"$org", site=~"$site"})`
		}, "selector without a metric name"},
		{"name regex matching nothing", func(m map[string]any) {
			firstTarget(m)["expr"] = `count({__name__=~"WXYZ_.*", org=~"$org", site=~"$site"})`
		}, "matches no metric Gale exports"},
		{"other data source", func(m map[string]any) {
			firstTarget(m)["datasource"] = map[string]any{"type": "prometheus", "uid": "prom"}
		}, `is not on the data source uid "gale"`},
		{"duplicate panel id", func(m map[string]any) {
			ps := m["panels"].([]any)
			ps[1].(map[string]any)["id"] = ps[0].(map[string]any)["id"]
		}, "panel id must be unique"},
		{"no uid", func(m map[string]any) { m["uid"] = "" }, "uid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			problems := Lint(modify(t, tc.edit), known)
			require.NotEmpty(t, problems)
			var msgs []string
			for _, p := range problems {
				msgs = append(msgs, p.String())
			}
			require.Contains(t, strings.Join(msgs, "\n"), tc.want)
		})
	}
}

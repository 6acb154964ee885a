package rules

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A route is listed with its file and line, what it matches and where its
// actions go; a webhook's credentials (user, path, query, headers) are not.
func TestListRoutes(t *testing.T) {
	routes, err := ParseRoutes("hooks.yaml", []byte(`routes:
  - name: hot-to-ops
    from: [telemetry]
    match: {product: wind-turbine, point: WTRM.TrmTmpGbxOil, condition: {above: 80}}
    actions:
      - webhook: {url: "https://bot:pa55@hooks.example.com/T0/secret-path?token=abc", headers: {Authorization: "Bearer s3cret"}}
      - kafka: {topic: ops.hot}
  - name: all-alerts
    from: [alerts]
    actions:
      - republish: {topic: "/ops/alerts"}
`))
	require.NoError(t, err)
	got := Set{Routes: &Router{routes: routes}}.ListRoutes()
	require.Equal(t, []RouteInfo{
		{Name: "hot-to-ops", Location: "hooks.yaml:2", From: []string{"telemetry"}, Match: "product=wind-turbine point=WTRM.TrmTmpGbxOil above 80",
			Actions: []string{"webhook https://hooks.example.com", "kafka ops.hot"}},
		{Name: "all-alerts", Location: "hooks.yaml:8", From: []string{"alerts"}, Match: "everything", Actions: []string{"republish /ops/alerts"}},
	}, got)
	require.Empty(t, Set{}.ListRoutes())
}

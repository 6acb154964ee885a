package rules

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// TestOrgRulesSeeTheirOrgOnly: a streaming rule of an org (its own org, or
// its file's) fires for that org's devices only, whatever its scope; a
// cluster rule fires for every org's; a rule naming another org than its
// file's is refused.
func TestOrgRulesSeeTheirOrgOnly(t *testing.T) {
	rules, err := Parse("acme.yaml", []byte(`org: acme
rules:
  - name: acme-hot
    type: threshold
    point: T
    above: 50
  - name: acme-hot-anywhere
    type: threshold
    scope: {devices: [sensor/b1, sensor/a1]}
    point: T
    above: 50
`))
	require.NoError(t, err)
	require.Equal(t, "acme", rules[0].Org)
	cluster, err := Parse("fleet.yaml", []byte("rules:\n  - {name: fleet-hot, type: threshold, point: T, above: 50}\n"))
	require.NoError(t, err)
	require.Empty(t, cluster[0].Org)
	e := NewEngine(append(rules, cluster...), nil)

	fired := map[string][]string{}
	for _, s := range []Sample{
		{Org: "acme", Product: "sensor", Device: "a1", Point: "T", Time: 1, Value: 60},
		{Org: "beta", Product: "sensor", Device: "b1", Point: "T", Time: 1, Value: 60},
	} {
		ts, _ := e.Observe(s)
		for _, tr := range ts {
			fired[tr.Rule] = append(fired[tr.Rule], tr.Device)
		}
	}
	require.Equal(t, map[string][]string{
		"acme-hot":          {"sensor/a1"},
		"acme-hot-anywhere": {"sensor/a1"},
		"fleet-hot":         {"sensor/a1", "sensor/b1"},
	}, fired)

	_, err = Parse("mixed.yaml", []byte("org: acme\nrules:\n  - {name: r, org: beta, type: threshold, point: T, above: 1}\n"))
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, `org "beta" in a file of org "acme"`)
}

// TestOrgRoutes: a route of an org takes its org's messages only, writes
// to no platform topic and republishes on no device topic.
func TestOrgRoutes(t *testing.T) {
	routes, err := ParseRoutes("acme.yaml", []byte(`org: acme
routes:
  - name: acme-out
    from: [telemetry, alerts]
    actions:
      - kafka: {topic: acme.telemetry}
      - republish: {topic: "acme/{{.Device}}"}
`))
	require.NoError(t, err)
	rt := routes[0]
	require.Equal(t, "acme", rt.Org)
	require.Equal(t, RouteInfo{Name: "acme-out", Org: "acme", From: []string{FromTelemetry, FromAlerts}, Match: "everything",
		Actions: []string{"kafka acme.telemetry", "republish acme/{{.Device}}"}, Location: "acme.yaml:3"}, rt.Info())
	acme := &routeMsg{Type: "telemetry", Org: "acme", Product: "sensor", Device: "a1", Points: map[string]float64{"T": 1}}
	beta := &routeMsg{Type: "telemetry", Org: "beta", Product: "sensor", Device: "b1", Points: map[string]float64{"T": 1}}
	betaAlert := &routeMsg{Type: api.EventTypeAlert, Org: "beta", alert: &api.Alert{Rule: "hot", Org: "beta"}}
	require.True(t, rt.matches(acme))
	require.False(t, rt.matches(beta))
	require.False(t, rt.matches(betaAlert))
	require.NoError(t, rt.checkRepublish("acme/a1"))
	for _, topic := range []string{"/sys/sensor/b1/thing/service/reboot", "/ext/session/gw/g1/combine/login", "$SYS/x"} {
		require.ErrorContains(t, rt.checkRepublish(topic), "republishes on no")
	}

	cluster, err := ParseRoutes("fleet.yaml", []byte("routes:\n  - name: all\n    actions:\n      - kafka: {topic: gale.copy}\n      - republish: {topic: \"/sys/{{.Product}}/{{.Device}}/x\"}\n"))
	require.NoError(t, err, "cluster routes are the cluster operator's")
	require.True(t, cluster[0].matches(beta))
	require.NoError(t, cluster[0].checkRepublish("/sys/sensor/b1/x"))

	_, err = ParseRoutes("bad.yaml", []byte("org: acme\nroutes:\n  - name: leak\n    actions:\n      - kafka: {topic: gale.telemetry}\n"))
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "writes to no gale.* topic")
	_, err = ParseRoutes("bad.yaml", []byte("org: acme\nroutes:\n  - name: r\n    org: beta\n    actions:\n      - kafka: {topic: t}\n"))
	require.ErrorContains(t, err, `org "beta" in a file of org "acme"`)
}

// TestOrgPromQLRulesConfined: a PromQL rule with an org label (its own or
// its group's) reads only that org's series, through every selector,
// function, subquery and binary operation, and records with its org label;
// a cluster rule reads all.
func TestOrgPromQLRulesConfined(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, filepath.Join(dir, PromQLDir), map[string]string{"orgs.yml": `groups:
  - name: acme
    interval: 100ms
    labels: {org: acme}
    rules:
      - record: org:temp:count
        expr: count({__name__=~"te.+", org=~".*"}) or vector(0)
      - record: org:temp:tricks
        expr: count(label_replace(temp{org="beta"}, "org", "acme", "", "") or max_over_time(temp[10m:1m]) or absent(nothing))
  - name: beta
    interval: 100ms
    rules:
      - record: org:temp:count
        expr: count(temp)
        labels: {org: beta}
  - name: cluster
    interval: 100ms
    rules:
      - record: all:temp:count
        expr: count(temp)
`})
	db := tsdbtest.Open(t)
	now := time.Now()
	app := db.Appender(context.Background())
	for _, s := range []struct{ org, dev string }{{"acme", "a1"}, {"acme", "a2"}, {"beta", "b1"}} {
		for i := range 5 {
			_, err := app.Append(0, labels.FromStrings(labels.MetricName, "temp", "org", s.org, "device", s.dev), now.Add(-time.Duration(i)*time.Minute).UnixMilli(), 1)
			require.NoError(t, err)
		}
	}
	require.NoError(t, app.Commit())
	engine := testEngine(t)
	p := runPromQLRules(t, dir, db, engine)
	exprs := map[string]string{}
	for _, g := range p.RuleGroups() {
		for _, r := range g.Rules() {
			exprs[g.Name()+"/"+r.Name()] = r.Query().String()
		}
	}
	require.Equal(t, `count({__name__=~"te.+",org="acme",org=~".*"}) or vector(0)`, exprs["acme/org:temp:count"])
	require.Equal(t, "count(temp)", exprs["cluster/all:temp:count"])
	owned, err := Set{PromQL: p}.Validate(KindPromQL, []byte("groups:\n  - name: g\n    labels: {org: acme}\n    rules:\n      - record: r\n        expr: temp\n      - alert: A\n        expr: temp > 1\n        labels: {org: beta}\n"))
	require.NoError(t, err)
	require.Equal(t, []Owned{{Name: "r", Org: "acme", Location: "g"}, {Name: "A", Org: "beta", Location: "g"}}, owned)
	_, err = Set{PromQL: p}.Validate(KindPromQL, []byte("groups:\n  - name: g\n    rules:\n      - record: r\n        expr: sum(\n"))
	require.ErrorIs(t, err, ErrInvalid)

	read := func(q string) map[string]float64 {
		qr, err := engine.NewInstantQuery(context.Background(), db, nil, q, time.Now())
		require.NoError(t, err)
		defer qr.Close()
		res := qr.Exec(context.Background())
		require.NoError(t, res.Err)
		out := map[string]float64{}
		for _, s := range res.Value.(promql.Vector) {
			out[s.Metric.Get(labels.MetricName)+"/"+s.Metric.Get("org")] = s.F
		}
		return out
	}
	want := map[string]float64{
		"org:temp:count/acme":  2, // acme's two series, not beta's
		"org:temp:count/beta":  1,
		"org:temp:tricks/acme": 3, // acme's two and absent's {org="acme"}: beta's series renamed, a subquery reach none of beta's (5 if they did)
		"all:temp:count/":      3,
	}
	require.Eventually(t, func() bool {
		got := read(`{__name__=~"org:.+|all:.+"}`)
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "each org's rule counts its org's series only")
}

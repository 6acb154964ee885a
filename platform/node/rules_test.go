package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

func alerts(t *testing.T, h *nodetest.Harness, query string) []api.Alert {
	t.Helper()
	var out []api.Alert
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/alerts?"+query, nil, &out))
	return out
}

func TestGearboxAlertFiresOnceResolvesOnceAndSurvivesRestart(t *testing.T) {
	cfg := nodetest.Config(t)
	cfg.Rules.CheckpointEvery = 100 * time.Millisecond
	h := nodetest.Start(t, cfg)
	require.NoError(t, node.SeedDemo(context.Background(), h.Node.Registry, node.Demo{Turbines: 2}))
	var wt01, wt02 api.Device
	h.Do(t, http.MethodGet, "/api/v1/devices/wind-turbine/WT01", nil, &wt01)
	h.Do(t, http.MethodGet, "/api/v1/devices/wind-turbine/WT02", nil, &wt02)
	d1, d2 := connect(t, h, wt01), connect(t, h, wt02)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Backfill of a hot gearbox on WT02 is stored and never alerts.
	base := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	var backfill []map[string]any
	for i := range 20 {
		backfill = append(backfill, map[string]any{"measurepoints": map[string]any{"WTRM.TrmTmpGbxOil": 95.0}, "time": base.Add(time.Duration(i) * 10 * time.Second).UnixMilli()})
	}
	params, _ := json.Marshal(backfill)
	r, err := d2.Request(ctx, api.MeasurepointResumeBatchTopic("wind-turbine", "WT02"), api.Request{ID: "b", Params: params})
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, r.Code, r.Message)

	// WT01 runs hot from +10 s to +70 s, then cools at +80 s.
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Second)
	for i, v := range []float64{60, 80, 80, 80, 80, 80, 80, 80, 60} {
		require.NoError(t, d1.Post(ctx, start.Add(time.Duration(i)*10*time.Second), map[string]any{"WTRM.TrmTmpGbxOil": v}))
		if i == 3 {
			require.Eventually(t, func() bool { return len(alerts(t, h, "state=pending&rule=gearbox-overheat")) == 1 }, 10*time.Second, 20*time.Millisecond)
		}
	}
	var got []api.Alert
	require.Eventually(t, func() bool {
		got = alerts(t, h, "rule=gearbox-overheat")
		return len(got) == 1 && got[0].State == api.AlertResolved
	}, 10*time.Second, 20*time.Millisecond)
	a := got[0]
	require.Equal(t, "wind-turbine/WT01", a.Key)
	require.Equal(t, "demo-farm", a.Site)
	require.Equal(t, "major", a.Severity)
	require.Equal(t, start.Add(10*time.Second).UnixMilli(), a.StartedAt)
	require.Equal(t, start.Add(70*time.Second).UnixMilli(), a.FiredAt, "fires when the for-duration of 60 s has passed in event time")
	require.Equal(t, start.Add(80*time.Second).UnixMilli(), a.ResolvedAt)
	require.Contains(t, a.Message, "80.0 °C on wind-turbine/WT01")

	var acked api.Alert
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodPost, fmt.Sprintf("/api/v1/alerts/%d/ack", a.ID), map[string]string{"comment": "oil changed", "user": "ops"}, &acked))
	require.Equal(t, "ops", acked.AckedBy)
	require.Equal(t, http.StatusNotFound, h.Do(t, http.MethodPost, "/api/v1/alerts/999/ack", map[string]string{}, nil))
	require.Equal(t, http.StatusBadRequest, h.Do(t, http.MethodGet, "/api/v1/alerts?state=weird", nil, nil))

	// A second episode is pending when the node restarts; it fires after the restart, once.
	for i := range 3 {
		require.NoError(t, d1.Post(ctx, start.Add(time.Duration(100+i*10)*time.Second), map[string]any{"WTRM.TrmTmpGbxOil": 90.0}))
	}
	require.Eventually(t, func() bool { return len(alerts(t, h, "state=pending")) == 1 }, 10*time.Second, 20*time.Millisecond)
	d1.Close()
	d2.Close()
	h.Stop()

	h = nodetest.Start(t, cfg)
	require.Len(t, alerts(t, h, "state=pending"), 1, "the pending episode survives the restart")
	d1 = connect(t, h, wt01)
	for i := 3; i < 8; i++ {
		require.NoError(t, d1.Post(ctx, start.Add(time.Duration(100+i*10)*time.Second), map[string]any{"WTRM.TrmTmpGbxOil": 90.0}))
	}
	require.Eventually(t, func() bool { return len(alerts(t, h, "state=firing")) == 1 }, 10*time.Second, 20*time.Millisecond)
	all := alerts(t, h, "rule=gearbox-overheat")
	require.Len(t, all, 2, "one resolved episode from before the restart, one firing")
	require.Equal(t, start.Add(100*time.Second).UnixMilli(), all[0].StartedAt)
	require.Equal(t, start.Add(160*time.Second).UnixMilli(), all[0].FiredAt)
	require.Equal(t, "oil changed", all[1].AckComment)
	require.Empty(t, alerts(t, h, "rule=gearbox-overheat&site=elsewhere"))
	for _, x := range alerts(t, h, "") {
		require.NotEqual(t, "wind-turbine/WT02", x.Key, "backfill raised %+v", x)
	}
}

func TestRulesReloadRejectsInvalidFilesWithLine(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	var rules []map[string]any
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/rules", nil, &rules))
	require.NotEmpty(t, rules)
	n := len(rules)

	dir := h.Config.Rules.Dir
	require.NoError(t, os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte("rules:\n  - name: ok\n    type: threshold\n    point: X\n    above: 1\n  - name: broken\n    type: threshold\n    point: X\n"), 0o644))
	var e map[string]string
	require.Equal(t, http.StatusBadRequest, h.Do(t, http.MethodPost, "/api/v1/rules/reload", nil, &e))
	require.Contains(t, e["error"], "extra.yaml:6")
	require.Contains(t, e["error"], "broken")
	h.Do(t, http.MethodGet, "/api/v1/rules", nil, &rules)
	require.Len(t, rules, n, "the previous rules stay")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte("rules:\n  - name: ok\n    type: threshold\n    point: X\n    above: 1\n"), 0o644))
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodPost, "/api/v1/rules/reload", nil, &rules))
	require.Len(t, rules, n+1)
}

func TestPromQLRulesRecordAndAlert(t *testing.T) {
	h, d := setup(t)
	dir := filepath.Join(h.Config.Rules.Dir, "promql")
	require.FileExists(t, filepath.Join(dir, "wind-farm.rules.yml"), "shipped PromQL rules are installed")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "test.yml"), []byte(`groups:
  - name: test
    interval: 200ms
    rules:
      - record: site:Temp:max
        expr: max by (site) (Temp)
      - alert: TempHigh
        expr: Temp > 50
        labels: {severity: critical}
        annotations: {summary: "Temp {{ $value }} on {{ $labels.device }}"}
`), 0o644))
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodPost, "/api/v1/rules/reload", nil, nil))
	dev := connect(t, h, d)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, dev.Post(ctx, time.Now(), map[string]any{"Temp": 61.0}))

	require.Eventually(t, func() bool {
		s := h.Query(t, `site:Temp:max{site="test-site"}`, time.Time{})
		return len(s) == 1 && s[0].Float() == 61
	}, 15*time.Second, 50*time.Millisecond, "the recording rule writes back into the TSDB")
	var firing []api.Alert
	require.Eventually(t, func() bool {
		firing = alerts(t, h, "source=promql&state=firing")
		return len(firing) == 1
	}, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, "TempHigh", firing[0].Rule)
	require.Equal(t, "critical", firing[0].Severity)
	require.Equal(t, "sensor/d1", firing[0].Device)
	require.Equal(t, "Temp 61 on d1", firing[0].Message)

	var promAlerts struct {
		Data struct {
			Alerts []map[string]any `json:"alerts"`
		} `json:"data"`
	}
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/prometheus/api/v1/alerts", nil, &promAlerts))
	require.Len(t, promAlerts.Data.Alerts, 1, "Prometheus's own alerts endpoint sees it too")

	require.NoError(t, dev.Post(ctx, time.Now(), map[string]any{"Temp": 20.0}))
	require.Eventually(t, func() bool {
		all := alerts(t, h, "source=promql")
		return len(all) == 1 && all[0].State == api.AlertResolved
	}, 15*time.Second, 50*time.Millisecond, "resolves once, as the same episode")
}

// TestNodeStartsWithBadRuleFiles: a node whose rules dir has bad files (the
// PromQL one refused by the query limits, as the engine would refuse it)
// starts, serves the good rules, and its reload API names each bad file and line.
func TestNodeStartsWithBadRuleFiles(t *testing.T) {
	cfg := nodetest.Config(t)
	cfg.Rules.Dir = filepath.Join(cfg.DataDir, "rules")
	prom := filepath.Join(cfg.Rules.Dir, "promql")
	require.NoError(t, os.MkdirAll(prom, 0o755))
	for path, content := range map[string]string{
		filepath.Join(cfg.Rules.Dir, "good.yaml"): "rules:\n  - name: hot\n    type: threshold\n    point: T\n    above: 1\n",
		filepath.Join(cfg.Rules.Dir, "bad.yaml"):  "rules:\n  - name: broken\n    type: threshold\n",
		filepath.Join(prom, "good.yml"):           "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: max_over_time(T[5m:])\n",
		filepath.Join(prom, "heavy.yml"):          "groups:\n  - name: h\n    rules:\n      - record: r\n        expr: max_over_time(T[1d:1ms])\n",
	} {
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	h := nodetest.Start(t, cfg)
	var rules []map[string]any
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/rules", nil, &rules))
	var names []string
	for _, r := range rules {
		names = append(names, fmt.Sprint(r["name"], " ", r["type"]))
	}
	require.ElementsMatch(t, []string{"hot threshold", "r promql-recording"}, names)

	var e map[string]string
	require.Equal(t, http.StatusBadRequest, h.Do(t, http.MethodPost, "/api/v1/rules/reload", nil, &e))
	require.Contains(t, e["error"], "bad.yaml:2")
	require.Contains(t, e["error"], "promql/heavy.yml:5")
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/rules", nil, &rules))
	require.Len(t, rules, 2, "the rules stay as they were")
}

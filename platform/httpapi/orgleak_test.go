package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/rules"
)

// orgRules are PromQL rules over both orgs' turbines: a recording rule
// that keeps the org label, a rule of each org (its org label), and a
// shared alert that fires for every turbine, and one of acme.
const orgRules = `groups:
  - name: orgs
    interval: 1s
    rules:
      - record: org:WTUR_W:sum
        expr: sum by (org) (WTUR_W)
      - record: acme:WTUR_W:max
        expr: max(WTUR_W{org="acme"})
        labels: {org: acme}
      - record: beta:WTUR_W:max
        expr: max(WTUR_W{org="beta"})
        labels: {org: beta}
      - alert: TurbineProducing
        expr: WTUR_W > 0
        labels: {severity: minor}
      - alert: AcmeProducing
        expr: WTUR_W{org="acme"} > 0
        labels: {severity: minor, org: acme}
  - name: beta
    interval: 1s
    labels: {org: beta}
    rules:
      - record: beta:stolen:count
        expr: count(WTUR_W{org="acme"} or label_replace(WTUR_W, "org", "beta", "", ""))
`

// orgStreamRules are streaming rules of each org, beta's aimed at acme's
// turbine: an org's rule sees its org's devices only, whatever its scope.
const orgStreamRules = `rules:
  - name: acme-producing
    org: acme
    type: threshold
    point: WTUR.W
    above: 0
  - name: beta-watches-acme
    org: beta
    type: threshold
    scope: {devices: [turbine/acme-wt1]}
    point: WTUR.W
    above: 0
`

// orgRoutes are a route of each org.
const orgRoutes = `routes:
  - name: acme-copy
    org: acme
    actions:
      - kafka: {topic: acme.copy}
  - name: beta-copy
    org: beta
    actions:
      - kafka: {topic: beta.copy}
`

// TestNoReadCrossesOrgs streams real samples of two orgs' turbines through
// MQTT, Kafka and the TSDB, then has a viewer and an operator of acme try
// every way to read beta's data or command its turbine: PromQL tricks,
// the series, label, rule and alert endpoints, and REST. Nothing of beta
// comes back, while the same calls return acme's data. That the engine
// hands each Select the request's context (with the caller) shows here:
// without it every query would fail, with a wrong one it would see beta.
func TestNoReadCrossesOrgs(t *testing.T) {
	cfg := nodetest.Config(t)
	require.NoError(t, cfg.Complete())
	require.NoError(t, os.MkdirAll(filepath.Join(cfg.Rules.Dir, rules.PromQLDir), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Rules.Dir, rules.PromQLDir, "orgs.rules.yml"), []byte(orgRules), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Rules.Dir, "orgs.yaml"), []byte(orgStreamRules), 0o600))
	require.NoError(t, os.MkdirAll(cfg.Rules.RoutesDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Rules.RoutesDir, "orgs.yaml"), []byte(orgRoutes), 0o600))
	h := nodetest.Start(t, cfg)
	root := h.Token
	clients := map[string]*apiclient.Client{} // by token
	do := func(token, method, path string, body any) (int, string) {
		t.Helper()
		if clients[token] == nil {
			clients[token] = h.As(t, token).API
		}
		code, b, err := clients[token].Send(context.Background(), method, path, body)
		require.NoError(t, err)
		return code, string(b)
	}

	// Two orgs, a site and a turbine each, and their devices streaming.
	for _, a := range []api.Asset{{ID: "acme", Kind: api.AssetOrg}, {ID: "acme-farm", Kind: api.AssetSite, Parent: "acme"},
		{ID: "beta", Kind: api.AssetOrg}, {ID: "beta-farm", Kind: api.AssetSite, Parent: "beta"}} {
		code, b := do(root, http.MethodPost, "/api/v1/assets", a)
		require.Equal(t, http.StatusCreated, code, b)
	}
	product := api.Product{Key: "turbine", Model: api.ThingModel{
		Measurepoints: []api.Measurepoint{{ID: "WTUR.W", Type: api.TypeFloat}},
		Services:      []api.Service{{ID: "stop"}},
	}}
	code, b := do(root, http.MethodPost, "/api/v1/products", product)
	require.Equal(t, http.StatusCreated, code, b)
	betaProduct := api.Product{Key: "beta-turbine", Org: "beta", Model: product.Model}
	code, b = do(root, http.MethodPost, "/api/v1/products", betaProduct)
	require.Equal(t, http.StatusCreated, code, b)
	calls := map[string]chan device.ServiceCall{}
	devices := map[string]*device.Device{}
	for _, org := range []string{"acme", "beta"} {
		d := h.CreateDevice(t, api.Device{ProductKey: "turbine", DeviceKey: org + "-wt1", Site: org + "-farm"})
		calls[org] = make(chan device.ServiceCall, 4)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		dev, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret,
			OnService: func(c device.ServiceCall) (int, string, any) { calls[org] <- c; return api.CodeOK, "", nil }})
		cancel()
		require.NoError(t, err)
		t.Cleanup(dev.Close)
		devices[org] = dev
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		for _, dev := range devices {
			require.NoError(t, dev.Post(ctx, time.Now().Add(time.Duration(i-3)*time.Second), map[string]any{"WTUR.W": 1000.0 + float64(i)}))
		}
	}

	// Tokens of acme; the cluster admin sees both orgs' series, the recording and the alert.
	token := func(name, role string) string {
		var out struct {
			Token string `json:"token"`
		}
		code, b := do(root, http.MethodPost, "/api/v1/tokens", map[string]string{"name": name, "org": "acme", "role": role})
		require.Equal(t, http.StatusCreated, code, b)
		require.NoError(t, json.Unmarshal([]byte(b), &out))
		return out.Token
	}
	viewer, operator := token("acme-viewer", api.RoleViewer), token("acme-operator", api.RoleOperator)
	query := func(tok, expr string) string {
		t.Helper()
		code, b := do(tok, http.MethodGet, "/prometheus/api/v1/query?"+url.Values{"query": {expr}}.Encode(), nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", expr, b)
		return b
	}
	require.Eventually(t, func() bool {
		all := query(root, `{__name__=~"WTUR_W|org:WTUR_W:sum|beta:WTUR_W:max|acme:WTUR_W:max|ALERTS"}`)
		return strings.Count(all, `"beta-wt1"`) >= 2 && strings.Count(all, `"acme-wt1"`) >= 2 && strings.Contains(all, `"org:WTUR_W:sum","org":"beta"`) &&
			strings.Contains(all, `"beta:WTUR_W:max","org":"beta"`) && strings.Contains(all, `"acme:WTUR_W:max","org":"acme"`)
	}, 20*time.Second, 100*time.Millisecond, "both orgs' series, recordings and alerts in the TSDB")
	var stolen string
	require.Eventually(t, func() bool {
		stolen = query(root, `beta:stolen:count`)
		return strings.Contains(stolen, `"org":"beta"`)
	}, 20*time.Second, 100*time.Millisecond, "beta's rule recorded")
	require.Contains(t, stolen, `"1"]`, "beta's rule counted beta's turbine only (3 had it read acme's): %s", stolen)
	var betaAlert []api.Alert
	require.Eventually(t, func() bool {
		code, b := do(root, http.MethodGet, "/api/v1/alerts?rule=TurbineProducing", nil)
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, json.Unmarshal([]byte(b), &betaAlert))
		return len(betaAlert) == 2
	}, 20*time.Second, 100*time.Millisecond, "the shared alert fired for both turbines")
	var betaAlertID int64
	for _, a := range betaAlert {
		if a.Org == "beta" {
			betaAlertID = a.ID
		}
	}
	require.NotZero(t, betaAlertID)
	code, b = do(root, http.MethodPost, "/api/v1/devices/turbine/beta-wt1/services/stop?async=true", nil)
	require.Equal(t, http.StatusAccepted, code, b)
	var betaCommand struct {
		ID string `json:"commandId"`
	}
	require.NoError(t, json.Unmarshal([]byte(b), &betaCommand))
	select {
	case <-calls["beta"]:
	case <-ctx.Done():
		t.Fatal("the cluster admin's command did not reach beta's turbine")
	}

	// PromQL: every form reads acme's series only; none returns anything of beta.
	noBeta := func(what, b string) {
		t.Helper()
		require.NotContains(t, b, "beta", what)
	}
	for expr, acmeSees := range map[string]bool{
		`{org=~".+"}`:                   true,
		`{org!="acme", __name__=~".+"}`: false,
		`{__name__=~".+"}`:              true,
		`WTUR_W{org="beta"}`:            false,
		`{device=~"beta.*"}`:            false,
		`label_replace({__name__=~".+"}, "org", "acme", "org", ".*")`:                    true,
		`label_replace(WTUR_W, "x", "$1", "org", "(.*)")`:                                true,
		`max_over_time({__name__=~"WTUR_.*"}[5m:1s])`:                                    true,
		`last_over_time(WTUR_W{org="beta"}[10m])`:                                        false,
		`WTUR_W{org="acme"} or WTUR_W{org="beta"}`:                                       true,
		`WTUR_W or on() vector(1)`:                                                       true,
		`WTUR_W unless WTUR_W{org="acme"}`:                                               false,
		`count by (org) ({__name__=~".+"})`:                                              true,
		`count by (org, device) ({__name__=~".+", org=~".*"})`:                           true,
		`group by (org, device) (WTUR_W)`:                                                true,
		`topk(100, {__name__=~".+"})`:                                                    true,
		`sum without () ({__name__=~".+"}) * on() group_left(org) max by (org) (WTUR_W)`: true,
		`org:WTUR_W:sum`:  true,
		`ALERTS`:          true,
		`beta:WTUR_W:max`: false,
	} {
		b := query(viewer, expr)
		noBeta(expr, b)
		require.Equal(t, acmeSees, strings.Contains(b, "acme"), "%s: %s", expr, b)
	}
	// absent of beta's series says what it says of a series that does not exist.
	for _, expr := range []string{`absent(WTUR_W{org=~"b.+"})`, `absent(WTUR_W{device=~"beta.+"})`, `absent_over_time({org=~"beta|x"}[1h])`} {
		require.Contains(t, query(viewer, expr), `"result":[{"metric":{},"value":[`, expr)
		require.Contains(t, query(root, expr), `"result":[]`, expr)
	}
	now := time.Now()
	for _, tc := range []struct {
		path string
		// rootSeesBeta: the cluster admin's answer has beta's data, so the viewer's could.
		rootSeesBeta bool
	}{
		{"/prometheus/api/v1/query_range?" + url.Values{"query": {`{__name__=~".+"}`}, "start": {fmt.Sprint(now.Add(-time.Minute).Unix())},
			"end": {fmt.Sprint(now.Unix())}, "step": {"5"}}.Encode(), true},
		{"/prometheus/api/v1/series?" + url.Values{"match[]": {`{__name__=~".+"}`}}.Encode(), true},
		{"/prometheus/api/v1/series?" + url.Values{"match[]": {`{org="beta"}`, `{org=~".+"}`}}.Encode(), true},
		{"/prometheus/api/v1/labels", false},
		{"/prometheus/api/v1/labels?" + url.Values{"match[]": {`{org="beta"}`}}.Encode(), false},
		{"/prometheus/api/v1/label/org/values", true},
		{"/prometheus/api/v1/label/device/values", true},
		{"/prometheus/api/v1/label/site/values", true},
		{"/prometheus/api/v1/label/__name__/values", true},
		{"/prometheus/api/v1/label/alertname/values", false},
		{"/prometheus/api/v1/query_exemplars?" + url.Values{"query": {`{org=~".+"}`}}.Encode(), false},
		{"/prometheus/api/v1/rules", true},
		{"/prometheus/api/v1/rules?" + url.Values{"match[]": {`{org="beta"}`}}.Encode(), true},
		{"/prometheus/api/v1/rules?type=alert", true},
		{"/prometheus/api/v1/alerts", true},
	} {
		code, b := do(viewer, http.MethodGet, tc.path, nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", tc.path, b)
		noBeta(tc.path, b)
		rootCode, rootBody := do(root, http.MethodGet, tc.path, nil)
		require.Equal(t, http.StatusOK, rootCode, tc.path)
		require.Equal(t, tc.rootSeesBeta, strings.Contains(rootBody, "beta"), "%s: %s", tc.path, rootBody)
		if strings.Contains(rootBody, "acme") && !strings.Contains(tc.path, "org%3D%22beta") {
			require.Contains(t, b, "acme", "%s: what acme's viewer sees of acme", tc.path)
		}
	}
	// Rules of acme are listed to acme; the shared ones and beta's to cluster accounts only.
	_, b = do(viewer, http.MethodGet, "/prometheus/api/v1/rules", nil)
	require.Contains(t, b, `"acme:WTUR_W:max"`)
	require.NotContains(t, b, `"org:WTUR_W:sum"`)
	require.NotContains(t, b, "TurbineProducing")
	require.Contains(t, b, "AcmeProducing")
	_, b = do(viewer, http.MethodGet, "/prometheus/api/v1/alerts", nil)
	require.Contains(t, b, `"alertname":"TurbineProducing"`, "a shared rule's alerts of acme")
	require.Contains(t, b, `"alertname":"AcmeProducing"`)
	// Escaped paths reach the same confinement (or none at all).
	code, b = do(viewer, http.MethodGet, "/prometheus/api/v1/%72ules", nil)
	require.Equal(t, http.StatusOK, code, b)
	require.NotContains(t, b, "TurbineProducing")
	noBeta("escaped rules path", b)
	for _, path := range []string{"/prometheus/api%2Fv1/rules", "/prometheus/api%2fv1/alerts", "/prometheus/api/v1%2Fseries?match[]=up"} {
		code, b = do(viewer, http.MethodGet, path, nil)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", path, b)
	}
	// Remote read and the TSDB's statistics are not served.
	for _, path := range []string{"/prometheus/api/v1/read", "/prometheus/api/v1/status/tsdb"} {
		code, _ := do(root, http.MethodPost, path, nil)
		require.Equal(t, http.StatusNotFound, code, path)
		code, _ = do(root, http.MethodGet, path, nil)
		require.Equal(t, http.StatusNotFound, code, path)
	}

	// REST: lists hold acme's only; beta's objects are 404 as missing ones are; no command reaches beta's turbine.
	for _, path := range []string{"/api/v1/devices", "/api/v1/devices?org=beta", "/api/v1/assets", "/api/v1/alerts", "/api/v1/alerts?state=pending",
		"/api/v1/rules", "/api/v1/routes", "/api/v1/products", "/api/v1/assets/acme/latest"} {
		code, b := do(viewer, http.MethodGet, path, nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, b)
		noBeta(path, b)
	}
	for _, path := range []string{"/api/v1/devices", "/api/v1/assets", "/api/v1/alerts", "/api/v1/assets/acme/latest", "/api/v1/rules", "/api/v1/routes"} {
		_, b := do(viewer, http.MethodGet, path, nil)
		require.Contains(t, b, "acme", path)
	}
	for path, betas := range map[string]string{"/api/v1/rules": "beta-watches-acme", "/api/v1/routes": "beta-copy", "/api/v1/products": "beta-turbine"} {
		_, b := do(root, http.MethodGet, path, nil)
		require.Contains(t, b, betas, "the cluster admin lists every org's")
	}
	// beta's rule aimed at acme's turbine never fired; acme's own did, on the same samples.
	require.Eventually(t, func() bool {
		_, b = do(root, http.MethodGet, "/api/v1/alerts?rule=acme-producing", nil)
		return strings.Contains(b, `"turbine/acme-wt1"`)
	}, 20*time.Second, 100*time.Millisecond, "acme's streaming rule fired")
	_, b = do(root, http.MethodGet, "/api/v1/alerts?rule=beta-watches-acme", nil)
	require.Equal(t, "[]", strings.TrimSpace(b), "an org's rule sees no other org's device")
	// beta's product is answered as a missing one, and acme cannot use it.
	code, b = do(viewer, http.MethodGet, "/api/v1/products/beta-turbine", nil)
	require.Equal(t, http.StatusNotFound, code, b)
	_, missing := do(viewer, http.MethodGet, "/api/v1/products/gamma-turbine", nil)
	require.Equal(t, strings.ReplaceAll(missing, "gamma", "beta"), b)
	code, b = do(token("acme-admin", api.RoleAdmin), http.MethodPost, "/api/v1/devices", api.Device{ProductKey: "beta-turbine", DeviceKey: "x", Site: "acme-farm"})
	require.Equal(t, http.StatusBadRequest, code, b)
	require.Contains(t, b, `product \"beta-turbine\" does not exist`)
	for _, path := range []string{"/api/v1/devices/turbine/%s-wt1", "/api/v1/devices/turbine/%s-wt1/latest",
		"/api/v1/devices/turbine/%s-wt1/points/WTUR.W/history", "/api/v1/assets/%s-farm/latest", "/api/v1/assets/%s/latest"} {
		code, b := do(viewer, http.MethodGet, fmt.Sprintf(path, "beta"), nil)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", path, b)
		missingCode, missing := do(viewer, http.MethodGet, fmt.Sprintf(path, "gamma"), nil)
		require.Equal(t, missingCode, code)
		require.Equal(t, strings.ReplaceAll(missing, "gamma", "beta"), b, "beta's answered as a missing one")
		code, b = do(viewer, http.MethodGet, fmt.Sprintf(path, "acme"), nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, b)
	}
	code, b = do(viewer, http.MethodGet, "/api/v1/commands/"+betaCommand.ID, nil)
	require.Equal(t, http.StatusNotFound, code, b)
	code, b = do(root, http.MethodGet, "/api/v1/commands/"+betaCommand.ID, nil)
	require.Equal(t, http.StatusOK, code, b)
	code, b = do(operator, http.MethodPost, fmt.Sprintf("/api/v1/alerts/%d/ack", betaAlertID), map[string]string{"comment": "mine now"})
	require.Equal(t, http.StatusNotFound, code, b)
	code, b = do(operator, http.MethodPost, "/api/v1/devices/turbine/beta-wt1/services/stop", nil)
	require.Equal(t, http.StatusNotFound, code, b)
	code, b = do(operator, http.MethodPost, "/api/v1/devices/turbine/acme-wt1/services/stop", nil)
	require.Equal(t, http.StatusOK, code, b)
	require.Equal(t, "acme-wt1", (<-calls["acme"]).DeviceKey)
	select {
	case c := <-calls["beta"]:
		t.Fatalf("beta's turbine got a call from acme: %+v", c)
	case <-time.After(200 * time.Millisecond):
	}
}

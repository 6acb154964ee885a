package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

func TestWebhookRouteDeliversEverythingAfterAnOutage(t *testing.T) {
	var up atomic.Bool
	var mu sync.Mutex
	var got []float64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		var m struct {
			Type   string             `json:"type"`
			Device string             `json:"device"`
			Points map[string]float64 `json:"points"`
		}
		b, _ := io.ReadAll(r.Body)
		require.NoError(t, json.Unmarshal(b, &m))
		mu.Lock()
		got = append(got, m.Points["Temp"])
		mu.Unlock()
	}))
	defer receiver.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer broken.Close()

	cfg := nodetest.Config(t)
	cfg.Rules.RoutesDir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Rules.RoutesDir, "routes.yaml"), []byte(fmt.Sprintf(`routes:
  - name: hot-to-webhook
    from: [telemetry]
    match: {product: sensor, point: Temp, condition: {above: 50}}
    actions:
      - webhook: {url: %q, retryFor: 1m}
  - name: doomed
    match: {point: Temp, condition: {above: 50}}
    actions:
      - webhook: {url: %q, retryFor: 300ms, timeout: 100ms}
  - name: hot-actions
    match: {point: Temp, condition: {above: 1000}}
    actions:
      - kafka: {topic: test.routed}
      - republish: {topic: "/sys/{{.Product}}/{{.Device}}/routed"}
      - command: {service: stop}
`, receiver.URL, broken.URL)), 0o644))
	h := nodetest.Start(t, cfg)
	p := api.Product{Key: "sensor", Model: api.ThingModel{
		Measurepoints: []api.Measurepoint{{ID: "Temp", Type: api.TypeFloat}},
		Services:      []api.Service{{ID: "stop"}},
	}}
	h.SetupProduct(t, "other", "X")
	require.Equal(t, http.StatusCreated, h.Do(t, "POST", "/api/v1/products", p, nil))
	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	calls := make(chan device.ServiceCall, 4)
	dev := connectWith(t, h, d, calls)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := time.Now().Add(-time.Minute)

	// The receiver is down while the samples arrive.
	for i := range 20 {
		require.NoError(t, dev.Post(ctx, base.Add(time.Duration(1000+i)*time.Millisecond), map[string]any{"Temp": float64(60 + i)}))
	}
	require.NoError(t, dev.Post(ctx, base.Add(2*time.Second), map[string]any{"Temp": 10.0})) // below the condition: not routed
	require.Eventually(t, func() bool {
		return h.Metric(t, `gale_route_actions_total{action="webhook",result="retry",route="hot-to-webhook"}`) >= 3
	}, 10*time.Second, 50*time.Millisecond, "the route retries while the receiver is down")
	up.Store(true)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 20 }, 30*time.Second, 20*time.Millisecond)
	mu.Lock()
	require.Len(t, got, 20, "once each")
	for i, v := range got {
		require.Equal(t, float64(60+i), v, "in order")
	}
	mu.Unlock()
	require.Eventually(t, func() bool {
		lag, ok := testkit.Scrape(t, h.Client, h.BaseURL+"/metrics", `gale_kafka_consumer_lag{group="gale-route-hot-to-webhook"}`)
		return ok && lag == 0
	}, 20*time.Second, 50*time.Millisecond, "a route's consumer group has its lag gauge, as every group")
	require.Zero(t, h.Metric(t, `gale_route_actions_total{action="webhook",result="deadletter",route="hot-to-webhook"}`))
	require.Eventually(t, func() bool {
		return h.Metric(t, `gale_route_actions_total{action="webhook",result="deadletter",route="doomed"}`) == 20
	}, 30*time.Second, 50*time.Millisecond, "a receiver that never recovers gets its messages dead-lettered after the retry budget")

	// Kafka, MQTT republish and command actions.
	require.NoError(t, dev.Post(ctx, base.Add(3*time.Second), map[string]any{"Temp": 1001.0}))
	select {
	case c := <-calls:
		require.Equal(t, "stop", c.Service)
	case <-time.After(20 * time.Second):
		t.Fatal("the command action did not reach the device")
	}
	for _, a := range []string{"kafka", "republish", "command"} {
		require.Eventually(t, func() bool {
			return h.Metric(t, `gale_route_actions_total{action="`+a+`",result="ok",route="hot-actions"}`) == 1
		}, 10*time.Second, 20*time.Millisecond, a)
	}
}

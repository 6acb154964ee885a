package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

func connect(t *testing.T, h *nodetest.Harness, d api.Device) *device.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret})
	require.NoError(t, err)
	t.Cleanup(dev.Close)
	return dev
}

func setup(t *testing.T) (*nodetest.Harness, api.Device) {
	h := nodetest.Start(t, nodetest.Config(t))
	h.SetupProduct(t, "sensor", "Temp", "Seq")
	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	require.NotEmpty(t, d.Secret)
	return h, d
}

func TestTelemetryReachesPrometheusAPI(t *testing.T) {
	h, d := setup(t)
	dev := connect(t, h, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts := time.Now().Truncate(time.Millisecond)
	reply, err := dev.Request(ctx, dev.PostTopic(), dev.MeasurepointRequest("thing.measurepoint.post", ts,
		map[string]any{"Temp": 21.5, "Seq": map[string]any{"value": 7, "quality": 1}}))
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, reply.Code, reply.Message)

	var got []nodetest.Sample
	require.Eventually(t, func() bool { got = h.Query(t, `Temp{device="d1"}`, time.Time{}); return len(got) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, map[string]string{"__name__": "Temp", "point": "Temp", "org": "test", "site": "test-site", "product": "sensor", "device": "d1"}, got[0].Metric)
	require.Equal(t, 21.5, got[0].Float())
	q := h.Query(t, `Seq_quality{device="d1"}`, time.Time{})
	require.Len(t, q, 1)
	require.Equal(t, 1.0, q[0].Float())

	var latest struct {
		Points []struct {
			Point   string  `json:"point"`
			Value   float64 `json:"value"`
			Time    int64   `json:"time"`
			Quality int     `json:"quality"`
		} `json:"points"`
	}
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/devices/sensor/d1/latest", nil, &latest))
	require.Len(t, latest.Points, 2)
	require.Equal(t, "Seq", latest.Points[0].Point)
	require.Equal(t, 7.0, latest.Points[0].Value)
	require.Equal(t, 1, latest.Points[0].Quality)
	require.Equal(t, ts.UnixMilli(), latest.Points[1].Time)
}

func TestBadInputGetsErrorRepliesAndBrokerKeepsServing(t *testing.T) {
	h, d := setup(t)
	dev := connect(t, h, d)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topic := dev.PostTopic()
	big := `{"id":"big","method":"thing.measurepoint.post","params":{"measurepoints":{"Temp":1},"pad":"` + strings.Repeat("x", 300<<10) + `"}}`
	old := time.Now().Add(-8 * 24 * time.Hour).UnixMilli()
	cases := []struct {
		name, id, payload string
		code              int
	}{
		{"malformed JSON", "", `{"id":"1", not json`, api.CodeBadRequest},
		{"unknown point", "2", `{"id":"2","params":{"measurepoints":{"Nope":1}}}`, api.CodeUnknownPoint},
		{"wrong type", "3", `{"id":"3","params":{"measurepoints":{"Temp":"hot"}}}`, api.CodeInvalidValue},
		{"empty points", "4", `{"id":"4","params":{"measurepoints":{}}}`, api.CodeBadRequest},
		{"too old", "5", fmt.Sprintf(`{"id":"5","params":{"measurepoints":{"Temp":1},"time":%d}}`, old), api.CodeInvalidValue},
		{"oversize", "", big, api.CodeTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := dev.RequestRaw(ctx, topic, c.id, []byte(c.payload))
			require.NoError(t, err)
			require.Equal(t, c.code, r.Code, r.Message)
			require.NotEmpty(t, r.Message)
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		_, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: "sensor", DeviceKey: "d1", Secret: "wrong"})
		require.ErrorIs(t, err, device.ErrRefused)
	})
	t.Run("unknown device", func(t *testing.T) {
		_, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: "sensor", DeviceKey: "ghost", Secret: d.Secret})
		require.ErrorIs(t, err, device.ErrRefused)
	})
	t.Run("stale login timestamp", func(t *testing.T) {
		_, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: "sensor", DeviceKey: "d1", Secret: d.Secret,
			Now: func() time.Time { return time.Now().Add(-time.Hour) }})
		require.ErrorIs(t, err, device.ErrRefused)
	})
	t.Run("foreign topic disconnects", func(t *testing.T) {
		other := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d2", Site: "test-site"})
		od := connect(t, h, other)
		_ = od.PublishRaw(ctx, api.MeasurepointPostTopic("sensor", "d1"), 1, []byte(`{"id":"x","params":{"measurepoints":{"Temp":99}}}`))
		require.Eventually(t, func() bool { return !od.Connected() }, 5*time.Second, 10*time.Millisecond)
	})

	// The broker still serves, and none of the bad input was stored.
	r, err := dev.Request(ctx, topic, dev.MeasurepointRequest("thing.measurepoint.post", time.Now(), map[string]any{"Temp": 5.5}))
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, r.Code)
	require.Eventually(t, func() bool { return len(h.Query(t, `Temp{device="d1"}`, time.Time{})) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 1.0, h.Query(t, `count_over_time(Temp[1h])`, time.Time{})[0].Float())

	resp, err := http.Get(h.BaseURL + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	metrics := string(body)
	for _, reason := range []string{"bad_json", "unknown_point", "bad_value", "bad_time", "too_large", "no_points", "acl_publish"} {
		require.True(t, strings.Contains(metrics, `gale_broker_rejected_messages_total{reason="`+reason+`"} 1`), "no reject counted for %s", reason)
	}
	for _, reason := range []string{"bad_signature", "unknown_device", "stale_timestamp"} {
		require.True(t, strings.Contains(metrics, `gale_broker_rejected_connects_total{reason="`+reason+`"} 1`), "no connect reject counted for %s", reason)
	}
}

func TestResumeBackfillIsStored(t *testing.T) {
	h, d := setup(t)
	dev := connect(t, h, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A live sample first, so the TSDB head starts now; then two hours of backfill before it.
	require.NoError(t, dev.Post(ctx, time.Now(), map[string]any{"Temp": 1}))
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	var batch []map[string]any
	for i := range 120 {
		batch = append(batch, map[string]any{"measurepoints": map[string]any{"Temp": float64(100 + i)}, "time": base.Add(time.Duration(i) * time.Minute).UnixMilli()})
	}
	params, _ := json.Marshal(batch)
	r, err := dev.Request(ctx, api.MeasurepointResumeBatchTopic("sensor", "d1"), api.Request{ID: "b1", Method: "thing.measurepoint.resume.batch", Params: params})
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, r.Code, r.Message)
	at := base.Add(119 * time.Minute)
	require.Eventually(t, func() bool {
		s := h.Query(t, `count_over_time(Temp{device="d1"}[2h])`, at)
		return len(s) == 1 && s[0].Float() == 120
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 219.0, h.Query(t, `Temp{device="d1"}`, at)[0].Float())

	var hist struct {
		Values []struct {
			Time  int64   `json:"time"`
			Value float64 `json:"value"`
		} `json:"values"`
	}
	path := fmt.Sprintf("/api/v1/devices/sensor/d1/points/Temp/history?start=%d&end=%d&step=1h&agg=max", base.Unix()+3600, base.Unix()+7200)
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, path, nil, &hist))
	require.Len(t, hist.Values, 2)
	require.Equal(t, 160.0, hist.Values[0].Value) // max over (base, base+1h]
	require.Equal(t, 219.0, hist.Values[1].Value)
}

func TestRestartKeepsRegistryAndSamples(t *testing.T) {
	cfg := nodetest.Config(t)
	h := nodetest.Start(t, cfg)
	h.SetupProduct(t, "sensor", "Temp")
	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	dev := connect(t, h, d)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, dev.Post(ctx, time.Now(), map[string]any{"Temp": 42.0}))
	require.Eventually(t, func() bool { return len(h.Query(t, `Temp`, time.Time{})) == 1 }, 10*time.Second, 20*time.Millisecond)
	dev.Close()
	h.Stop()

	h2 := nodetest.Start(t, cfg)
	require.Equal(t, h.Token, h2.Token, "admin token survives restart")
	var got api.Device
	require.Equal(t, http.StatusOK, h2.Do(t, http.MethodGet, "/api/v1/devices/sensor/d1", nil, &got))
	require.Equal(t, d.Secret, got.Secret)
	s := h2.Query(t, `Temp`, time.Time{})
	require.Len(t, s, 1)
	require.Equal(t, 42.0, s[0].Float())
	var latest struct {
		Points []struct{ Value float64 } `json:"points"`
	}
	h2.Do(t, http.MethodGet, "/api/v1/devices/sensor/d1/latest", nil, &latest)
	require.Len(t, latest.Points, 1)
	require.Equal(t, 42.0, latest.Points[0].Value)
}

func requireTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	return nodetest.RequireTool(t, tool, pkg)
}

func TestMosquittoPubAndKcat(t *testing.T) {
	pub := requireTool(t, "mosquitto_pub", "mosquitto-clients")
	kcat := requireTool(t, "kcat", "kcat")
	h, d := setup(t)
	ts := time.Now().UnixMilli()
	cred := api.Sign("pub1", "sensor", "d1", d.Secret, ts)
	payload := fmt.Sprintf(`{"id":"1","version":"1.0","method":"thing.measurepoint.post","params":{"measurepoints":{"Temp":{"value":36.6,"quality":0}},"time":%d}}`, ts)
	out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port(h.MQTTAddr()), "-q", "1", "-i", cred.ClientID, "-u", cred.Username, "-P", cred.Password,
		"-t", api.MeasurepointPostTopic("sensor", "d1"), "-m", payload).CombinedOutput()
	require.NoError(t, err, "mosquitto_pub: %s", out)
	require.Eventually(t, func() bool {
		s := h.Query(t, `Temp{device="d1",site="test-site"}`, time.Time{})
		return len(s) == 1 && s[0].Float() == 36.6
	}, 10*time.Second, 20*time.Millisecond)

	bad := api.Sign("pub2", "sensor", "d1", "not-the-secret", ts)
	out, err = exec.Command(pub, "-h", "127.0.0.1", "-p", port(h.MQTTAddr()), "-q", "1", "-i", bad.ClientID, "-u", bad.Username, "-P", bad.Password,
		"-t", api.MeasurepointPostTopic("sensor", "d1"), "-m", payload).CombinedOutput()
	require.Error(t, err, "a wrong password must be refused")
	require.Contains(t, strings.ToLower(string(out)), "not authori")

	out, err = exec.Command(kcat, "-C", "-b", h.Node.KafkaAddrs()[0], "-t", api.TopicTelemetry, "-o", "beginning", "-e", "-q",
		"-f", "%k %S\n").CombinedOutput()
	require.NoError(t, err, "kcat: %s", out)
	require.Contains(t, string(out), "sensor/d1 ")
	// The value is the binary record: decode it and find the sample.
	out, err = exec.Command(kcat, "-C", "-b", h.Node.KafkaAddrs()[0], "-t", api.TopicTelemetry, "-o", "beginning", "-e", "-q", "-c", "1",
		"-f", "%s").Output()
	require.NoError(t, err)
	var rec api.Record
	require.NoError(t, api.DecodeRecord(out, &rec))
	require.Equal(t, "d1", rec.Device)
	require.Equal(t, "test-site", rec.Site)
	require.Equal(t, []api.Sample{{Point: "Temp", Time: ts, Value: 36.6, HasQuality: true}}, rec.Samples)
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

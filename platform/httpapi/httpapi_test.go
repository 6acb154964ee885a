package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

func TestAuthentication(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", "Basic abc"} {
		req, _ := http.NewRequest(http.MethodGet, h.BaseURL+"/api/v1/products", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, auth)
		require.NotEmpty(t, body["error"])
	}
	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(h.BaseURL + open)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, open)
	}
	resp, err := http.Get(h.BaseURL + "/prometheus/api/v1/labels")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the query API needs the token too")
}

func TestRegistryAPIErrors(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	h.SetupProduct(t, "sensor", "T")
	var e map[string]string
	cases := []struct {
		method, path string
		body         any
		status       int
	}{
		{"GET", "/api/v1/products/ghost", nil, 404},
		{"POST", "/api/v1/products", api.Product{Key: "sensor"}, 409},
		{"POST", "/api/v1/products", map[string]any{"productKey": "x", "colour": "red"}, 400},
		{"POST", "/api/v1/products", api.Product{Key: "bad key"}, 400},
		{"PUT", "/api/v1/products/sensor", api.Product{Key: "other"}, 400},
		{"GET", "/api/v1/devices/sensor/ghost", nil, 404},
		{"POST", "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "d", "site": "nowhere"}, 400},
		{"PATCH", "/api/v1/devices/sensor/ghost", map[string]any{"name": "x"}, 404},
		{"DELETE", "/api/v1/devices/sensor/ghost", nil, 404},
		{"POST", "/api/v1/assets", api.Asset{ID: "s", Kind: "planet"}, 400},
		{"GET", "/api/v1/devices/sensor/ghost/latest", nil, 404},
		{"GET", "/api/v1/assets/nowhere/latest", nil, 404},
	}
	for _, c := range cases {
		e = nil
		require.Equal(t, c.status, h.Do(t, c.method, c.path, c.body, &e), "%s %s", c.method, c.path)
		require.NotEmpty(t, e["error"], "%s %s", c.method, c.path)
	}

	d := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "test-site"})
	require.Equal(t, http.StatusConflict, h.Do(t, "DELETE", "/api/v1/products/sensor", nil, &e))
	for _, q := range []string{"start=yesterday", "end=1&start=2", "agg=median", "step=-1s", "step=1ms&start=0&end=100000"} {
		e = nil
		require.Equal(t, http.StatusBadRequest, h.Do(t, "GET", "/api/v1/devices/sensor/d1/points/T/history?"+q, nil, &e), q)
		require.NotEmpty(t, e["error"], q)
	}
	var got api.Device
	require.Equal(t, http.StatusOK, h.Do(t, "PATCH", "/api/v1/devices/sensor/d1", map[string]any{"enabled": false}, &got))
	require.False(t, got.Enabled)
	require.Equal(t, d.Secret, got.Secret)
	require.Equal(t, http.StatusNoContent, h.Do(t, "DELETE", "/api/v1/devices/sensor/d1", nil, nil))
	require.Equal(t, http.StatusNoContent, h.Do(t, "DELETE", "/api/v1/products/sensor", nil, nil))
}

func TestPrometheusAPIErrorsAndMetadata(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	for path, want := range map[string]int{
		"/prometheus/api/v1/query?query=sum(":                          400,
		"/prometheus/api/v1/query_range?query=up&start=2&end=1&step=1": 400,
		"/prometheus/api/v1/labels":                                    200,
		"/prometheus/api/v1/label/__name__/values":                     200,
		"/prometheus/api/v1/series?match[]=up":                         200,
		"/prometheus/api/v1/status/buildinfo":                          200,
		"/prometheus/api/v1/query?query=1%2B1":                         200,
	} {
		req, _ := http.NewRequest(http.MethodGet, h.BaseURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+h.Token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, "%s: %s", path, b)
		if want == 200 {
			require.True(t, strings.Contains(string(b), `"status":"success"`), "%s: %s", path, b)
		} else {
			require.True(t, strings.Contains(string(b), `"status":"error"`), "%s: %s", path, b)
		}
	}
}

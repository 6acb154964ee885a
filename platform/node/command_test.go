package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

// turbineHandler answers like a turbine: setPowerLimit echoes the limit, stop refuses.
func turbineHandler(calls chan<- device.ServiceCall) device.ServiceHandler {
	return func(c device.ServiceCall) (int, string, any) {
		calls <- c
		switch c.Service {
		case "setPowerLimit":
			var p struct{ Limit float64 }
			_ = json.Unmarshal(c.Params, &p)
			return api.CodeOK, "", map[string]float64{"limit": p.Limit}
		case "stop":
			return api.CodeInvalidValue, "turbine is in maintenance", nil
		}
		return api.CodeOK, "", nil
	}
}

func connectWith(t *testing.T, h *nodetest.Harness, d api.Device, calls chan device.ServiceCall) *device.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dev, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), ProductKey: d.ProductKey, DeviceKey: d.DeviceKey, Secret: d.Secret,
		OnService: turbineHandler(calls)})
	require.NoError(t, err)
	t.Cleanup(dev.Close)
	return dev
}

func TestCommandRoundTrips(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	require.NoError(t, node.SeedDemo(context.Background(), h.Node.Registry, node.Demo{Turbines: 3}))
	var wt01, wt02, wt03, gw01 api.Device
	h.Do(t, "GET", "/api/v1/devices/wind-turbine/WT01", nil, &wt01)
	h.Do(t, "GET", "/api/v1/devices/wind-turbine/WT02", nil, &wt02)
	h.Do(t, "GET", "/api/v1/devices/wind-turbine/WT03", nil, &wt03)
	h.Do(t, "GET", "/api/v1/devices/modbus-gateway/GW01", nil, &gw01)
	calls := make(chan device.ServiceCall, 10)
	connectWith(t, h, wt01, calls)

	t.Run("synchronous with output", func(t *testing.T) {
		var c api.Command
		require.Equal(t, http.StatusOK, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/setPowerLimit", map[string]any{"limit": 1500}, &c))
		require.Equal(t, api.CommandSucceeded, c.Status)
		require.JSONEq(t, `{"limit":1500}`, string(c.Output))
		call := <-calls
		require.Equal(t, "WT01", call.DeviceKey)
		require.JSONEq(t, `{"limit":1500}`, string(call.Params))
	})
	t.Run("device refuses", func(t *testing.T) {
		var c api.Command
		require.Equal(t, http.StatusBadGateway, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/stop", nil, &c))
		require.Equal(t, api.CommandFailed, c.Status)
		require.Equal(t, api.CodeInvalidValue, c.Code)
		require.Equal(t, "turbine is in maintenance", c.Message)
		<-calls
	})
	t.Run("bad requests", func(t *testing.T) {
		var e map[string]string
		require.Equal(t, http.StatusNotFound, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/selfDestruct", nil, &e))
		require.Equal(t, http.StatusNotFound, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT99/services/stop", nil, &e))
		require.Equal(t, http.StatusBadRequest, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/setPowerLimit", map[string]any{"limit": "lots"}, &e))
		require.Equal(t, http.StatusBadRequest, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/setPowerLimit", map[string]any{"speed": 1}, &e))
		require.Equal(t, http.StatusBadRequest, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/stop?ttl=forever", nil, &e))
		require.Equal(t, http.StatusNotFound, h.Do(t, "GET", "/api/v1/commands/nope", nil, &e))
	})
	t.Run("offline device gets it on reconnect within the TTL", func(t *testing.T) {
		var accepted map[string]string
		require.Equal(t, http.StatusAccepted, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT02/services/setPowerLimit?async=true&ttl=1m", map[string]any{"limit": 900}, &accepted))
		id := accepted["commandId"]
		var c api.Command
		h.Do(t, "GET", "/api/v1/commands/"+id, nil, &c)
		require.Equal(t, api.CommandQueued, c.Status)
		connectWith(t, h, wt02, calls)
		require.Eventually(t, func() bool {
			h.Do(t, "GET", "/api/v1/commands/"+id, nil, &c)
			return c.Status == api.CommandSucceeded
		}, 10*time.Second, 20*time.Millisecond)
		require.JSONEq(t, `{"limit":900}`, string(c.Output))
		require.Equal(t, "WT02", (<-calls).DeviceKey)
	})
	t.Run("expires when the device stays away", func(t *testing.T) {
		var c api.Command
		require.Equal(t, http.StatusGatewayTimeout, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT03/services/start?ttl=1s&timeout=5s", nil, &c))
		require.Equal(t, api.CommandExpired, c.Status)
	})
	t.Run("through a gateway to its sub-device", func(t *testing.T) {
		g := connectWith(t, h, gw01, calls)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sub := api.SignSubDevice("wind-turbine", "WT03", wt03.Secret, time.Now().UnixMilli())
		require.NoError(t, g.AddTopo(ctx, []api.SubDeviceAuth{sub}))
		failed, err := g.LoginSubDevices(ctx, []api.SubDeviceAuth{sub})
		require.NoError(t, err)
		require.Empty(t, failed)
		var c api.Command
		require.Equal(t, http.StatusOK, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT03/services/setPowerLimit", map[string]any{"limit": 2000}, &c))
		require.JSONEq(t, `{"limit":2000}`, string(c.Output))
		call := <-calls
		require.Equal(t, "WT03", call.DeviceKey, "the gateway's handler is told which sub-device is called")
	})
}

// Disabling a device through the API drops its session at once, and its
// commands are refused with 409.
func TestDisabledDeviceLosesSessionAndCommands(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	require.NoError(t, node.SeedDemo(context.Background(), h.Node.Registry, node.Demo{Turbines: 1}))
	var wt01 api.Device
	h.Do(t, "GET", "/api/v1/devices/wind-turbine/WT01", nil, &wt01)
	dev := connectWith(t, h, wt01, make(chan device.ServiceCall, 10))
	require.Equal(t, http.StatusOK, h.Do(t, "PATCH", "/api/v1/devices/wind-turbine/WT01", map[string]any{"enabled": false}, nil))
	require.Eventually(t, func() bool { return !dev.Connected() }, 5*time.Second, 10*time.Millisecond)
	var body map[string]any
	require.Equal(t, http.StatusConflict, h.Do(t, "POST", "/api/v1/devices/wind-turbine/WT01/services/stop", map[string]any{}, &body))
	require.Contains(t, body["error"], "disabled")
}

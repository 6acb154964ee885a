package node_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/node/nodetest"
)

func TestGatewayActsForLoggedInSubDevices(t *testing.T) {
	h := nodetest.Start(t, nodetest.Config(t))
	h.SetupProduct(t, "sensor", "Temp")
	gw := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "gw", Site: "test-site"})
	sub := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "sub1", Site: "test-site"})
	other := h.CreateDevice(t, api.Device{ProductKey: "sensor", DeviceKey: "sub2", Site: "test-site"})
	g := connect(t, h, gw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now().UnixMilli()

	require.Error(t, g.AddTopo(ctx, []api.SubDeviceAuth{api.SignSubDevice("sensor", "sub1", "wrong", now)}), "a wrong sub-device signature is refused")
	failed, err := g.LoginSubDevices(ctx, []api.SubDeviceAuth{api.SignSubDevice("sensor", "sub1", sub.Secret, now)})
	require.NoError(t, err)
	require.Len(t, failed, 1, "login before topo/add fails")

	require.NoError(t, g.AddTopo(ctx, []api.SubDeviceAuth{api.SignSubDevice("sensor", "sub1", sub.Secret, now)}))
	var d api.Device
	require.Equal(t, http.StatusOK, h.Do(t, http.MethodGet, "/api/v1/devices/sensor/sub1", nil, &d))
	require.Equal(t, "gw", d.GatewayDeviceKey)

	failed, err = g.LoginSubDevices(ctx, []api.SubDeviceAuth{
		api.SignSubDevice("sensor", "sub1", sub.Secret, now),
		api.SignSubDevice("sensor", "sub2", other.Secret, now), // not in the topology
	})
	require.NoError(t, err)
	require.Len(t, failed, 1)
	require.Equal(t, "sub2", failed[0].DeviceKey)
	require.NotEmpty(t, failed[0].Message)

	require.NoError(t, g.PostFor(ctx, "sensor", "sub1", time.Now(), map[string]any{"Temp": 12.5}))
	require.Eventually(t, func() bool {
		s := h.Query(t, `Temp{device="sub1"}`, time.Time{})
		return len(s) == 1 && s[0].Float() == 12.5
	}, 10*time.Second, 20*time.Millisecond)

	// Acting for a sub-device that is not logged in violates the ACL.
	_ = g.PostFor(ctx, "sensor", "sub2", time.Now(), map[string]any{"Temp": 1})
	require.Eventually(t, func() bool { return !g.Connected() }, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, h.Query(t, `Temp{device="sub2"}`, time.Time{}))
}

package broker

import (
	"context"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/registry"
)

// Disabling or deleting a device, or rotating its secret, here or on
// another node (through the registry change log), drops its session at
// once, without its Will, and the old secret logs in no more.
func TestRevokedDeviceLosesItsSession(t *testing.T) {
	off := false
	cases := []struct {
		name   string
		revoke func(t *testing.T, reg *registry.Registry, d api.Device)
	}{
		{name: "disabled", revoke: func(t *testing.T, reg *registry.Registry, d api.Device) {
			_, err := reg.PatchDevice(context.Background(), d.ProductKey, d.DeviceKey, registry.DevicePatch{Enabled: &off})
			require.NoError(t, err)
		}},
		{name: "deleted", revoke: func(t *testing.T, reg *registry.Registry, d api.Device) {
			require.NoError(t, reg.DeleteDevice(context.Background(), d.ProductKey, d.DeviceKey))
		}},
		{name: "disabled on another node", revoke: func(t *testing.T, reg *registry.Registry, d api.Device) {
			d.Enabled = false
			require.NoError(t, reg.Apply(context.Background(), api.RegistryChange{Kind: api.ChangeDevice, Key: d.ProductKey + "/" + d.DeviceKey, Origin: "node-2", Device: &d}))
		}},
		{name: "secret rotated", revoke: func(t *testing.T, reg *registry.Registry, d api.Device) {
			_, err := reg.RotateSecret(context.Background(), d.ProductKey, d.DeviceKey)
			require.NoError(t, err)
		}},
		{name: "secret rotated on another node", revoke: func(t *testing.T, reg *registry.Registry, d api.Device) {
			d.Secret = "rotated-on-node-2"
			require.NoError(t, reg.Apply(context.Background(), api.RegistryChange{Kind: api.ChangeDevice, Key: d.ProductKey + "/" + d.DeviceKey, Origin: "node-2", Device: &d}))
		}},
		{name: "deleted on another node", revoke: func(t *testing.T, reg *registry.Registry, d api.Device) {
			require.NoError(t, reg.Apply(context.Background(), api.RegistryChange{Kind: api.ChangeDevice, Key: d.ProductKey + "/" + d.DeviceKey, Origin: "node-2", Deleted: true}))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := startRig(t, nil)
			d := r.device(t, "d1")
			will := api.EventPostTopic(testProduct, "d1", "alarm")
			wills := make(chan []byte, 1)
			require.NoError(t, r.b.server.Subscribe(will, 1, func(_ *mqttClient, _ subscription, pk packet) { wills <- pk.Payload }))
			cl := r.mustDial(t, d, func(o *paho.ClientOptions) { o.SetWill(will, `{"id":"w"}`, 1, false) })
			require.Eventually(t, func() bool { return r.b.Online(testProduct, "d1") }, 5*time.Second, 5*time.Millisecond)

			c.revoke(t, r.reg, d)
			require.Eventually(t, func() bool { return !cl.IsConnectionOpen() && !r.b.Online(testProduct, "d1") }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, 1.0, r.rejected(true, "session_revoked"))
			select {
			case m := <-wills:
				t.Fatalf("a revoked device's Will was published: %s", m)
			case <-time.After(200 * time.Millisecond):
			}
			_, err := r.dial(t, d, "", nil)
			require.Error(t, err, "and it cannot log in again")
		})
	}
}

// A sub-device that is disabled, or moved to another gateway, is logged
// out of its gateway's session: no more service calls reach it there.
func TestRevokedSubDeviceIsLoggedOut(t *testing.T) {
	r := startRig(t, nil)
	sub := r.device(t, "sub")
	calls := make(chan device.ServiceCall, 10)
	ctx, g := r.sdk(t, r.device(t, "gw"), func(c device.ServiceCall) (int, string, any) { calls <- c; return api.CodeOK, "", nil })
	auth := api.SignSubDevice(testProduct, "sub", sub.Secret, time.Now().UnixMilli())
	require.NoError(t, g.AddTopo(ctx, []api.SubDeviceAuth{auth}))
	failed, err := g.LoginSubDevices(ctx, []api.SubDeviceAuth{auth})
	require.NoError(t, err)
	require.Empty(t, failed)
	require.True(t, r.b.Online(testProduct, "sub"))
	require.NoError(t, r.b.Publish(api.ServiceTopic(testProduct, "sub", "stop"), []byte(`{"id":"1","params":{}}`), 1))
	select {
	case c := <-calls:
		require.Equal(t, "sub", c.DeviceKey)
	case <-time.After(5 * time.Second):
		t.Fatal("the logged-in sub-device got no service call")
	}
	select {
	case rep := <-r.rec.replies:
		require.Contains(t, rep, testProduct+"/sub/stop ")
	case <-time.After(5 * time.Second):
		t.Fatal("no reply from the sub-device")
	}

	off := false
	_, err = r.reg.PatchDevice(ctx, testProduct, "sub", registry.DevicePatch{Enabled: &off})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !r.b.Online(testProduct, "sub") }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, r.b.Publish(api.ServiceTopic(testProduct, "sub", "stop"), []byte(`{"id":"2","params":{}}`), 1))
	select {
	case c := <-calls:
		t.Fatalf("a disabled sub-device's gateway still gets its calls: %+v", c)
	case <-time.After(300 * time.Millisecond):
	}
	require.True(t, g.Connected(), "the gateway keeps its own session")
	require.False(t, r.b.hook.mayPublish(r.b.hook.byDeviceSession(testProduct, "gw"), api.MeasurepointPostTopic(testProduct, "sub")))
}

package broker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// Sub-device signatures carry a timestamp within the login skew, and each
// is accepted once for topo/add and once for login.
func TestSubDeviceSignaturesAreFreshAndOneTime(t *testing.T) {
	r := startRig(t, nil)
	sub := r.device(t, "sub")
	ctx, g := r.sdk(t, r.device(t, "gw"), nil)

	now := time.Now()
	for _, c := range []struct {
		name string
		ts   int64
	}{
		{"an hour old", now.Add(-time.Hour).UnixMilli()},
		{"an hour ahead", now.Add(time.Hour).UnixMilli()},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.rejected(false, "stale_timestamp")
			stale := api.SignSubDevice(testProduct, "sub", sub.Secret, c.ts)
			require.Error(t, g.AddTopo(ctx, []api.SubDeviceAuth{stale}))
			failed, err := g.LoginSubDevices(ctx, []api.SubDeviceAuth{stale})
			require.NoError(t, err)
			require.Len(t, failed, 1)
			require.Equal(t, before+2, r.rejected(false, "stale_timestamp"))
		})
	}
	t.Run("not a number", func(t *testing.T) {
		bad := api.SignSubDevice(testProduct, "sub", sub.Secret, now.UnixMilli())
		bad.Timestamp = "soon"
		require.Error(t, g.AddTopo(ctx, []api.SubDeviceAuth{bad}))
	})

	auth := api.SignSubDevice(testProduct, "sub", sub.Secret, now.UnixMilli())
	require.NoError(t, g.AddTopo(ctx, []api.SubDeviceAuth{auth}))
	require.Error(t, g.AddTopo(ctx, []api.SubDeviceAuth{auth}), "a replayed topo/add is refused")
	failed, err := g.LoginSubDevices(ctx, []api.SubDeviceAuth{auth})
	require.NoError(t, err)
	require.Empty(t, failed, "the topo/add signature logs in once")
	failed, err = g.LoginSubDevices(ctx, []api.SubDeviceAuth{auth})
	require.NoError(t, err)
	require.Len(t, failed, 1, "a replayed login is refused")
	require.Equal(t, 2.0, r.rejected(false, "replay"))

	// A refused topo/add uses none of its signatures: they work one by one.
	fresh := api.SignSubDevice(testProduct, "sub", sub.Secret, now.UnixMilli()+1)
	ghost := api.SignSubDevice(testProduct, "ghost", "x", now.UnixMilli()+1)
	require.Error(t, g.AddTopo(ctx, []api.SubDeviceAuth{fresh, ghost}))
	require.NoError(t, g.AddTopo(ctx, []api.SubDeviceAuth{fresh}))
}

// Event times must lie within the samples' window.
func TestEventTimeWindow(t *testing.T) {
	r := startRig(t, nil)
	ctx, dev := r.sdk(t, r.device(t, "d1"), nil)
	now := time.Now()
	cases := []struct {
		name string
		time int64
		code int
	}{
		{"now", now.UnixMilli(), api.CodeOK},
		{"unset", 0, api.CodeOK},
		{"older than maxSampleAge", now.Add(-8 * 24 * time.Hour).UnixMilli(), api.CodeInvalidValue},
		{"beyond maxSampleFuture", now.Add(2 * time.Hour).UnixMilli(), api.CodeInvalidValue},
		{"negative", -1, api.CodeInvalidValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			params, _ := json.Marshal(map[string]any{"time": c.time, "value": map[string]int{"code": 7}})
			id := dev.NewID()
			rep, err := dev.Request(ctx, api.EventPostTopic(testProduct, "d1", "alarm"), api.Request{ID: id, Method: "thing.event.alarm.post", Params: params})
			require.NoError(t, err)
			require.Equal(t, c.code, rep.Code, rep.Message)
		})
	}
	require.Equal(t, 3.0, r.rejected(false, "bad_time"))
	require.Equal(t, 2, r.prod.count())
}

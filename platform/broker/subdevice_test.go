package broker

import (
	"context"
	"encoding/json"
	"fmt"
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

// A gateway carries only sub-devices of its own org: topo/add and login of
// another org's sub-device are refused (and counted) even when the gateway
// signs for it with its secret, and so is a batch entry for one that an
// admin placed behind the gateway. Every record a gateway posts carries its
// device's org.
func TestSubDeviceOfAnotherOrgIsRefused(t *testing.T) {
	r := startRig(t, nil)
	ctx := context.Background()
	_, err := r.reg.PutAsset(ctx, api.Asset{ID: "rival", Kind: api.AssetOrg})
	require.NoError(t, err)
	foreign, err := r.reg.CreateDevice(ctx, api.Device{ProductKey: testProduct, DeviceKey: "foreign", Org: "rival", Enabled: true})
	require.NoError(t, err)
	sub := r.device(t, "sub")
	gctx, g := r.sdk(t, r.device(t, "gw"), nil)

	now := time.Now().UnixMilli()
	require.ErrorContains(t, g.AddTopo(gctx, []api.SubDeviceAuth{api.SignSubDevice(testProduct, "foreign", foreign.Secret, now)}), "another org")
	require.Equal(t, 1.0, r.rejected(false, "subdevice_org"))
	d, _ := r.reg.Device(testProduct, "foreign")
	require.Empty(t, d.GatewayDeviceKey, "the refused topo/add changed nothing")

	// Placed behind the gateway by hand, it still cannot log in through it.
	require.NoError(t, r.reg.SetGateway(ctx, testProduct, "foreign", testProduct, "gw"))
	failed, err := g.LoginSubDevices(gctx, []api.SubDeviceAuth{api.SignSubDevice(testProduct, "foreign", foreign.Secret, now+1)})
	require.NoError(t, err)
	require.Len(t, failed, 1)
	require.Contains(t, failed[0].Message, "another org")
	require.Equal(t, 2.0, r.rejected(false, "subdevice_org"))
	params := fmt.Sprintf(`[{"productKey":%q,"deviceKey":"foreign","measurepoints":{"Temp":1}}]`, testProduct)
	rep, err := g.Request(gctx, api.MeasurepointPostBatchTopic(testProduct, "gw"), api.Request{ID: g.NewID(), Method: "thing.measurepoint.post.batch", Params: []byte(params)})
	require.NoError(t, err)
	require.Equal(t, api.CodeUnauthorized, rep.Code, rep.Message)
	require.Zero(t, r.prod.count())
	// Even a session holding it (which the login refuses) posts nothing for it.
	s := &session{pk: testProduct, dk: "gw", subs: map[string]string{testProduct + "/foreign": "secret"}}
	_, _, err = r.b.hook.postBatch(s, "org", &api.Request{ID: "1", Params: []byte(params)}, nil, fuzzWindow())
	var rej *rejection
	require.ErrorAs(t, err, &rej)
	require.Equal(t, "subdevice_org", rej.reason)

	// Its own org's sub-device works, and every record carries the org.
	auth := api.SignSubDevice(testProduct, "sub", sub.Secret, now)
	require.NoError(t, g.AddTopo(gctx, []api.SubDeviceAuth{auth}))
	failed, err = g.LoginSubDevices(gctx, []api.SubDeviceAuth{auth})
	require.NoError(t, err)
	require.Empty(t, failed)
	params = fmt.Sprintf(`[{"productKey":%[1]q,"deviceKey":"sub","measurepoints":{"Temp":1}},{"productKey":%[1]q,"deviceKey":"gw","measurepoints":{"Temp":2}}]`, testProduct)
	rep, err = g.Request(gctx, api.MeasurepointPostBatchTopic(testProduct, "gw"), api.Request{ID: g.NewID(), Method: "thing.measurepoint.post.batch", Params: []byte(params)})
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, rep.Code, rep.Message)
	require.NoError(t, g.PostFor(gctx, testProduct, "sub", time.Now(), map[string]any{"Temp": 3}))
	require.NoError(t, g.Publish(gctx, g.ResumeTopic(), 1, g.MeasurepointRequest("thing.measurepoint.resume", time.Now(), map[string]any{"Temp": 4})))
	ev, _ := json.Marshal(map[string]any{"value": map[string]int{"code": 7}})
	rep, err = g.Request(gctx, api.EventPostTopic(testProduct, "sub", "alarm"), api.Request{ID: g.NewID(), Method: "thing.event.alarm.post", Params: ev})
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, rep.Code, rep.Message)

	require.Eventually(t, func() bool { return r.prod.count() == 5 }, 5*time.Second, 10*time.Millisecond)
	r.prod.mu.Lock()
	defer r.prod.mu.Unlock()
	for _, m := range r.prod.msgs {
		var org string
		if m.Topic == api.TopicEvents {
			var e api.DeviceEvent
			require.NoError(t, json.Unmarshal(m.Value, &e))
			org = e.Org
		} else {
			var rec api.Record
			require.NoError(t, api.DecodeRecord(m.Value, &rec))
			org = rec.Org
		}
		require.Equal(t, "org", org, "record of %s on %s", m.Key, m.Topic)
	}
}

package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// A gateway's thing.measurepoint.post.batch becomes one live record per
// entry, in order, keyed by its device; an entry for a device the gateway
// may not publish for (not logged in through it) refuses the whole batch
// and nothing reaches Kafka.
func TestPostBatchOfSubDevices(t *testing.T) {
	r := startRig(t, nil)
	sub := r.device(t, "sub")
	r.device(t, "other")
	ctx, g := r.sdk(t, r.device(t, "gw"), nil)
	auth := api.SignSubDevice(testProduct, "sub", sub.Secret, time.Now().UnixMilli())
	require.NoError(t, g.AddTopo(ctx, []api.SubDeviceAuth{auth}))
	failed, err := g.LoginSubDevices(ctx, []api.SubDeviceAuth{auth})
	require.NoError(t, err)
	require.Empty(t, failed)

	now := time.Now().UnixMilli()
	entry := func(dk string, i int) string {
		return fmt.Sprintf(`{"productKey":%q,"deviceKey":%q,"measurepoints":{"Temp":%d},"time":%d}`, testProduct, dk, i, now-int64(10-i))
	}
	topic := api.MeasurepointPostBatchTopic(testProduct, "gw")
	params := "[" + entry("sub", 1) + "," + entry("gw", 2) + "," + entry("sub", 3) + "]"
	rep, err := g.Request(ctx, topic, api.Request{ID: "1", Version: "1.0", Method: "thing.measurepoint.post.batch", Params: []byte(params)})
	require.NoError(t, err)
	require.Equal(t, api.CodeOK, rep.Code, rep.Message)
	require.Equal(t, 3, r.prod.count())
	want := []struct {
		dk string
		v  float64
	}{{"sub", 1}, {"gw", 2}, {"sub", 3}}
	r.prod.mu.Lock()
	for i, m := range r.prod.msgs {
		var rec api.Record
		require.NoError(t, api.DecodeRecord(m.Value, &rec))
		require.Equal(t, testProduct+"/"+want[i].dk, string(m.Key))
		require.Equal(t, api.RecordPost, rec.Kind, "live, so rules see it")
		require.Equal(t, want[i].dk, rec.Device)
		require.Len(t, rec.Samples, 1)
		require.Equal(t, want[i].v, rec.Samples[0].Value)
		require.Equal(t, now-int64(10-want[i].v), rec.Samples[0].Time)
	}
	r.prod.mu.Unlock()

	for name, tc := range map[string]struct {
		params string
		code   int
		reason string
	}{
		"not logged in":  {"[" + entry("sub", 4) + "," + entry("other", 5) + "]", api.CodeUnauthorized, "acl_publish"},
		"unknown point":  {`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{"Nope":1}}]`, api.CodeUnknownPoint, "unknown_point"},
		"no device":      {`[{"measurepoints":{"Temp":1}}]`, api.CodeBadRequest, "bad_json"},
		"object":         {entry("sub", 6), api.CodeBadRequest, "bad_json"},
		"empty":          {`[]`, api.CodeBadRequest, "no_points"},
		"no points":      {`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{}}]`, api.CodeBadRequest, "no_points"},
		"outside window": {`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{"Temp":1},"time":1}]`, api.CodeInvalidValue, "bad_time"},
	} {
		t.Run(name, func(t *testing.T) {
			before := r.rejected(false, tc.reason)
			rep, err := g.Request(ctx, topic, api.Request{ID: g.NewID(), Version: "1.0", Method: "thing.measurepoint.post.batch", Params: []byte(tc.params)})
			require.NoError(t, err)
			require.Equal(t, tc.code, rep.Code, rep.Message)
			require.Equal(t, before+1, r.rejected(false, tc.reason))
			require.Equal(t, 3, r.prod.count(), "nothing of a refused batch reaches Kafka")
		})
	}
}

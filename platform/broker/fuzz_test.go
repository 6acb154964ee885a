package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// fuzzModel is a registry with a product whose model has points of every type and an event.
func fuzzModel(t testing.TB) (*registry.Registry, *registry.Model) {
	lo, hi := -40.0, 85.0
	reg := testRegistry(t, api.ThingModel{
		Measurepoints: []api.Measurepoint{
			{ID: "T", Type: api.TypeFloat, Min: &lo, Max: &hi}, {ID: "On", Type: api.TypeBool}, {ID: "N", Type: api.TypeInt}, {ID: "M", Type: api.TypeEnum},
		},
		Events: []api.Event{{ID: "alarm", Severity: "major"}},
	})
	m, ok := reg.Model(testProduct)
	require.True(t, ok)
	return reg, m
}

func fuzzWindow() window {
	now := time.UnixMilli(1_732_550_400_000)
	return window{now: now.UnixMilli(), oldest: now.Add(-7 * 24 * time.Hour).UnixMilli(), newest: now.Add(time.Hour).UnixMilli()}
}

// FuzzValidateSamples checks measurepoint post, resume and resume/batch params against a thing model.
func FuzzValidateSamples(f *testing.F) {
	for _, s := range []string{
		`{"measurepoints":{"T":21.5,"On":true,"N":3,"M":2},"time":1732550400000}`,
		`[{"measurepoints":{"T":{"value":1,"quality":0}},"time":1732550300000},{"measurepoints":{"N":1}}]`,
		`{"measurepoints":{"T":{"value":1,"quality":300}}}`,
		`{"measurepoints":{"T":"hot"}}`, `{"measurepoints":{}}`, `[]`, `null`, `{"measurepoints":{"T":1e999}}`,
		`{"measurepoints":{"Nope":1},"time":-1}`, `[{"measurepoints":{"T":1},"time":9223372036854775807}]`,
	} {
		f.Add([]byte(s))
	}
	_, model := fuzzModel(f)
	win := fuzzWindow()
	f.Fuzz(func(t *testing.T, params []byte) {
		rec := api.Record{Received: win.now}
		code, reason, err := validateSamples(&rec, params, model, win)
		if err != nil {
			require.NotZero(t, code)
			require.NotEmpty(t, reason)
			return
		}
		require.NotEmpty(t, rec.Samples)
		for _, s := range rec.Samples {
			_, known := model.Point(s.Point)
			require.True(t, known, s.Point)
			require.NoError(t, win.check(s.Time))
			if s.HasQuality {
				require.LessOrEqual(t, s.Quality, uint8(127))
			}
		}
		// What was accepted encodes and decodes.
		b := api.AppendRecord(nil, &rec)
		require.NotEmpty(t, b)
	})
}

// FuzzValidateEvent checks event post params against a thing model.
func FuzzValidateEvent(f *testing.F) {
	f.Add("alarm", []byte(`{"time":1732550400000,"value":{"code":7}}`))
	f.Add("alarm", []byte(`{"time":1}`))
	f.Add("alarm", []byte(`{"value":[1,2,3]}`))
	f.Add("nope", []byte(`{}`))
	f.Add("alarm", []byte(`{"time":"x"}`))
	f.Add("alarm", []byte(``))
	_, model := fuzzModel(f)
	win := fuzzWindow()
	dev := api.Device{ProductKey: testProduct, DeviceKey: "d1", Org: "org"}
	f.Fuzz(func(t *testing.T, id string, params []byte) {
		b, code, reason, err := validateEvent(dev, id, params, model, win)
		if err != nil {
			require.NotZero(t, code)
			require.NotEmpty(t, reason)
			return
		}
		var ev api.DeviceEvent
		require.NoError(t, json.Unmarshal(b, &ev))
		require.Equal(t, "alarm", ev.Event)
		require.NoError(t, win.check(ev.Time))
	})
}

// FuzzSubDeviceRequest feeds a gateway's topo/add, combine/login[/batch]
// and logout params to the broker's handler: no panic, and nothing but a
// correctly signed, fresh, registered sub-device is ever logged in.
func FuzzSubDeviceRequest(f *testing.F) {
	reg, _ := fuzzModel(f)
	ctx := context.Background()
	for _, dk := range []string{"gw", "sub"} {
		_, err := reg.CreateDevice(ctx, api.Device{ProductKey: testProduct, DeviceKey: dk, Org: "org", Enabled: true, Secret: "s3cret"})
		require.NoError(f, err)
	}
	now := time.Now()
	good := api.SignSubDevice(testProduct, "sub", "s3cret", now.UnixMilli())
	one, _ := json.Marshal(good)
	batch, _ := json.Marshal(api.SubDeviceLoginBatch{SubDevices: []api.SubDeviceAuth{good}})
	list, _ := json.Marshal([]api.SubDeviceAuth{good})
	for kind, params := range map[api.Kind][]byte{
		api.KindTopoAdd: list, api.KindSubLogin: one, api.KindSubLoginBatch: batch, api.KindSubLogout: []byte(`{"productKey":"sensor","deviceKey":"sub"}`),
	} {
		f.Add(uint8(kind), params)
	}
	f.Add(uint8(api.KindSubLogin), []byte(`{"productKey":"sensor","deviceKey":"sub","timestamp":"1","sign":""}`))
	f.Add(uint8(api.KindSubLoginBatch), []byte(`{"subDevices":[null,{}]}`))
	server := mqtt.New(&mqtt.Options{Logger: quietTestLogger()})
	h := newHook(DefaultConfig(), server, reg, nil, quietTestLogger(), newMetrics(prometheusRegistry()))
	h.now = func() time.Time { return now }
	cl := server.NewClient(nil, "local", sessionID(testProduct, "gw"), true)
	f.Fuzz(func(t *testing.T, kind uint8, params []byte) {
		k := api.KindTopoAdd + api.Kind(kind%4)
		s := &session{client: cl, pk: testProduct, dk: "gw", subs: map[string]string{}}
		topic := api.Topic{Kind: k, ProductKey: testProduct, DeviceKey: "gw"}
		h.subDevices(s, topic, "/t", api.Request{ID: "1", Params: params})
		h.mu.Lock()
		defer h.mu.Unlock()
		for key := range s.subs {
			require.Equal(t, testProduct+"/sub", key, "only the registered sub-device logs in")
		}
	})
}

// FuzzGuardHeader feeds byte streams to the pre-login guard's header check:
// it passes a CONNECT within the limit, and nothing else.
func FuzzGuardHeader(f *testing.F) {
	f.Add([]byte{0x10, 0x0c}, uint16(64))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, uint16(64))
	f.Add([]byte{0x10, 0x80, 0x80, 0x80, 0x80, 0x01}, uint16(64))
	f.Add([]byte{0x30, 0x02, 0, 0}, uint16(64))
	f.Add([]byte{0x10, 0xc1, 0x02}, uint16(1000))
	l := &guardListener{cfg: DefaultConfig(), m: newMetrics(prometheusRegistry()), log: quietTestLogger(), perIP: map[string]int{}}
	f.Fuzz(func(t *testing.T, stream []byte, max uint16) {
		g := &guardConn{l: l, max: int(max)}
		var err error
		for i := 0; i < len(stream) && err == nil && g.total == 0; i++ {
			err = g.header(stream[i : i+1])
		}
		if err != nil {
			require.ErrorIs(t, err, errPreLogin)
			return
		}
		if g.total > 0 {
			require.Equal(t, byte(1), stream[0]>>4, "only a CONNECT passes")
			require.LessOrEqual(t, g.length, int(max))
			require.Equal(t, g.hdr+g.length, g.total)
		}
	})
}

// FuzzPostBatch feeds a gateway's thing.measurepoint.post.batch params to
// the broker: no panic, and what is accepted is one valid live record per
// entry, only for the gateway and the sub-device logged in through it.
// Where the single-pass decode takes the request, it gets the same answer
// as the two-pass one: the same refusal, or the same records.
func FuzzPostBatch(f *testing.F) {
	for _, s := range []string{
		`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{"T":21.5,"On":true},"time":1732550400000},{"productKey":"sensor","deviceKey":"gw","measurepoints":{"N":3}}]`,
		`[{"productKey":"sensor","deviceKey":"other","measurepoints":{"T":1}}]`,
		`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{"T":{"value":1,"quality":300}}}]`,
		`[{"productKey":"","deviceKey":"sub","measurepoints":{"T":1}}]`, `[{}]`, `[]`, `null`, `{"measurepoints":{"T":1}}`,
		`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{"T":1},"time":-1}]`,
		`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{"T":1,"T":"2","X":1},"measurepoints":{"N":1}},null]`,
		`[{"productKey":"sensor","deviceKey":"sub","measurepoints":{}},{"productKey":null,"deviceKey":"gw","time":1.5}]`,
		`[{"productKey":"sensor","deviceKey":"gw","measurepoints":{"T":1},"extra":1},[]]`,
		`[{"productKey":"sensor","deviceKey":"sub","time":1732550399000,"measurepoints":null,"measurepoints":{"T":1}}]`,
	} {
		f.Add([]byte(s))
	}
	reg, model := fuzzModel(f)
	for _, dk := range []string{"gw", "sub", "other"} {
		_, err := reg.CreateDevice(context.Background(), api.Device{ProductKey: testProduct, DeviceKey: dk, Org: "org", Enabled: true})
		require.NoError(f, err)
	}
	win := fuzzWindow()
	server := mqtt.New(&mqtt.Options{Logger: quietTestLogger()})
	h := newHook(DefaultConfig(), server, reg, nil, quietTestLogger(), newMetrics(prometheusRegistry()))
	s := &session{pk: testProduct, dk: "gw", subs: map[string]string{testProduct + "/sub": "secret"}}
	f.Fuzz(func(t *testing.T, params []byte) {
		var req api.Request
		if b := decodeBatch(fmt.Appendf(nil, `{"id":"1","params":%s}`, params), &req, true); b != nil {
			require.Equal(t, "1", req.ID)
			fastMsgs, fastN, fastErr := h.postBatch(s, "org", &req, b, win)
			slowMsgs, slowN, slowErr := h.postBatch(s, "org", &api.Request{ID: "1", Params: params}, nil, win)
			require.Equal(t, fmt.Sprint(slowErr), fmt.Sprint(fastErr))
			require.Equal(t, slowN, fastN)
			require.Len(t, fastMsgs, len(slowMsgs))
			for i := range slowMsgs {
				var fast, slow api.Record
				require.NoError(t, api.DecodeRecord(fastMsgs[i].Value, &fast))
				require.NoError(t, api.DecodeRecord(slowMsgs[i].Value, &slow))
				require.ElementsMatch(t, slow.Samples, fast.Samples)
				fast.Samples, slow.Samples = nil, nil
				require.Equal(t, slow, fast)
			}
		}
		msgs, n, err := h.postBatch(s, "org", &api.Request{ID: "1", Params: params}, nil, win)
		if err != nil {
			var rej *rejection
			require.ErrorAs(t, err, &rej)
			require.NotZero(t, rej.code)
			require.NotEmpty(t, rej.reason)
			require.Empty(t, msgs)
			return
		}
		require.NotEmpty(t, msgs)
		samples := 0
		for _, m := range msgs {
			require.Equal(t, api.TopicTelemetry, m.Topic)
			var rec api.Record
			require.NoError(t, api.DecodeRecord(m.Value, &rec))
			require.Equal(t, api.RecordPost, rec.Kind)
			require.Equal(t, "org", rec.Org)
			require.Contains(t, []string{"gw", "sub"}, rec.Device, "never a device not logged in through the gateway")
			require.Equal(t, testProduct+"/"+rec.Device, string(m.Key))
			require.NotEmpty(t, rec.Samples)
			for _, smp := range rec.Samples {
				_, known := model.Point(smp.Point)
				require.True(t, known, smp.Point)
				require.NoError(t, win.check(smp.Time))
			}
			samples += len(rec.Samples)
		}
		require.Equal(t, n, samples)
	})
}

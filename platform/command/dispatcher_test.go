package command

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/registry/registrytest"
)

type fakeDownlink struct {
	mu     sync.Mutex
	topics []string
}

func (*fakeDownlink) Online(string, string) bool { return true }

func (f *fakeDownlink) Publish(topic string, _ []byte, _ byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.topics = append(f.topics, topic)
	return nil
}

func (f *fakeDownlink) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.topics...)
}

// loopback hands produced commands straight back to the dispatcher, as
// gale.commands would, and keeps them.
type loopback struct {
	d    *Dispatcher
	msgs []bus.Message
}

func (l *loopback) Produce(ctx context.Context, msgs ...bus.Message) error {
	l.msgs = append(l.msgs, msgs...)
	if l.d == nil {
		return nil
	}
	return l.d.Handle(ctx, msgs)
}

func (l *loopback) Send(ctx context.Context, msg bus.Message, done func(error)) {
	done(l.Produce(ctx, msg))
}

func setup(t *testing.T) (*Dispatcher, *registry.Registry, *fakeDownlink) {
	t.Helper()
	reg := registrytest.Open(t, "org")
	ctx := context.Background()
	require.NoError(t, reg.PutProduct(ctx, api.Product{Key: "wt", Model: api.ThingModel{Services: []api.Service{{ID: "stop"}, {ID: "start"}}}}, false))
	for _, dk := range []string{"WT01", "WT02"} {
		_, err := reg.CreateDevice(ctx, api.Device{ProductKey: "wt", DeviceKey: dk, Org: "org", Enabled: true})
		require.NoError(t, err)
	}
	down := &fakeDownlink{}
	lb := &loopback{}
	d := New(reg, down, lb, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	lb.d = d
	return d, reg, down
}

// A reply completes a command only from the command's device, for its
// service, once; anything else is ignored and counted.
func TestRepliesMatchIDDeviceAndService(t *testing.T) {
	d, reg, down := setup(t)
	ctx := context.Background()
	c, err := d.Invoke(ctx, "wt", "WT01", "stop", nil, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{api.ServiceTopic("wt", "WT01", "stop")}, down.sent())
	reply := []byte(`{"id":"` + c.ID + `","code":200}`)

	cases := []struct {
		name, pk, dk, service string
		payload               []byte
		reason                string
	}{
		{name: "another device", pk: "wt", dk: "WT02", service: "stop", payload: reply, reason: "wrong_device"},
		{name: "another service", pk: "wt", dk: "WT01", service: "start", payload: reply, reason: "wrong_service"},
		{name: "unknown id", pk: "wt", dk: "WT01", service: "stop", payload: []byte(`{"id":"nope","code":200}`), reason: "unknown_command"},
		{name: "malformed", pk: "wt", dk: "WT01", service: "stop", payload: []byte(`{`), reason: "malformed"},
		{name: "no id", pk: "wt", dk: "WT01", service: "stop", payload: []byte(`{"code":200}`), reason: "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(d.ignored.WithLabelValues(tc.reason))
			d.ServiceReply(context.Background(), tc.pk, tc.dk, tc.service, tc.payload)
			require.Equal(t, before+1, testutil.ToFloat64(d.ignored.WithLabelValues(tc.reason)))
			got, err := reg.Command(ctx, c.ID)
			require.NoError(t, err)
			require.Equal(t, api.CommandSent, got.Status, "the command still waits for its device")
		})
	}

	d.ServiceReply(context.Background(), "wt", "WT01", "stop", reply)
	got, err := reg.Command(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, api.CommandSucceeded, got.Status)
	d.ServiceReply(context.Background(), "wt", "WT01", "stop", []byte(`{"id":"`+c.ID+`","code":500}`))
	require.Equal(t, 1.0, testutil.ToFloat64(d.ignored.WithLabelValues("completed")))
	got, err = reg.Command(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, 200, got.Code, "a second reply changes nothing")

	// Every record on gale.commands (queued, sent, answered) carries the device's org.
	var statuses []string
	for _, m := range d.producer.(*loopback).msgs {
		var c api.Command
		require.NoError(t, json.Unmarshal(m.Value, &c))
		require.Equal(t, "org", c.Org, c.Status)
		statuses = append(statuses, c.Status)
	}
	require.Equal(t, []string{api.CommandQueued, api.CommandSent, api.CommandSucceeded}, statuses)
}

// Commands to a disabled device are refused, and queued ones are not sent.
func TestDisabledDeviceGetsNoCommands(t *testing.T) {
	d, reg, down := setup(t)
	ctx := context.Background()
	off := false
	_, err := reg.PatchDevice(ctx, "wt", "WT02", registry.DevicePatch{Enabled: &off})
	require.NoError(t, err)
	_, err = d.Invoke(ctx, "wt", "WT02", "stop", nil, time.Minute)
	require.ErrorIs(t, err, ErrDeviceDisabled)
	_, err = d.Invoke(ctx, "wt", "WT99", "stop", nil, time.Minute)
	require.ErrorIs(t, err, ErrUnknownDevice)

	// A command queued before the device was disabled stays unsent.
	c := api.Command{ID: registry.NewCommandID(), ProductKey: "wt", DeviceKey: "WT02", Service: "stop", Status: api.CommandQueued,
		CreatedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().Add(time.Minute).UnixMilli()}
	require.NoError(t, reg.CreateCommand(ctx, c))
	require.NoError(t, d.send(ctx, c))
	require.Empty(t, down.sent())
	got, err := reg.Command(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, api.CommandQueued, got.Status)
}

// Service call parameters are checked against the service's inputs before
// anything reaches a device: declared inputs only, numbers for numbers,
// whole numbers for ints, within min and max.
func TestCheckParams(t *testing.T) {
	zero, limit := 0.0, 10000.0
	svc := &api.Service{ID: "setPowerLimit", Input: []api.Param{
		{ID: "limit", Type: api.TypeFloat, Min: &zero, Max: &limit}, {ID: "code", Type: api.TypeInt}, {ID: "note", Type: "string"},
	}}
	for params, ok := range map[string]bool{
		``: true, `{"limit":1500}`: true, `{"limit":0}`: true, `{"limit":10000}`: true, `{"code":3,"note":"x"}`: true,
		`{"limit":-1.1}`: false, `{"limit":10000.5}`: false, `{"limit":"high"}`: false, `{"code":1.5}`: false,
		`{"other":1}`: false, `[1]`: false,
	} {
		err := checkParams(svc, json.RawMessage(params))
		if ok {
			require.NoError(t, err, params)
		} else {
			require.ErrorIs(t, err, ErrBadParams, params)
		}
	}
}

// FuzzCheckParams feeds any bytes as a call's parameters: no panic, and
// what passes is empty or an object of declared inputs whose numbers lie
// within their bounds.
func FuzzCheckParams(f *testing.F) {
	zero, limit := 0.0, 10000.0
	svc := &api.Service{ID: "setPowerLimit", Input: []api.Param{
		{ID: "limit", Type: api.TypeFloat, Min: &zero, Max: &limit}, {ID: "code", Type: api.TypeInt}, {ID: "note", Type: "string"},
	}}
	for _, s := range []string{``, `{"limit":1500}`, `{"limit":-1.1}`, `{"code":1.5}`, `{"limit":1e400}`, `{"note":{"a":1}}`, `null`, `[1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		if checkParams(svc, params) != nil || len(params) == 0 {
			return
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(params, &m))
		for k, v := range m {
			switch k {
			case "limit":
				n, ok := v.(float64)
				require.True(t, ok && n >= 0 && n <= 10000, "%s=%v", k, v)
			case "code":
				n, ok := v.(float64)
				require.True(t, ok && n == math.Trunc(n), "%s=%v", k, v)
			case "note":
			default:
				t.Fatalf("%q is not an input", k)
			}
		}
	})
}

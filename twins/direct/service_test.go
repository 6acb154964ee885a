package direct

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/clock"
	"github.com/gale-iot/gale/twins/turbine"
)

// fakeFleet has turbine WT01 behind gateway GW01 and turbine WT02, connected
// directly, whose services answer err.
type fakeFleet struct {
	err     error
	service string
	params  map[string]any
}

func (f *fakeFleet) Devices() []twins.DeviceInfo {
	return []twins.DeviceInfo{{Key: "WT01", Product: twins.ProductTurbine, Gateway: "GW01", Unit: 1}, {Key: "WT02", Product: twins.ProductTurbine}}
}
func (f *fakeFleet) Points(string) (map[string]float64, time.Time, error) {
	return nil, time.Time{}, turbine.ErrOffline
}
func (f *fakeFleet) Events() <-chan turbine.Event { return nil }
func (f *fakeFleet) Clock() *clock.Clock          { return nil }
func (f *fakeFleet) Invoke(_, service string, params map[string]any) error {
	f.service, f.params = service, params
	return f.err
}

func TestServiceReplies(t *testing.T) {
	cases := []struct {
		name       string
		service    string
		params     string
		err        error
		wantCode   int
		wantParams map[string]any
		wantOut    any
	}{
		{name: "set power limit", service: "setPowerLimit", params: `{"limit":1500}`, wantCode: 200,
			wantParams: map[string]any{"powerLimit": 1500.0}, wantOut: map[string]any{"limit": 1500.0}},
		{name: "limit missing", service: "setPowerLimit", params: `{"kW":1500}`, wantCode: 400},
		{name: "limit not a number", service: "setPowerLimit", params: `{"limit":"high"}`, wantCode: 400},
		{name: "limit out of range", service: "setPowerLimit", params: `{"limit":1e9}`, err: turbine.ErrOutOfRange, wantCode: 422,
			wantParams: map[string]any{"powerLimit": 1e9}},
		{name: "start", service: "start", params: `{}`, wantCode: 200},
		{name: "start with a latched fault", service: "start", err: fmt.Errorf("%w: pitch", turbine.ErrFaultActive), wantCode: 409},
		{name: "reset while the cause persists", service: "resetFault", err: turbine.ErrCauseActive, wantCode: 409},
		{name: "stop an offline turbine", service: "stop", err: turbine.ErrOffline, wantCode: 503},
		{name: "unknown service", service: "explode", err: turbine.ErrUnknownService, wantCode: 501},
		{name: "met mast", service: "start", err: twins.ErrUnknownDevice, wantCode: 501},
		{name: "anything else", service: "stop", err: errors.New("boom"), wantCode: 500},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ff := &fakeFleet{err: c.err}
			r, err := New(ff, Config{Broker: "127.0.0.1:1", Secret: func(string, string) (string, error) { return "", nil }},
				slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			require.NoError(t, err)
			code, msg, out := r.invoke(device.ServiceCall{ProductKey: "wind-turbine", DeviceKey: "WT02", Service: c.service, Params: json.RawMessage(c.params)})
			require.Equal(t, c.wantCode, code, msg)
			if code != 200 {
				require.NotEmpty(t, msg)
			}
			require.Equal(t, c.wantOut, out)
			if c.wantCode != 400 {
				require.Equal(t, c.service, ff.service)
				require.Equal(t, c.wantParams, ff.params)
			}
		})
	}
}

func TestNewChecksDevices(t *testing.T) {
	secret := func(string, string) (string, error) { return "", nil }
	cases := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{name: "defaults", cfg: Config{Broker: "b", Secret: secret}},
		{name: "listed", cfg: Config{Broker: "b", Secret: secret, Devices: []string{"WT02"}}},
		{name: "no broker", cfg: Config{Secret: secret}, wantErr: ErrConfig},
		{name: "no secrets", cfg: Config{Broker: "b"}, wantErr: ErrConfig},
		{name: "interval", cfg: Config{Broker: "b", Secret: secret, Interval: time.Millisecond}, wantErr: ErrConfig},
		{name: "unknown device", cfg: Config{Broker: "b", Secret: secret, Devices: []string{"WT99"}}, wantErr: twins.ErrUnknownDevice},
		{name: "behind a gateway", cfg: Config{Broker: "b", Secret: secret, Devices: []string{"WT01"}}, wantErr: ErrBehindGateway},
		{name: "twice", cfg: Config{Broker: "b", Secret: secret, Devices: []string{"WT02", "WT02"}}, wantErr: ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(&fakeFleet{}, c.cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if c.wantErr != nil {
				require.ErrorIs(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
}

package apiclient_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/device"
	"github.com/gale-iot/gale/platform/node/nodetest"
	"github.com/gale-iot/gale/platform/pki"
)

// TestAgainstANode calls a real node's API over HTTPS, with its development CA.
func TestAgainstANode(t *testing.T) {
	cfg := nodetest.Config(t)
	files := nodetest.TLS(t, &cfg, "")
	h := nodetest.Start(t, cfg)
	tlsCfg, err := pki.ClientConfig{CAFile: files.CA}.Load()
	require.NoError(t, err)
	c, err := apiclient.New(h.BaseURL+"/", apiclient.Options{Token: h.Token, TLS: tlsCfg})
	require.NoError(t, err)
	require.Equal(t, h.BaseURL, c.URL())
	ctx := context.Background()

	t.Run("registry", func(t *testing.T) {
		require.NoError(t, c.CreateAsset(ctx, api.Asset{ID: "o1", Kind: api.AssetOrg}))
		require.NoError(t, c.CreateAsset(ctx, api.Asset{ID: "s1", Kind: api.AssetSite, Parent: "o1"}))
		err := c.CreateAsset(ctx, api.Asset{ID: "o1", Kind: api.AssetOrg})
		require.Equal(t, http.StatusConflict, apiclient.StatusOf(err), "%v", err)

		p := api.Product{Key: "pump", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "Temp", Type: api.TypeFloat}}}}
		require.NoError(t, c.CreateProduct(ctx, p))
		p.Model.Measurepoints = append(p.Model.Measurepoints, api.Measurepoint{ID: "Seq", Type: api.TypeInt})
		require.NoError(t, c.UpdateProduct(ctx, p))
		got, err := c.Product(ctx, "pump")
		require.NoError(t, err)
		require.Len(t, got.Model.Measurepoints, 2)

		_, err = c.Product(ctx, "no/such product")
		var apiErr *apiclient.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusNotFound, apiErr.Status)
		require.Equal(t, http.MethodGet, apiErr.Method)
		require.NotEmpty(t, apiErr.Msg, "the message of Gale's error body")
		require.NotContains(t, apiErr.Msg, `{"error"`, "the message, not the JSON body")

		d, err := c.CreateDevice(ctx, api.Device{ProductKey: "pump", DeviceKey: "p1", Site: "s1", Enabled: true})
		require.NoError(t, err)
		require.NotEmpty(t, d.Secret, "an admin sees the secret")
		_, err = c.CreateDevice(ctx, api.Device{ProductKey: "nope", DeviceKey: "p1", Site: "s1"})
		require.Equal(t, 4, apiclient.StatusOf(err)/100, "%v", err)
		one, err := c.Device(ctx, "pump", "p1")
		require.NoError(t, err)
		require.Equal(t, d.Secret, one.Secret)
		require.Equal(t, "o1", one.Org)
		ds, err := c.Devices(ctx, url.Values{"productKey": {"pump"}})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		ds, err = c.Devices(ctx, url.Values{"productKey": {"other"}})
		require.NoError(t, err)
		require.Empty(t, ds)

		as, err := c.Alerts(ctx, url.Values{"rule": {"no-such-rule"}})
		require.NoError(t, err)
		require.Empty(t, as)
		_, err = c.CallService(ctx, "pump", "p1", "noSuchService", map[string]any{}, url.Values{"timeout": {"1s"}})
		require.Equal(t, http.StatusNotFound, apiclient.StatusOf(err), "%v", err)

		// Another node's API (here the same) with the same token and CA.
		other, err := c.At(h.BaseURL)
		require.NoError(t, err)
		_, err = other.Device(ctx, "pump", "p1")
		require.NoError(t, err)
	})

	t.Run("PromQL", func(t *testing.T) {
		d, err := c.Device(ctx, "pump", "p1")
		require.NoError(t, err)
		dev, err := device.Connect(ctx, device.Config{Broker: h.MQTTAddr(), TLS: tlsCfg, ProductKey: "pump", DeviceKey: "p1", Secret: d.Secret})
		require.NoError(t, err)
		t.Cleanup(dev.Close)
		last := time.Now().Truncate(time.Minute)
		for i := range 5 {
			at := last.Add(time.Duration(i-4) * time.Minute)
			reply, err := dev.Request(ctx, dev.PostTopic(), dev.MeasurepointRequest("thing.measurepoint.post", at, map[string]any{"Temp": float64(i)}))
			require.NoError(t, err)
			require.Equal(t, api.CodeOK, reply.Code, reply.Message)
		}
		var vec model.Vector
		require.Eventually(t, func() bool {
			vec, err = c.Prom.Vector(ctx, `Temp{device="p1"}`, last)
			return err == nil && len(vec) == 1 && vec[0].Value == 4
		}, 15*time.Second, 50*time.Millisecond, "%v %v", vec, err)
		require.Equal(t, model.LabelValue("o1"), vec[0].Metric["org"])

		scalar, err := c.Prom.Vector(ctx, `1+1`, last)
		require.NoError(t, err)
		require.Equal(t, model.Vector{{Metric: model.Metric{}, Value: 2, Timestamp: model.TimeFromUnixNano(last.UnixNano())}}, scalar,
			"a scalar is one sample without labels")

		m, err := c.Prom.Matrix(ctx, `Temp{device="p1"}[5m]`, last)
		require.NoError(t, err)
		require.Len(t, m, 1)
		require.Len(t, m[0].Values, 5, "one sample a minute in (last-5m, last]")
		require.Equal(t, model.SamplePair{Timestamp: model.TimeFromUnixNano(last.UnixNano()), Value: 4}, m[0].Values[4])

		_, err = c.Prom.Vector(ctx, `Temp[5m]`, last)
		require.ErrorContains(t, err, "want an instant vector")
		_, err = c.Prom.Matrix(ctx, `Temp`, last)
		require.ErrorContains(t, err, "want a range vector")

		_, err = c.Prom.Vector(ctx, `sum(`, last)
		var promErr *v1.Error
		require.ErrorAs(t, err, &promErr, "the Prometheus API's own error, decoded by client_golang")
		require.Equal(t, v1.ErrBadData, promErr.Type)

		// A Prometheus-compatible API by its own URL, as the dashboards check uses it.
		p, err := apiclient.NewPrometheus(h.BaseURL+"/prometheus", apiclient.Options{Token: h.Token, TLS: tlsCfg})
		require.NoError(t, err)
		values, _, _, err := p.LabelValues(ctx, "device", []string{"Temp"}, last.Add(-time.Hour), last)
		require.NoError(t, err)
		require.Equal(t, model.LabelValues{"p1"}, values)
	})

	t.Run("a wrong token is an error with the status and Gale's message", func(t *testing.T) {
		wrong, err := apiclient.New(h.BaseURL, apiclient.Options{Token: "wrong", TLS: tlsCfg})
		require.NoError(t, err)
		_, err = wrong.Device(ctx, "pump", "p1")
		var apiErr *apiclient.Error
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusUnauthorized, apiErr.Status)
		require.NotEmpty(t, apiErr.Msg)
		require.Contains(t, err.Error(), "check the API token")

		// The query API's answer to a bad token is Gale's, not Prometheus's: the same error.
		_, err = wrong.Prom.Vector(ctx, "Temp", time.Time{})
		require.ErrorAs(t, err, &apiErr)
		require.Equal(t, http.StatusUnauthorized, apiErr.Status)
		require.Equal(t, "/prometheus/api/v1/query", apiErr.Path)
	})

	t.Run("the server is verified", func(t *testing.T) {
		untrusting, err := apiclient.New(h.BaseURL, apiclient.Options{Token: h.Token})
		require.NoError(t, err)
		_, err = untrusting.Device(ctx, "pump", "p1")
		require.ErrorContains(t, err, "certificate", "the development CA is not among the system's roots")
		require.Zero(t, apiclient.StatusOf(err))
	})

	t.Run("bad URLs", func(t *testing.T) {
		for _, u := range []string{"not a url", "ftp://example", "http://", ""} {
			_, err := apiclient.New(u, apiclient.Options{})
			require.Error(t, err, u)
			_, err = c.At(u)
			require.Error(t, err, u)
		}
	})
}

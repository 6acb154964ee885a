package apiclient_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// server runs a real API server over a registry and a TSDB with
// temp{device="d0".."d2"}, and returns its URL, an admin token and the
// time of the newest samples.
func server(t *testing.T) (string, string, time.Time) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	rg, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rg.Close()) })
	token, err := rg.CreateToken(context.Background(), "test")
	require.NoError(t, err)
	db, now := tsdbtest.OpenWithSeries(t, 3)
	srv, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0"}, httpapi.Deps{Registry: rg, Storage: db,
		Engine: tsdbtest.NewEngine(t, tsdb.QueryConfig{}, log, reg), Gatherer: reg}, log, reg)
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return "http://" + srv.Addr(), token, now
}

func TestRegistryCalls(t *testing.T) {
	base, token, _ := server(t)
	c, err := apiclient.New(base+"/", apiclient.Options{Token: token})
	require.NoError(t, err)
	require.Equal(t, base, c.URL())
	ctx := context.Background()

	require.NoError(t, c.CreateAsset(ctx, api.Asset{ID: "o1", Kind: api.AssetOrg}))
	require.NoError(t, c.CreateAsset(ctx, api.Asset{ID: "s1", Kind: api.AssetSite, Parent: "o1"}))
	err = c.CreateAsset(ctx, api.Asset{ID: "o1", Kind: api.AssetOrg})
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
	require.Equal(t, http.StatusBadRequest/100, apiclient.StatusOf(err)/100, "%v", err)
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

	// Another node's API through the same token.
	other, err := c.At(base)
	require.NoError(t, err)
	_, err = other.Device(ctx, "pump", "p1")
	require.NoError(t, err)
	_, err = c.At("ftp://example")
	require.Error(t, err)
	_, err = apiclient.New("not a url", apiclient.Options{})
	require.Error(t, err)
}

func TestWrongTokenIsAnErrorWithStatusAndMessage(t *testing.T) {
	base, _, now := server(t)
	c, err := apiclient.New(base, apiclient.Options{Token: "wrong"})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = c.Device(ctx, "pump", "p1")
	var apiErr *apiclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusUnauthorized, apiErr.Status)
	require.NotEmpty(t, apiErr.Msg)
	require.Contains(t, err.Error(), "check the API token")

	// The query API's answer to a missing token is Gale's, not Prometheus's: the same error.
	_, err = c.Prom.Vector(ctx, "temp", now)
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusUnauthorized, apiErr.Status)
	require.Equal(t, "/prometheus/api/v1/query", apiErr.Path)
}

func TestPromQL(t *testing.T) {
	base, token, now := server(t)
	c, err := apiclient.New(base, apiclient.Options{Token: token})
	require.NoError(t, err)
	ctx := context.Background()

	vec, err := c.Prom.Vector(ctx, `temp{device="d1"}`, now.Add(-2*time.Minute))
	require.NoError(t, err)
	require.Len(t, vec, 1)
	require.Equal(t, model.LabelValue("d1"), vec[0].Metric["device"])
	require.Equal(t, model.SampleValue(2), vec[0].Value, "worth minutes ago % 7")

	scalar, err := c.Prom.Vector(ctx, `1+1`, now)
	require.NoError(t, err)
	require.Equal(t, model.Vector{{Metric: model.Metric{}, Value: 2, Timestamp: model.TimeFromUnixNano(now.UnixNano())}}, scalar,
		"a scalar is one sample without labels")

	m, err := c.Prom.Matrix(ctx, `temp{device="d0"}[5m]`, now)
	require.NoError(t, err)
	require.Len(t, m, 1)
	require.Len(t, m[0].Values, 5, "one sample a minute in (now-5m, now]")
	require.Equal(t, model.TimeFromUnixNano(now.UnixNano()), m[0].Values[4].Timestamp)

	_, err = c.Prom.Vector(ctx, `temp[5m]`, now)
	require.ErrorContains(t, err, "want an instant vector")
	_, err = c.Prom.Matrix(ctx, `temp`, now)
	require.ErrorContains(t, err, "want a range vector")

	_, err = c.Prom.Vector(ctx, `sum(`, now)
	var promErr *v1.Error
	require.ErrorAs(t, err, &promErr, "the Prometheus API's own error, decoded by client_golang")
	require.Equal(t, v1.ErrBadData, promErr.Type)

	// A Prometheus-compatible API by its own URL, as the dashboards check uses it.
	p, err := apiclient.NewPrometheus(base+"/prometheus", apiclient.Options{Token: token})
	require.NoError(t, err)
	values, _, _, err := p.LabelValues(ctx, "device", []string{"temp"}, now.Add(-time.Hour), now)
	require.NoError(t, err)
	require.Equal(t, model.LabelValues{"d0", "d1", "d2"}, values)
}

//go:build containers

package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// apiClient calls a node's HTTP API with its admin token.
type apiClient struct {
	base  string // http://127.0.0.1:PORT
	token string
}

// do sends body as JSON and decodes a JSON answer into out (when non-nil).
func (c *apiClient) do(method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("request %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read %s %s: %w", method, path, err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s: %w: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, nil
}

// Names of what setupDevices creates.
const (
	product = "ci-seq"
	org     = "ci"
	site    = "ci-site"
)

// setupDevices creates an org, a site, a product with the float point Seq
// and n enabled devices, and returns the devices with their secrets.
func setupDevices(t testing.TB, c *apiClient, n int) []api.Device {
	t.Helper()
	for _, a := range []api.Asset{{ID: org, Kind: api.AssetOrg}, {ID: site, Kind: api.AssetSite, Parent: org}} {
		st, err := c.do(http.MethodPost, "/api/v1/assets", a, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, st, "create asset %s", a.ID)
	}
	p := api.Product{Key: product, Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: seqPoint, Type: api.TypeFloat}}}}
	st, err := c.do(http.MethodPost, "/api/v1/products", p, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, st, "create product")
	devs := make([]api.Device, n)
	for i := range devs {
		d := api.Device{ProductKey: product, DeviceKey: fmt.Sprintf("dev-%02d", i), Org: org, Site: site, Enabled: true}
		st, err := c.do(http.MethodPost, "/api/v1/devices", d, &devs[i])
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, st, "create device %s", d.DeviceKey)
		require.NotEmpty(t, devs[i].Secret)
	}
	return devs
}

// hasDevice reports whether the node knows d (the registry reached it).
func (c *apiClient) hasDevice(d api.Device) bool {
	st, err := c.do(http.MethodGet, "/api/v1/devices/"+d.ProductKey+"/"+d.DeviceKey, nil, nil)
	return err == nil && st == http.StatusOK
}

// storedSeq returns the Seq samples of the last window the node stores, by
// device key and then timestamp (ms).
func (c *apiClient) storedSeq(window time.Duration) (map[string]map[int64]float64, error) {
	q := url.Values{"query": {fmt.Sprintf(`%s{product=%q}[%ds]`, seqPoint, product, int(window.Seconds()))}}
	var resp struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	st, err := c.do(http.MethodGet, "/prometheus/api/v1/query?"+q.Encode(), nil, &resp)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("query %s: status %d", q.Get("query"), st)
	}
	out := map[string]map[int64]float64{}
	for _, r := range resp.Data.Result {
		m := map[int64]float64{}
		for _, v := range r.Values {
			ts, ok1 := v[0].(float64)
			s, ok2 := v[1].(string)
			f, err := strconv.ParseFloat(s, 64)
			if !ok1 || !ok2 || err != nil {
				return nil, fmt.Errorf("query %s: bad sample %v", q.Get("query"), v)
			}
			m[int64(ts*1000+0.5)] = f
		}
		out[r.Metric["device"]] = m
	}
	return out, nil
}

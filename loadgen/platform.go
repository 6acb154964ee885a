package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
)

// Platform is a client of Gale's HTTP API: it provisions the generator's
// org, site, product and devices in the registry, and runs PromQL queries
// on the Prometheus-compatible API.
type Platform struct {
	base   string
	token  string
	client *http.Client
	log    *slog.Logger
}

// NewPlatform returns a client of the API at baseURL (http://host:port or
// https://…, verified with tlsCfg when set, else the system's roots).
func NewPlatform(baseURL, token string, tlsCfg *tls.Config, log *slog.Logger) *Platform {
	client := &http.Client{Timeout: 30 * time.Second}
	if tlsCfg != nil {
		client.Transport = &http.Transport{TLSClientConfig: tlsCfg}
	}
	return &Platform{base: strings.TrimRight(baseURL, "/"), token: token, log: log, client: client}
}

// errStatus is an unexpected HTTP answer.
type errStatus struct {
	method, path string
	status       int
	msg          string
}

func (e *errStatus) Error() string {
	hint := ""
	if e.status == http.StatusUnauthorized {
		hint = " (check the API token)"
	}
	return fmt.Sprintf("%s %s: %d %s%s", e.method, e.path, e.status, e.msg, hint)
}

// do sends a JSON request (or a form when body is url.Values) and decodes
// a 2xx JSON answer into out. Other statuses are returned as *errStatus.
func (p *Platform) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &errStatus{method: method, path: path, status: resp.StatusCode, msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func isStatus(err error, status int) bool {
	var e *errStatus
	return errors.As(err, &e) && e.status == status
}

// Provision makes sure cfg's org, site and product exist (adding missing
// points to an existing product) and that devices PREFIX00000... exist, and
// returns their identities with secrets.
func (p *Platform) Provision(ctx context.Context, cfg Config) ([]Identity, error) {
	for _, a := range []api.Asset{{ID: cfg.Org, Kind: api.AssetOrg}, {ID: cfg.Site, Kind: api.AssetSite, Parent: cfg.Org}} {
		if err := p.do(ctx, http.MethodPost, "/api/v1/assets", a, nil); err != nil && !isStatus(err, http.StatusConflict) {
			return nil, fmt.Errorf("create %s %s: %w", a.Kind, a.ID, err)
		}
	}
	if err := p.ensureProduct(ctx, cfg.Product, cfg.Points); err != nil {
		return nil, err
	}
	var existing []api.Device
	if err := p.do(ctx, http.MethodGet, "/api/v1/devices?productKey="+url.QueryEscape(cfg.Product), nil, &existing); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	secrets := make(map[string]string, len(existing))
	for _, d := range existing {
		secrets[d.DeviceKey] = d.Secret
	}
	ids := make([]Identity, cfg.Devices)
	var mu sync.Mutex
	created := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range ids {
		dk := deviceKey(cfg, i)
		ids[i] = Identity{ProductKey: cfg.Product, DeviceKey: dk, Secret: secrets[dk]}
		if ids[i].Secret != "" {
			continue
		}
		g.Go(func() error {
			var d api.Device
			_, listed := secrets[dk]
			var err error
			if !listed {
				err = p.do(gctx, http.MethodPost, "/api/v1/devices", api.Device{ProductKey: cfg.Product, DeviceKey: dk, Site: cfg.Site, Enabled: true}, &d)
				if err == nil {
					mu.Lock()
					created++
					mu.Unlock()
				}
			}
			if listed || isStatus(err, http.StatusConflict) {
				// Listed without its secret, or created meanwhile: ask for it alone.
				err = p.do(gctx, http.MethodGet, "/api/v1/devices/"+url.PathEscape(cfg.Product)+"/"+url.PathEscape(dk), nil, &d)
			}
			if err != nil {
				return fmt.Errorf("device %s: %w", dk, err)
			}
			if d.Secret == "" {
				return fmt.Errorf("device %s: the API did not return its secret (is the token an admin's?)", dk)
			}
			ids[i].Secret = d.Secret
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	p.log.Info("devices ready", "product", cfg.Product, "devices", len(ids), "created", created)
	return ids, nil
}

// ensureProduct creates product pk with points P0..P{points-1} (float) and
// Seq (int), or adds those it lacks to an existing one.
func (p *Platform) ensureProduct(ctx context.Context, pk string, points int) error {
	want := []api.Measurepoint{{ID: SeqPoint, Name: "load generator sequence number", Type: api.TypeInt}}
	for i := range points {
		want = append(want, api.Measurepoint{ID: pointID(i), Type: api.TypeFloat})
	}
	path := "/api/v1/products/" + url.PathEscape(pk)
	var prod api.Product
	err := p.do(ctx, http.MethodGet, path, nil, &prod)
	if isStatus(err, http.StatusNotFound) {
		prod = api.Product{Key: pk, Name: "Load generator devices", Model: api.ThingModel{Measurepoints: want}}
		if err := p.do(ctx, http.MethodPost, "/api/v1/products", prod, nil); err != nil {
			return fmt.Errorf("create product %s: %w", pk, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("product %s: %w", pk, err)
	}
	added := false
	for _, mp := range want {
		if !slices.ContainsFunc(prod.Model.Measurepoints, func(h api.Measurepoint) bool { return h.ID == mp.ID }) {
			prod.Model.Measurepoints = append(prod.Model.Measurepoints, mp)
			added = true
		}
	}
	if added {
		if err := p.do(ctx, http.MethodPut, path, prod, nil); err != nil {
			return fmt.Errorf("add points to product %s: %w", pk, err)
		}
	}
	return nil
}

func pointID(i int) string { return "P" + strconv.Itoa(i) }

// Series is one series of a query answer: an instant vector element
// (Value) or a range of samples (Values).
type Series struct {
	Metric map[string]string `json:"metric"`
	Value  Sample            `json:"value"`
	Values []Sample          `json:"values"`
}

// Sample is a timestamped value of a query answer.
type Sample struct {
	// T is the timestamp in milliseconds.
	T int64
	V float64
}

// UnmarshalJSON decodes Prometheus's [seconds, "value"] pair.
func (s *Sample) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return err
	}
	t, err := strconv.ParseFloat(string(pair[0]), 64)
	if err != nil {
		return fmt.Errorf("sample time %s: %w", pair[0], err)
	}
	var v string
	if err := json.Unmarshal(pair[1], &v); err != nil {
		return fmt.Errorf("sample value %s: %w", pair[1], err)
	}
	if s.V, err = strconv.ParseFloat(v, 64); err != nil {
		return fmt.Errorf("sample value %q: %w", v, err)
	}
	s.T = int64(math.Round(t * 1000))
	return nil
}

// Query evaluates expr at time at (zero: the server's now) through
// /prometheus/api/v1/query.
func (p *Platform) Query(ctx context.Context, expr string, at time.Time) ([]Series, error) {
	form := url.Values{"query": {expr}}
	if !at.IsZero() {
		form.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	var resp struct {
		Data struct {
			Result []Series `json:"result"`
		} `json:"data"`
	}
	if err := p.do(ctx, http.MethodPost, "/prometheus/api/v1/query", form, &resp); err != nil {
		return nil, fmt.Errorf("query %.200s: %w", expr, err)
	}
	return resp.Data.Result, nil
}

// deviceSelector is a PromQL selector of metric name for the given devices.
func deviceSelector(name string, ids []Identity) string {
	products := map[string]bool{}
	var pks, dks []string
	for _, id := range ids {
		if !products[id.ProductKey] {
			products[id.ProductKey] = true
			pks = append(pks, regexp.QuoteMeta(id.ProductKey))
		}
		dks = append(dks, regexp.QuoteMeta(id.DeviceKey))
	}
	return fmt.Sprintf(`%s{product=~%s,device=~%s}`, api.MetricName(name),
		strconv.Quote(strings.Join(pks, "|")), strconv.Quote(strings.Join(dks, "|")))
}

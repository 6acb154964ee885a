// Package apiclient is the one Go client of Gale's HTTP API: the registry,
// commands and alerts under /api/v1 as typed calls, and the
// Prometheus-compatible query API under /prometheus through client_golang's
// API client. Loadgen, the scenarios, the dashboards check, the edge's model
// cache, the twins and the test harnesses all call Gale through it.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/common/config"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/runs"
)

// maxAnswer bounds the body of an answer the client reads, maxMsg the
// message of an *Error taken from it.
const (
	maxAnswer = 64 << 20
	maxMsg    = 1 << 10
)

// Options configure a client.
type Options struct {
	// Token is sent as a bearer token; none when empty.
	Token string
	// TLS verifies an https server (its RootCAs, a client certificate);
	// nil: the system's roots.
	TLS *tls.Config
	// Timeout bounds each request; zero: 30 s.
	Timeout time.Duration
	// Uncompressed asks for answers without gzip: for a client on the node's
	// host that polls small answers, where the node's gzip writer (about
	// 200 KB allocated per answer by the Prometheus API) costs more than it saves.
	Uncompressed bool
}

// httpClient is an HTTP client that sends o's token and trusts o's TLS config.
func (o Options) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS
	}
	tr.DisableCompression = o.Uncompressed
	var rt http.RoundTripper = tr
	if o.Token != "" {
		rt = config.NewAuthorizationCredentialsRoundTripper("Bearer", config.NewInlineSecret(o.Token), tr)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	// No redirects: the token goes with every request, so it would follow
	// one to any host; the API never redirects.
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &http.Client{Transport: rt, Timeout: timeout, CheckRedirect: noRedirect}
}

// Client calls one Gale node's HTTP API.
type Client struct {
	base string
	http *http.Client
	// Prom is the node's Prometheus-compatible query API (/prometheus).
	Prom *Prometheus
}

// New returns a client of the Gale API at baseURL (http://host:port or https://…).
func New(baseURL string, o Options) (*Client, error) {
	return newClient(baseURL, o.httpClient())
}

func newClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q: want http://host:port or https://host:port", baseURL)
	}
	base := strings.TrimRight(baseURL, "/")
	prom, err := newPrometheus(base+"/prometheus", hc)
	if err != nil {
		return nil, err
	}
	return &Client{base: base, http: hc, Prom: prom}, nil
}

// At returns a client of another node's API at baseURL with the same token and TLS.
func (c *Client) At(baseURL string) (*Client, error) { return newClient(baseURL, c.http) }

// URL is the API's base URL.
func (c *Client) URL() string { return c.base }

// Error is an answer with a status other than 2xx; Msg is the "error" of
// Gale's {"error": "..."} body, or the body itself.
type Error struct {
	Method, Path string
	Status       int
	Msg          string
}

func (e *Error) Error() string {
	hint := ""
	if e.Status == http.StatusUnauthorized {
		hint = " (check the API token)"
	}
	return fmt.Sprintf("%s %s: %d %s%s", e.Method, e.Path, e.Status, e.Msg, hint)
}

// StatusOf is the status of the answer err reports, 0 when err is not an *Error.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// answerError makes an *Error of a non-2xx answer.
func answerError(req *http.Request, status int, body []byte) *Error {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if len(msg) > maxMsg {
		msg = strings.ToValidUTF8(msg[:maxMsg], "") + "…"
	}
	return &Error{Method: req.Method, Path: req.URL.Path, Status: status, Msg: msg}
}

// Send sends body (when not nil) as JSON to path (with its query) and
// returns the answer's status and body, whatever the status: for tests of
// the API itself. Callers of the API use Do or the typed calls.
func (c *Client) Send(ctx context.Context, method, path string, body any) (int, []byte, error) {
	resp, b, err := c.send(ctx, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// Do sends body (when not nil) as JSON to path (with its query) and decodes
// a 2xx JSON answer into out (when not nil). Another status is an *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, b, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp.Request, resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, resp.Request.URL.Path, err)
		}
	}
	return nil
}

// send makes the request and reads the answer.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read answer: %w", method, req.URL.Path, err)
	}
	return resp, b, nil
}

func devicePath(pk, dk string) string {
	return "/api/v1/devices/" + url.PathEscape(pk) + "/" + url.PathEscape(dk)
}

// withQuery is path with q as its query (path itself when q is empty).
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// CreateAsset adds an org, site or other asset.
func (c *Client) CreateAsset(ctx context.Context, a api.Asset) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/assets", a, nil)
}

// Product returns product pk with its thing model.
func (c *Client) Product(ctx context.Context, pk string) (api.Product, error) {
	var p api.Product
	err := c.Do(ctx, http.MethodGet, "/api/v1/products/"+url.PathEscape(pk), nil, &p)
	return p, err
}

// CreateProduct adds product p.
func (c *Client) CreateProduct(ctx context.Context, p api.Product) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/products", p, nil)
}

// UpdateProduct replaces product p.Key with p.
func (c *Client) UpdateProduct(ctx context.Context, p api.Product) error {
	return c.Do(ctx, http.MethodPut, "/api/v1/products/"+url.PathEscape(p.Key), p, nil)
}

// Devices lists the devices that q selects (productKey, site, …; nil: all).
func (c *Client) Devices(ctx context.Context, q url.Values) ([]api.Device, error) {
	var ds []api.Device
	err := c.Do(ctx, http.MethodGet, withQuery("/api/v1/devices", q), nil, &ds)
	return ds, err
}

// Device returns device pk/dk (with its secret when the token is an admin's).
func (c *Client) Device(ctx context.Context, pk, dk string) (api.Device, error) {
	var d api.Device
	err := c.Do(ctx, http.MethodGet, devicePath(pk, dk), nil, &d)
	return d, err
}

// CreateDevice registers d and returns it with its secret.
func (c *Client) CreateDevice(ctx context.Context, d api.Device) (api.Device, error) {
	var out api.Device
	err := c.Do(ctx, http.MethodPost, "/api/v1/devices", d, &out)
	return out, err
}

// CallService invokes service of device pk/dk with params (a JSON object)
// and waits for the reply; q adds timeout, ttl or async. A command that
// failed or timed out is an *Error (502, 504).
func (c *Client) CallService(ctx context.Context, pk, dk, service string, params any, q url.Values) (api.Command, error) {
	var cmd api.Command
	err := c.Do(ctx, http.MethodPost, withQuery(devicePath(pk, dk)+"/services/"+url.PathEscape(service), q), params, &cmd)
	return cmd, err
}

// Alerts lists the alerts that q selects (rule, state, site, …; nil: all).
func (c *Client) Alerts(ctx context.Context, q url.Values) ([]api.Alert, error) {
	var as []api.Alert
	err := c.Do(ctx, http.MethodGet, withQuery("/api/v1/alerts", q), nil, &as)
	return as, err
}

// PostRun adds a loadgen or scenario run's report to the runs page.
func (c *Client) PostRun(ctx context.Context, r runs.Run) error {
	return c.Do(ctx, http.MethodPost, "/api/v1/runs", r, nil)
}

package dashboards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-openapi/runtime"
	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	goapi "github.com/grafana/grafana-openapi-client-go/client"
	"github.com/grafana/grafana-openapi-client-go/client/dashboards"
	"github.com/grafana/grafana-openapi-client-go/client/datasources"
	"github.com/grafana/grafana-openapi-client-go/client/folders"
	"github.com/grafana/grafana-openapi-client-go/client/health"
	"github.com/grafana/grafana-openapi-client-go/models"
)

// Datasource is the Prometheus data source the dashboards read: Gale's
// query API under /prometheus, with the Gale token sent as a custom
// Authorization header.
type Datasource struct {
	// GaleURL is Gale's HTTP API as Grafana reaches it, e.g. http://127.0.0.1:8080.
	GaleURL string
	// Token is the Gale API token (the admin token is in DATA/admin.token).
	Token string
}

// Name of the data source in Grafana.
const datasourceName = "Gale"

func (d Datasource) url() string { return strings.TrimSuffix(d.GaleURL, "/") + "/prometheus" }

// jsonData is the data source's settings: POST queries (as Grafana
// recommends for Prometheus), the header name, and Gale's default
// self-monitoring interval as the minimum step.
func (Datasource) jsonData() map[string]any {
	return map[string]any{"httpMethod": "POST", "httpHeaderName1": "Authorization", "timeInterval": "15s"}
}

// PushConfig says where and how to push.
type PushConfig struct {
	// GrafanaURL is Grafana's base URL, e.g. http://127.0.0.1:3000 (a sub-path is kept).
	GrafanaURL string
	// Token is a Grafana service account token with editor rights (or an API key).
	Token      string
	Datasource Datasource
	// Timeout bounds each request; default 10s.
	Timeout time.Duration
}

// PushResult reports what Push did.
type PushResult struct {
	FolderCreated     bool
	DatasourceCreated bool
	Dashboards        []string // URLs Grafana answered, one per dashboard
}

// Push creates or updates, idempotently, the Gale folder, the Gale data
// source and the dashboards (overwriting the versions in Grafana) through
// Grafana's HTTP API.
func Push(ctx context.Context, cfg PushConfig, ds []*Dashboard) (PushResult, error) {
	var res PushResult
	u, err := url.Parse(cfg.GrafanaURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return res, fmt.Errorf("grafana url %q: want http(s)://HOST:PORT", cfg.GrafanaURL)
	}
	if cfg.Token == "" {
		return res, errors.New("no Grafana token: create a service account token (Administration → Service accounts) and pass it with --token")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	// The client's own NewHTTPClientWithConfig writes to http.DefaultTransport
	// and retries; a runtime of our own with bearer auth does neither.
	rt := httptransport.NewWithClient(u.Host, strings.TrimSuffix(u.Path, "/")+"/api", []string{u.Scheme}, &http.Client{Timeout: cfg.Timeout})
	rt.DefaultAuthentication = httptransport.BearerToken(cfg.Token)
	c := goapi.New(rt, &goapi.TransportConfig{Host: u.Host, BasePath: rt.BasePath, Schemes: []string{u.Scheme}}, strfmt.Default)
	p := pusher{c: c, url: cfg.GrafanaURL, ctx: ctx}

	// /api/health needs no token: it tells an unreachable or non-Grafana URL from a bad token.
	if _, err := c.Health.GetHealthWithParams(health.NewGetHealthParams().WithContext(ctx)); err != nil {
		return res, p.fail(opHealth, err)
	}
	if res.FolderCreated, err = p.folder(); err != nil {
		return res, err
	}
	if res.DatasourceCreated, err = p.datasource(cfg.Datasource); err != nil {
		return res, err
	}
	for _, d := range ds {
		var model map[string]any
		if err := json.Unmarshal(d.JSON, &model); err != nil {
			return res, fmt.Errorf("dashboard %s: %w", d.File, err)
		}
		model["id"] = nil // Grafana matches by uid; an id would have to be Grafana's own
		ok, err := c.Dashboards.PostDashboardWithParams(dashboards.NewPostDashboardParams().WithContext(ctx).WithBody(&models.SaveDashboardCommand{
			Dashboard: model, FolderUID: FolderUID, Overwrite: true, Message: "gale dashboards push",
		}))
		if err != nil {
			return res, p.fail("save dashboard "+d.UID, err)
		}
		if ok.Payload != nil && ok.Payload.URL != nil {
			res.Dashboards = append(res.Dashboards, *ok.Payload.URL)
		}
	}
	return res, nil
}

const opHealth = "health check"

type pusher struct {
	c   *goapi.GrafanaHTTPAPI
	url string
	ctx context.Context
}

// folder creates the Gale folder unless it exists.
func (p pusher) folder() (bool, error) {
	_, err := p.c.Folders.GetFolderByUIDWithParams(folders.NewGetFolderByUIDParams().WithContext(p.ctx).WithFolderUID(FolderUID))
	if err == nil {
		return false, nil
	}
	if statusOf(err) != http.StatusNotFound {
		return false, p.fail("get folder "+FolderUID, err)
	}
	_, err = p.c.Folders.CreateFolderWithParams(folders.NewCreateFolderParams().WithContext(p.ctx).WithBody(&models.CreateFolderCommand{UID: FolderUID, Title: FolderTitle}))
	if err != nil {
		return false, p.fail("create folder "+FolderUID, err)
	}
	return true, nil
}

// datasource creates the data source, or updates it to the wanted settings.
func (p pusher) datasource(d Datasource) (bool, error) {
	_, err := p.c.Datasources.GetDataSourceByUIDWithParams(datasources.NewGetDataSourceByUIDParams().WithContext(p.ctx).WithUID(DatasourceUID))
	secure := map[string]string{"httpHeaderValue1": "Bearer " + d.Token}
	switch {
	case err == nil:
		_, err = p.c.Datasources.UpdateDataSourceByUIDWithParams(datasources.NewUpdateDataSourceByUIDParams().WithContext(p.ctx).WithUID(DatasourceUID).WithBody(&models.UpdateDataSourceCommand{
			Name: datasourceName, Type: "prometheus", UID: DatasourceUID, Access: "proxy", URL: d.url(),
			JSONData: d.jsonData(), SecureJSONData: secure,
		}))
		if err != nil {
			return false, p.fail("update data source "+DatasourceUID, err)
		}
		return false, nil
	case statusOf(err) == http.StatusNotFound:
		_, err = p.c.Datasources.AddDataSourceWithParams(datasources.NewAddDataSourceParams().WithContext(p.ctx).WithBody(&models.AddDataSourceCommand{
			Name: datasourceName, Type: "prometheus", UID: DatasourceUID, Access: "proxy", URL: d.url(),
			JSONData: d.jsonData(), SecureJSONData: secure,
		}))
		if err != nil {
			return false, p.fail("create data source "+DatasourceUID, err)
		}
		return true, nil
	default:
		return false, p.fail("get data source "+DatasourceUID, err)
	}
}

// statusOf returns the HTTP status of an error the client returned, or 0.
func statusOf(err error) int {
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		return coded.Code()
	}
	var apiErr *runtime.APIError // a status the API description does not list
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return 0
}

// fail turns a client error into one clear line.
func (p pusher) fail(op string, err error) error {
	var nerr net.Error
	var uerr *url.Error
	switch status := statusOf(err); {
	case status == http.StatusUnauthorized:
		return fmt.Errorf("Grafana at %s refused the token (401 Unauthorized) to %s: pass a valid service account token with --token", p.url, op)
	case status == http.StatusForbidden:
		return fmt.Errorf("Grafana at %s forbids the token to %s (403 Forbidden): its service account needs the Editor or Admin role", p.url, op)
	case errors.As(err, &uerr) || errors.As(err, &nerr):
		return fmt.Errorf("cannot reach Grafana at %s: %s", p.url, oneLine(err))
	case op == opHealth:
		return fmt.Errorf("%s does not look like Grafana: GET /api/health: %s", p.url, oneLine(err))
	case status != 0:
		return fmt.Errorf("Grafana at %s answered HTTP %d to %s%s", p.url, status, op, messageOf(err))
	default:
		return fmt.Errorf("Grafana at %s: %s: %s", p.url, op, oneLine(err))
	}
}

// oneLine returns err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// messageOf returns ": message" from a Grafana error body, when it has one.
func messageOf(err error) string {
	var withPayload interface {
		GetPayload() *models.ErrorResponseBody
	}
	if errors.As(err, &withPayload) && withPayload.GetPayload() != nil && withPayload.GetPayload().Message != nil {
		return ": " + *withPayload.GetPayload().Message
	}
	return ""
}

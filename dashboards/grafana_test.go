package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/internal/testkit"
)

// fakeGrafana serves the part of Grafana's HTTP API that Push uses, keeps
// what it is given and records every request, so tests check what Push sends.
type fakeGrafana struct {
	t     *testing.T
	token string

	mu          sync.Mutex
	requests    []string // "METHOD path"
	folders     map[string]map[string]any
	datasources map[string]map[string]any
	dashboards  map[string]map[string]any // by uid: the saved request body
	versions    map[string]int
}

func newFakeGrafana(t *testing.T, token string) (*fakeGrafana, *httptest.Server) {
	g := &fakeGrafana{t: t, token: token, folders: map[string]map[string]any{}, datasources: map[string]map[string]any{},
		dashboards: map[string]map[string]any{}, versions: map[string]int{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *fakeGrafana) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, r.Method+" "+r.URL.Path)
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		require.NoError(g.t, json.NewEncoder(w).Encode(v))
	}
	if r.URL.Path == "/api/health" { // no authentication, as in Grafana
		reply(http.StatusOK, map[string]any{"database": "ok", "version": "11.3.0"})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+g.token {
		reply(http.StatusUnauthorized, map[string]any{"message": "invalid API key"})
		return
	}
	var body map[string]any
	if r.Body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		require.NoError(g.t, json.NewDecoder(r.Body).Decode(&body))
	}
	switch uid, _ := strings.CutPrefix(r.URL.Path, "/api/folders/"); {
	case r.Method == http.MethodGet && uid != r.URL.Path:
		if f, ok := g.folders[uid]; ok {
			reply(http.StatusOK, f)
			return
		}
		reply(http.StatusNotFound, map[string]any{"message": "folder not found"})
	case r.Method == http.MethodPost && r.URL.Path == "/api/folders":
		body["id"] = len(g.folders) + 1
		g.folders[body["uid"].(string)] = body
		reply(http.StatusOK, body)
	case strings.HasPrefix(r.URL.Path, "/api/datasources/uid/"):
		uid := strings.TrimPrefix(r.URL.Path, "/api/datasources/uid/")
		switch r.Method {
		case http.MethodGet:
			if ds, ok := g.datasources[uid]; ok {
				reply(http.StatusOK, ds)
				return
			}
			reply(http.StatusNotFound, map[string]any{"message": "Data source not found"})
		case http.MethodPut:
			g.datasources[uid] = body
			reply(http.StatusOK, map[string]any{"id": 1, "message": "Datasource updated", "name": body["name"], "datasource": body})
		}
	case r.Method == http.MethodPost && r.URL.Path == "/api/datasources":
		g.datasources[body["uid"].(string)] = body
		reply(http.StatusOK, map[string]any{"id": 1, "message": "Datasource added", "name": body["name"], "datasource": body})
	case r.Method == http.MethodPost && r.URL.Path == "/api/dashboards/db":
		d := body["dashboard"].(map[string]any)
		uid := d["uid"].(string)
		if _, exists := g.dashboards[uid]; exists && body["overwrite"] != true {
			reply(http.StatusPreconditionFailed, map[string]any{"message": "A dashboard with the same uid already exists", "status": "name-exists"})
			return
		}
		g.dashboards[uid] = body
		g.versions[uid]++
		reply(http.StatusOK, map[string]any{"id": 1, "uid": uid, "url": "/d/" + uid + "/x", "status": "success", "version": g.versions[uid], "folderUid": body["folderUid"]})
	default:
		reply(http.StatusNotFound, map[string]any{"message": "not found"})
	}
}

func (g *fakeGrafana) takeRequests() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.requests
	g.requests = nil
	return r
}

func pushConfig(url, token string) PushConfig {
	return PushConfig{GrafanaURL: url, Token: token, Datasource: Datasource{GaleURL: "http://gale.example:8080/", Token: "gale-secret"}}
}

func TestPushCreatesThenOverwrites(t *testing.T) {
	g, srv := newFakeGrafana(t, "sa-token")
	ds := shippedDashboards(t)
	ctx := context.Background()

	res, err := Push(ctx, pushConfig(srv.URL, "sa-token"), ds)
	require.NoError(t, err)
	require.True(t, res.FolderCreated)
	require.True(t, res.DatasourceCreated)
	require.Len(t, res.Dashboards, len(ds))
	want := []string{"GET /api/health", "GET /api/folders/gale", "POST /api/folders", "GET /api/datasources/uid/gale", "POST /api/datasources"}
	for range ds {
		want = append(want, "POST /api/dashboards/db")
	}
	require.Equal(t, want, g.takeRequests())

	require.Equal(t, map[string]any{"uid": FolderUID, "title": FolderTitle, "id": 1}, g.folders[FolderUID])
	src := g.datasources[DatasourceUID]
	require.Equal(t, "prometheus", src["type"])
	require.Equal(t, "proxy", src["access"])
	require.Equal(t, "http://gale.example:8080/prometheus", src["url"])
	require.Equal(t, "Authorization", src["jsonData"].(map[string]any)["httpHeaderName1"])
	require.Equal(t, map[string]any{"httpHeaderValue1": "Bearer gale-secret"}, src["secureJsonData"])
	for _, d := range ds {
		saved := g.dashboards[d.UID]
		require.NotNil(t, saved, d.UID)
		require.Equal(t, FolderUID, saved["folderUid"])
		require.Equal(t, true, saved["overwrite"])
		model := saved["dashboard"].(map[string]any)
		require.Nil(t, model["id"], "Grafana matches dashboards by uid")
		require.Equal(t, d.Title, model["title"])
		var shipped map[string]any
		require.NoError(t, json.Unmarshal(d.JSON, &shipped))
		shipped["id"] = nil
		require.Equal(t, shipped, model, "the dashboard JSON is sent as shipped")
	}

	// A second push changes nothing but versions: the folder stays, the data
	// source is updated in place, every dashboard is overwritten.
	src["url"] = "http://stale:1/prometheus"
	res, err = Push(ctx, pushConfig(srv.URL, "sa-token"), ds)
	require.NoError(t, err)
	require.False(t, res.FolderCreated)
	require.False(t, res.DatasourceCreated)
	want = []string{"GET /api/health", "GET /api/folders/gale", "GET /api/datasources/uid/gale", "PUT /api/datasources/uid/gale"}
	for range ds {
		want = append(want, "POST /api/dashboards/db")
	}
	require.Equal(t, want, g.takeRequests())
	require.Len(t, g.folders, 1)
	require.Len(t, g.datasources, 1)
	require.Equal(t, "http://gale.example:8080/prometheus", g.datasources[DatasourceUID]["url"])
	require.Len(t, g.dashboards, len(ds))
	for _, d := range ds {
		require.Equal(t, 2, g.versions[d.UID], d.UID)
	}
}

func TestPushErrors(t *testing.T) {
	_, srv := newFakeGrafana(t, "sa-token")
	notGrafana := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notGrafana.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name, url, token, want string
	}{
		{"wrong token", srv.URL, "wrong", "Grafana at " + srv.URL + " refused the token (401 Unauthorized) to get folder gale: pass a valid service account token with --token"},
		{"unreachable", closed.URL, "sa-token", "cannot reach Grafana at " + closed.URL + ": "},
		{"not Grafana", notGrafana.URL, "sa-token", notGrafana.URL + " does not look like Grafana: GET /api/health"},
		{"no scheme", "127.0.0.1:3000", "sa-token", `grafana url "127.0.0.1:3000": want http(s)://HOST:PORT`},
		{"no token", srv.URL, "", "no Grafana token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Push(context.Background(), pushConfig(tc.url, tc.token), shippedDashboards(t))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestPushCommand(t *testing.T) {
	g, srv := newFakeGrafana(t, "sa-token")
	tokenFile := testkit.WriteFile(t, t.TempDir(), "admin.token", "gale-secret\n")

	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{"pushes", []string{"--grafana-url", srv.URL, "--token", "sa-token", "--gale-token-file", tokenFile}, "",
			`folder "Gale" created, data source "gale" (http://127.0.0.1:8080/prometheus) created, 6 dashboards saved:`},
		{"pushes again", []string{"--grafana-url", srv.URL, "--token", "sa-token", "--gale-token-file", tokenFile}, "",
			`folder "Gale" updated, data source "gale" (http://127.0.0.1:8080/prometheus) updated, 6 dashboards saved:`},
		{"wrong token", []string{"--grafana-url", srv.URL, "--token", "nope", "--gale-token-file", tokenFile}, "401 Unauthorized", ""},
		{"no Gale token", []string{"--grafana-url", srv.URL, "--token", "sa-token", "--gale-token-file", filepath.Join(t.TempDir(), "missing")}, "read Gale token", ""},
		{"no url", []string{"--token", "sa-token"}, ErrUsage.Error(), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			err := Main(context.Background(), append([]string{"push"}, tc.args...), &stdout, &stderr)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Contains(t, stdout.String(), tc.wantOut)
			require.Contains(t, stdout.String(), srv.URL+"/d/gale-fleet/x")
		})
	}
	require.Equal(t, "Bearer gale-secret", g.datasources[DatasourceUID]["secureJsonData"].(map[string]any)["httpHeaderValue1"])
}

func TestExportCommand(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr strings.Builder
	require.NoError(t, Main(context.Background(), []string{"export", "--gale-url", "http://gale:8080", dir}, &stdout, &stderr))
	for _, d := range shippedDashboards(t) {
		b, err := os.ReadFile(filepath.Join(dir, "dashboards", d.File))
		require.NoError(t, err)
		require.Equal(t, d.JSON, b)
	}
	var provider struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Folder    string `yaml:"folder"`
			FolderUID string `yaml:"folderUid"`
			Type      string `yaml:"type"`
			Options   struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "dashboards", "gale.yaml"), &provider)
	require.Equal(t, 1, provider.APIVersion)
	require.Len(t, provider.Providers, 1)
	require.Equal(t, "file", provider.Providers[0].Type)
	require.Equal(t, FolderUID, provider.Providers[0].FolderUID)
	require.Equal(t, filepath.Join(dir, "dashboards"), provider.Providers[0].Options.Path)

	var sources struct {
		Datasources []struct {
			Name, UID, Type, URL, Access string
			JSONData                     map[string]any    `yaml:"jsonData"`
			SecureJSONData               map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(dir, "provisioning", "datasources", "gale.yaml"), &sources)
	require.Len(t, sources.Datasources, 1)
	src := sources.Datasources[0]
	require.Equal(t, []string{DatasourceUID, "prometheus", "http://gale:8080/prometheus", "proxy"}, []string{src.UID, src.Type, src.URL, src.Access})
	require.Equal(t, "Authorization", src.JSONData["httpHeaderName1"])
	require.Equal(t, "Bearer ${GALE_TOKEN}", src.SecureJSONData["httpHeaderValue1"], "the token comes from Grafana's environment, not the file")

	b, err := os.ReadFile(filepath.Join(dir, "prometheus", "gale-scrape.yml"))
	require.NoError(t, err)
	require.Equal(t, ScrapeConfig(), b)
	require.Contains(t, stdout.String(), fmt.Sprintf("$%s", TokenEnv))

	require.ErrorIs(t, Main(context.Background(), []string{"export"}, &stdout, &stderr), ErrUsage)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v))
}

func TestLintCommand(t *testing.T) {
	var stdout, stderr strings.Builder
	require.NoError(t, Main(context.Background(), []string{"lint"}, &stdout, &stderr))
	require.Equal(t, "6 dashboards OK\n", stdout.String())

	bad := modify(t, func(m map[string]any) { firstTarget(m)["expr"] = `count(WTUR_TurStt{org=~"$org", site=~"$site"})` })
	file := filepath.Join(t.TempDir(), "fleet.json")
	b, err := json.Marshal(json.RawMessage(bad.JSON))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, b, 0o644))
	stdout.Reset()
	err = Main(context.Background(), []string{"lint", file}, &stdout, &stderr)
	require.ErrorIs(t, err, ErrProblems)
	require.Contains(t, stdout.String(), `fleet.json: panel 1 "Sites": metric WTUR_TurStt is not exported by Gale`)
}

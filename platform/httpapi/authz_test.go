package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/command"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

type fakeRules struct{}

func (fakeRules) Rules() []rules.RuleInfo { return nil }
func (fakeRules) Reload() error           { return nil }
func (fakeRules) Pending() []api.Alert    { return nil }

type fakeCommands struct{}

func (fakeCommands) Invoke(context.Context, string, string, string, json.RawMessage, time.Duration) (api.Command, error) {
	return api.Command{}, command.ErrUnknownDevice
}

func (fakeCommands) Wait(context.Context, string) (api.Command, error) {
	return api.Command{}, command.ErrUnknownDevice
}

// acctServer is a server with every part of the API (fake rules and
// commands) over a registry with orgs acme and beta, device sensor/d1 in
// acme, and a token of each kind of caller.
type acctServer struct {
	srv    *Server
	url    string
	reg    *registry.Registry
	prom   *prometheus.Registry
	tokens map[string]string // caller → bearer token ("" none)
}

// The callers of the matrix, and the role each has ("" none).
var callers = []struct{ name, role string }{
	{"none", ""},
	{"expired", ""},
	{"revoked", ""},
	{"viewer", api.RoleViewer},
	{"operator", api.RoleOperator},
	{"admin", api.RoleAdmin},
	{"cluster-admin", api.RoleAdmin},
}

func startAcctServer(t *testing.T) *acctServer {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	prom := prometheus.NewRegistry()
	rg, err := registry.Open(filepath.Join(t.TempDir(), "registry.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rg.Close()) })
	for _, org := range []string{"acme", "beta"} {
		_, err = rg.PutAsset(ctx, api.Asset{ID: org, Kind: api.AssetOrg})
		require.NoError(t, err)
	}
	_, err = rg.PutAsset(ctx, api.Asset{ID: "north", Kind: api.AssetSite, Parent: "acme"})
	require.NoError(t, err)
	require.NoError(t, rg.PutProduct(ctx, api.Product{Key: "sensor", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "T", Type: api.TypeFloat}}}}, false))
	_, err = rg.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north", Enabled: true})
	require.NoError(t, err)

	tokens := map[string]string{"none": ""}
	tokens["cluster-admin"], err = rg.CreateToken(ctx, "root")
	require.NoError(t, err)
	for _, role := range []string{api.RoleViewer, api.RoleOperator, api.RoleAdmin} {
		tokens[role], _, err = rg.IssueToken(ctx, registry.TokenSpec{Name: role, Org: "acme", Role: role, TTL: time.Hour})
		require.NoError(t, err)
	}
	var revoked api.Token
	tokens["revoked"], revoked, err = rg.IssueToken(ctx, registry.TokenSpec{Name: "gone", Org: "acme", Role: api.RoleAdmin})
	require.NoError(t, err)
	_, err = rg.RevokeToken(ctx, revoked.ID)
	require.NoError(t, err)
	// An expired admin token, as another node would announce it.
	tokens["expired"] = "an-expired-admin-token"
	sum := sha256.Sum256([]byte(tokens["expired"]))
	require.NoError(t, rg.Apply(ctx, api.RegistryChange{Kind: api.ChangeToken, Key: hex.EncodeToString(sum[:]), Origin: "other",
		Token: &api.Token{ID: "texpired", Name: "old", Org: "acme", Role: api.RoleAdmin, Kind: api.TokenAPI,
			CreatedAt: time.Now().Add(-2 * time.Hour).UnixMilli(), ExpiresAt: time.Now().Add(-time.Hour).UnixMilli()}}))

	db, _ := tsdbtest.OpenWithSeries(t, 2)
	srv, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Registry: rg, Storage: db, Engine: tsdbtest.NewEngine(t, tsdb.QueryConfig{}, log, prom),
		Latest: ingest.NewLatest(), Rules: fakeRules{}, Commands: fakeCommands{}, Gatherer: prom,
		Extra: map[string]http.Handler{"/twins/v1/clock": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
		})},
	}, log, prom)
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &acctServer{srv: srv, url: "http://" + srv.Addr(), reg: rg, prom: prom, tokens: tokens}
}

// call sends body (JSON-encoded unless a string) with token and returns the status and the body.
func (s *acctServer) call(t *testing.T, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(t, err)
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// samplePath fills a route pattern's wildcards with sample values.
func samplePath(path string) string {
	switch path {
	case "/prometheus/":
		return "/prometheus/api/v1/labels"
	case "/api/v1/stream":
		return path + "?once=true"
	}
	return strings.NewReplacer("{pk}", "sensor", "{dk}", "d1", "{id}", "1", "{service}", "reboot", "{point}", "T").Replace(path)
}

// TestRoleEndpointMatrix sends every authenticated route of the API as each
// kind of caller: no, an expired or a revoked token get 401; a role below
// the route's gets 403; a role at or above it gets anything but 401 or 403.
func TestRoleEndpointMatrix(t *testing.T) {
	s := startAcctServer(t)

	// The table and the routes agree: every route has a role, no role is for a route that is not served.
	var registered []string
	for _, rt := range s.srv.Routes() {
		if _, ok := RouteRoles[rt.Pattern]; ok {
			registered = append(registered, rt.Pattern)
		}
	}
	var table []string
	for p := range RouteRoles {
		table = append(table, p)
	}
	sort.Strings(registered)
	sort.Strings(table)
	require.Equal(t, table, registered)

	type request struct{ method, path, role string }
	var requests []request
	for _, rt := range s.srv.Routes() {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		if !ok {
			method, path = http.MethodGet, rt.Pattern
		}
		if _, inTable := RouteRoles[rt.Pattern]; !inTable { // a Deps.Extra handler: role by method
			requests = append(requests, request{http.MethodGet, path, api.RoleViewer}, request{http.MethodPost, path, api.RoleOperator})
			continue
		}
		requests = append(requests, request{method, samplePath(path), rt.Role})
	}
	require.Greater(t, len(requests), len(RouteRoles))

	for _, c := range callers {
		for _, rq := range requests {
			var body any
			if rq.method == http.MethodPost || rq.method == http.MethodPut || rq.method == http.MethodPatch {
				body = "{}"
			}
			code, b := s.call(t, s.tokens[c.name], rq.method, rq.path, body)
			what := fmt.Sprintf("%s %s as %s (route needs %s): %d %s", rq.method, rq.path, c.name, rq.role, code, b)
			switch {
			case c.role == "":
				require.Equal(t, http.StatusUnauthorized, code, what)
			case api.RoleRank(c.role) < api.RoleRank(rq.role):
				require.Equal(t, http.StatusForbidden, code, what)
				require.Contains(t, string(b), "needs role "+rq.role, what)
			default:
				require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code, what)
				require.Less(t, code, 500, what)
			}
		}
	}

	// The public routes need no token.
	for _, pub := range PublicRoutes {
		method, path, _ := strings.Cut(pub, " ")
		code, b := s.call(t, "", method, path, nil)
		require.NotEqual(t, http.StatusUnauthorized, code, "%s: %s", pub, b)
	}
}

func TestUnauthenticatedMessages(t *testing.T) {
	s := startAcctServer(t)
	for caller, want := range map[string]string{"none": "missing bearer token", "expired": "token expired", "revoked": "token revoked"} {
		code, b := s.call(t, s.tokens[caller], http.MethodGet, "/api/v1/products", nil)
		require.Equal(t, http.StatusUnauthorized, code)
		require.Contains(t, string(b), want)
	}
	code, b := s.call(t, "not-a-token", http.MethodGet, "/api/v1/products", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, string(b), "invalid token")
}

func TestTokenAPI(t *testing.T) {
	s := startAcctServer(t)
	root, orgAdmin := s.tokens["cluster-admin"], s.tokens["admin"]

	var made struct {
		api.Token
		Secret string `json:"token"`
	}
	code, b := s.call(t, root, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "grafana", "org": "acme", "role": "viewer", "expiresIn": "24h"})
	require.Equal(t, http.StatusCreated, code, string(b))
	require.NoError(t, json.Unmarshal(b, &made))
	require.NotEmpty(t, made.Secret)
	require.NotEmpty(t, made.ID)
	require.Equal(t, "acme", made.Org)
	require.InDelta(t, time.Now().Add(24*time.Hour).UnixMilli(), made.ExpiresAt, 5000)

	code, _ = s.call(t, made.Secret, http.MethodGet, "/api/v1/products", nil)
	require.Equal(t, http.StatusOK, code)
	code, b = s.call(t, made.Secret, http.MethodPost, "/api/v1/products", api.Product{Key: "x"})
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, string(b), "needs role admin")

	// Listed without secrets; an org admin sees its org's tokens only.
	code, b = s.call(t, root, http.MethodGet, "/api/v1/tokens", nil)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, string(b), made.Secret)
	require.Contains(t, string(b), `"name":"grafana"`)
	require.Contains(t, string(b), `"name":"root"`)
	code, b = s.call(t, orgAdmin, http.MethodGet, "/api/v1/tokens", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(b), `"name":"grafana"`)
	require.NotContains(t, string(b), `"name":"root"`)

	// What an org admin may make.
	for _, tc := range []struct {
		body map[string]any
		want int
	}{
		{map[string]any{"name": "mine", "role": "operator"}, http.StatusCreated}, // org omitted: its own
		{map[string]any{"name": "mine2", "org": "acme", "role": "admin"}, http.StatusCreated},
		{map[string]any{"name": "all", "org": "", "role": "viewer"}, http.StatusForbidden},
		{map[string]any{"name": "theirs", "org": "beta", "role": "viewer"}, http.StatusForbidden},
	} {
		code, b := s.call(t, orgAdmin, http.MethodPost, "/api/v1/tokens", tc.body)
		require.Equal(t, tc.want, code, "%v: %s", tc.body, b)
		if code == http.StatusCreated {
			require.Contains(t, string(b), `"org":"acme"`)
		}
	}
	// Inputs are checked.
	for _, body := range []any{
		map[string]any{"name": "x"},
		map[string]any{"name": "x", "role": "root"},
		map[string]any{"name": "", "role": "viewer"},
		map[string]any{"name": "has space", "role": "viewer"},
		map[string]any{"name": "x", "role": "viewer", "org": "ghost"},
		map[string]any{"name": "x", "role": "viewer", "org": "north"},
		map[string]any{"name": "x", "role": "viewer", "expiresIn": "1s"},
		map[string]any{"name": "x", "role": "viewer", "expiresIn": "100000h"},
		map[string]any{"name": "x", "role": "viewer", "expiresIn": "soon"},
		map[string]any{"name": "x", "role": "viewer", "colour": "red"},
		"not json",
	} {
		code, b := s.call(t, root, http.MethodPost, "/api/v1/tokens", body)
		require.Equal(t, http.StatusBadRequest, code, "%v: %s", body, b)
		require.Contains(t, string(b), `"error"`)
	}

	// Revocation is effective at once; an org admin cannot reach another org's (or a cluster) token.
	var rootID string
	for _, tk := range s.reg.Tokens() {
		if tk.Name == "root" {
			rootID = tk.ID
		}
	}
	code, _ = s.call(t, orgAdmin, http.MethodDelete, "/api/v1/tokens/"+rootID, nil)
	require.Equal(t, http.StatusNotFound, code)
	code, b = s.call(t, orgAdmin, http.MethodDelete, "/api/v1/tokens/"+made.ID, nil)
	require.Equal(t, http.StatusOK, code, string(b))
	require.Contains(t, string(b), `"revoked":true`)
	code, b = s.call(t, made.Secret, http.MethodGet, "/api/v1/products", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, string(b), "revoked")
	code, _ = s.call(t, root, http.MethodDelete, "/api/v1/tokens/tnosuch", nil)
	require.Equal(t, http.StatusNotFound, code)
}

func TestDeviceSecretForAdminsOnly(t *testing.T) {
	s := startAcctServer(t)
	d, ok := s.reg.Device("sensor", "d1")
	require.True(t, ok)
	for caller, sees := range map[string]bool{"viewer": false, "operator": false, "admin": true, "cluster-admin": true} {
		for _, path := range []string{"/api/v1/devices/sensor/d1", "/api/v1/devices"} {
			code, b := s.call(t, s.tokens[caller], http.MethodGet, path, nil)
			require.Equal(t, http.StatusOK, code)
			require.Equal(t, sees, strings.Contains(string(b), d.Secret), "%s %s", caller, path)
		}
	}
	// An admin of another org does not see it.
	beta, _, err := s.reg.IssueToken(context.Background(), registry.TokenSpec{Name: "beta-admin", Org: "beta", Role: api.RoleAdmin})
	require.NoError(t, err)
	_, b := s.call(t, beta, http.MethodGet, "/api/v1/devices/sensor/d1", nil)
	require.NotContains(t, string(b), d.Secret)
}

func TestUsersAndLogin(t *testing.T) {
	s := startAcctServer(t)
	root := s.tokens["cluster-admin"]
	const pw = "a long enough password"
	code, b := s.call(t, root, http.MethodPost, "/api/v1/users", map[string]any{"name": "ops", "password": "short", "org": "acme", "role": "operator"})
	require.Equal(t, http.StatusBadRequest, code, string(b))
	code, b = s.call(t, root, http.MethodPost, "/api/v1/users", map[string]any{"name": "ops", "password": pw, "org": "acme", "role": "operator"})
	require.Equal(t, http.StatusCreated, code, string(b))
	require.NotContains(t, string(b), "password")
	require.NotContains(t, string(b), "$2")
	code, _ = s.call(t, root, http.MethodPost, "/api/v1/users", map[string]any{"name": "ops", "password": pw, "org": "acme", "role": "operator"})
	require.Equal(t, http.StatusConflict, code)
	code, b = s.call(t, s.tokens["admin"], http.MethodPost, "/api/v1/users", map[string]any{"name": "spy", "password": pw, "org": "beta", "role": "viewer"})
	require.Equal(t, http.StatusForbidden, code, string(b))
	code, b = s.call(t, root, http.MethodGet, "/api/v1/users", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(b), `"name":"ops"`)
	require.NotContains(t, string(b), "$2")

	var session struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expiresAt"`
	}
	code, b = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]any{"user": "ops", "password": pw})
	require.Equal(t, http.StatusOK, code, string(b))
	require.NoError(t, json.Unmarshal(b, &session))
	require.InDelta(t, time.Now().Add(registry.SessionTTL).UnixMilli(), session.ExpiresAt, 5000)
	code, _ = s.call(t, session.Token, http.MethodPost, "/api/v1/rules/reload", nil)
	require.Equal(t, http.StatusOK, code, "an operator reloads rules")
	code, b = s.call(t, session.Token, http.MethodPost, "/api/v1/products", api.Product{Key: "x"})
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, string(b), `session \"ops\" has role operator`)
	// An operator acknowledges as itself only.
	code, _ = s.call(t, session.Token, http.MethodPost, "/api/v1/alerts/1/ack", map[string]string{"user": "someone-else"})
	require.Equal(t, http.StatusForbidden, code)
	code, _ = s.call(t, session.Token, http.MethodPost, "/api/v1/alerts/1/ack", map[string]string{"user": "ops"})
	require.Equal(t, http.StatusNotFound, code)

	// Failures are counted and, after a few, locked out for a doubling time.
	clock := time.Now()
	s.srv.logins.now = func() time.Time { return clock }
	for i := range loginFreeFailures + 1 {
		code, b = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]any{"user": "ops", "password": "wrong password " + fmt.Sprint(i)})
		require.Equal(t, http.StatusUnauthorized, code, string(b))
		require.Contains(t, string(b), "wrong user name or password")
	}
	code, b = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]any{"user": "ops", "password": pw})
	require.Equal(t, http.StatusTooManyRequests, code, "locked out even with the right password: %s", b)
	clock = clock.Add(2 * time.Second)
	code, _ = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]any{"user": "ops", "password": pw})
	require.Equal(t, http.StatusOK, code, "the lock ends")
	// The client address's failures are not forgotten by one success: its next failure locks it again.
	code, _ = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]any{"user": "nobody", "password": pw})
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]any{"user": "ops", "password": pw})
	require.Equal(t, http.StatusTooManyRequests, code)
	require.Equal(t, float64(loginFreeFailures+2), testMetric(t, s.prom, "gale_http_login_failures_total", "bad_credentials"))
	require.Equal(t, 2.0, testMetric(t, s.prom, "gale_http_login_failures_total", "throttled"))
	code, _ = s.call(t, "", http.MethodPost, "/api/v1/login", `{"user":"ops"}`)
	require.Equal(t, http.StatusBadRequest, code)
}

func testMetric(t *testing.T, g prometheus.Gatherer, name, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestRoutePolicy states the policy RouteRoles must follow, so that a
// route's role cannot drift: reads are a viewer's; commands, alert
// acknowledgements and rule reloads an operator's; every other change, and
// tokens and users, an admin's.
func TestRoutePolicy(t *testing.T) {
	operator := map[string]bool{
		"POST /api/v1/alerts/{id}/ack":                      true,
		"POST /api/v1/rules/reload":                         true,
		"POST /api/v1/devices/{pk}/{dk}/services/{service}": true,
	}
	for pattern, role := range RouteRoles {
		want := api.RoleAdmin
		switch {
		case strings.Contains(pattern, "/tokens") || strings.Contains(pattern, "/users"):
		case operator[pattern]:
			want = api.RoleOperator
		case strings.HasPrefix(pattern, "GET ") || pattern == "/prometheus/":
			want = api.RoleViewer
		}
		require.Equal(t, want, role, pattern)
	}
}

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
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/command"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/registry/registrytest"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/platform/tsdb"
	"github.com/gale-iot/gale/platform/tsdb/tsdbtest"
)

// fakeRules has a rule and a route of each of acme and beta, and cluster ones.
type fakeRules struct{}

func (fakeRules) Rules() []rules.RuleInfo {
	return []rules.RuleInfo{{Name: "acme-hot", Type: rules.TypeThreshold, Org: "acme"}, {Name: "beta-hot", Type: rules.TypeThreshold, Org: "beta"},
		{Name: "fleet-hot", Type: rules.TypeThreshold}}
}

func (fakeRules) ListRoutes() []rules.RouteInfo {
	return []rules.RouteInfo{{Name: "acme-hook", Org: "acme"}, {Name: "beta-hook", Org: "beta"}, {Name: "fleet-hook"}}
}

// Validate checks stream rule files as a node does.
func (fakeRules) Validate(kind string, b []byte) ([]rules.Owned, error) {
	return rules.Set{}.Validate(kind, b)
}

func (fakeRules) Reload() error        { return nil }
func (fakeRules) Pending() []api.Alert { return nil }

type fakeCommands struct{}

func (fakeCommands) Invoke(context.Context, string, string, string, json.RawMessage, time.Duration) (api.Command, error) {
	return api.Command{}, command.ErrUnknownDevice
}

func (fakeCommands) Wait(context.Context, string) (api.Command, error) {
	return api.Command{}, command.ErrUnknownDevice
}

// acctServer is a server with every part of the API (fake rules and
// commands) over a registry with orgs acme and beta, device sensor/d1 at
// site north of acme with a series, an alert and a command, an acme token
// to revoke, and a token of each kind of caller.
type acctServer struct {
	srv    *Server
	url    string
	reg    *registry.Registry
	prom   *prometheus.Registry
	tokens map[string]string // caller → bearer token ("" none)
	// alert, command and token are the ids of acme's alert, command and spare token.
	alert          int64
	command, token string
}

// acmeProduct is acme's own product (sensor is of the public library).
var acmeProduct = api.Product{Key: "gauge", Org: "acme"}

// acmeUser is a user of acme.
var acmeUser = registry.UserSpec{Name: "ann", Password: "ann's long password", Org: "acme", Role: api.RoleViewer}

// The callers of the matrix, the role and the org each has ("" none; org "" is all orgs).
var callers = []struct{ name, role, org string }{
	{"none", "", ""},
	{"expired", "", ""},
	{"revoked", "", ""},
	{"viewer", api.RoleViewer, "acme"},
	{"operator", api.RoleOperator, "acme"},
	{"admin", api.RoleAdmin, "acme"},
	{"beta-viewer", api.RoleViewer, "beta"},
	{"beta-operator", api.RoleOperator, "beta"},
	{"beta-admin", api.RoleAdmin, "beta"},
	{"cluster-viewer", api.RoleViewer, ""},
	{"cluster-admin", api.RoleAdmin, ""},
}

func startAcctServer(t *testing.T) *acctServer {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	prom := prometheus.NewRegistry()
	rg := registrytest.Open(t, "acme", "beta")
	_, err := rg.PutAsset(ctx, api.Asset{ID: "north", Kind: api.AssetSite, Parent: "acme"})
	require.NoError(t, err)
	require.NoError(t, rg.PutProduct(ctx, api.Product{Key: "sensor", Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "T", Type: api.TypeFloat}}}}, false))
	_, err = rg.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north", Enabled: true})
	require.NoError(t, err)
	require.NoError(t, rg.PutProduct(ctx, acmeProduct, false))
	_, err = rg.CreateUser(ctx, acmeUser)
	require.NoError(t, err)

	tokens := map[string]string{"none": ""}
	tokens["cluster-admin"], err = rg.CreateToken(ctx, "root")
	require.NoError(t, err)
	for _, c := range callers {
		if c.role != "" && c.name != "cluster-admin" {
			tokens[c.name], _, err = rg.IssueToken(ctx, registry.TokenSpec{Name: c.name, Org: c.org, Role: c.role, TTL: time.Hour})
			require.NoError(t, err)
		}
	}
	_, spare, err := rg.IssueToken(ctx, registry.TokenSpec{Name: "spare", Org: "acme", Role: api.RoleViewer})
	require.NoError(t, err)
	alert, _, err := rg.FireAlert(ctx, api.Alert{Rule: "hot", Severity: "major", Source: "stream", Key: "sensor/d1", Device: "sensor/d1",
		Site: "north", Org: "acme", StartedAt: 1, FiredAt: 1})
	require.NoError(t, err)
	require.NoError(t, rg.CreateCommand(ctx, api.Command{ID: "c0ffee", ProductKey: "sensor", DeviceKey: "d1", Service: "reboot",
		CreatedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().Add(time.Hour).UnixMilli()}))
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

	db := tsdbtest.Open(t)
	app := db.Appender(ctx)
	_, err = app.Append(0, labels.FromStrings(labels.MetricName, "T", "org", "acme", "site", "north", "product", "sensor", "device", "d1", "point", "T"),
		time.Now().UnixMilli(), 21)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	srv, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Registry: rg, Storage: db, Engine: tsdbtest.NewEngine(t, tsdb.QueryConfig{}, log, prom),
		Latest: ingest.NewLatest(), Rules: fakeRules{}, Commands: fakeCommands{}, Gatherer: prom, Audit: openAudit(t), Runs: openRuns(t),
		Extra: map[string]http.Handler{"/twins/v1/clock": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
		})},
	}, log, prom)
	require.NoError(t, err)
	serve(t, srv)
	return &acctServer{srv: srv, url: "http://" + srv.Addr(), reg: rg, prom: prom, tokens: tokens, alert: alert.ID, command: "c0ffee", token: spare.ID}
}

// restore puts back acme's object that a DELETE of path removed.
func (s *acctServer) restore(t *testing.T, path string) {
	t.Helper()
	var err error
	switch {
	case strings.HasPrefix(path, "/api/v1/products/"):
		err = s.reg.PutProduct(context.Background(), acmeProduct, false)
	case strings.HasPrefix(path, "/api/v1/devices/"):
		_, err = s.reg.CreateDevice(context.Background(), api.Device{ProductKey: "sensor", DeviceKey: "d1", Site: "north", Enabled: true})
	case strings.HasPrefix(path, "/api/v1/users/"):
		_, err = s.reg.CreateUser(context.Background(), acmeUser)
	default:
		t.Fatalf("no way to put back what DELETE %s removed", path)
	}
	require.NoError(t, err)
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
	code, _, out := send(t, method, s.url+path, token, rd, nil)
	return code, out
}

// samplePath fills a route pattern's wildcards with acme's objects; acme
// reports whether the path names one (a device, asset, alert, command or token of acme).
func (s *acctServer) samplePath(path string) (string, bool) {
	if path == "/prometheus/" {
		return "/prometheus/api/v1/series?match[]=" + url.QueryEscape(`{__name__=~".+"}`), false
	}
	if path == "/api/v1/stream" {
		return path + "?once=true", false
	}
	id := "1"
	switch {
	case strings.HasPrefix(path, "/api/v1/assets/"):
		id = "north"
	case strings.HasPrefix(path, "/api/v1/alerts/"):
		id = fmt.Sprint(s.alert)
	case strings.HasPrefix(path, "/api/v1/commands/"):
		id = s.command
	case strings.HasPrefix(path, "/api/v1/tokens/"):
		id = s.token
	}
	acme := strings.Contains(path, "{dk}") || strings.Contains(path, "{id}") || strings.Contains(path, "{name}")
	return strings.NewReplacer("{pk}", "sensor", "{dk}", "d1", "{id}", id, "{service}", "reboot", "{point}", "T", "{name}", acmeUser.Name).Replace(path), acme
}

// ownData is what a list answers an acme or cluster caller (and never a beta one).
var ownData = map[string]string{
	"/api/v1/devices": `"d1"`,
	"/api/v1/assets":  `"north"`,
	"/api/v1/alerts":  `"acme"`,
	"/prometheus/":    `"acme"`,
	"/api/v1/rules":   `"acme-hot"`,
	"/api/v1/routes":  `"acme-hook"`,
}

// TestRoleEndpointMatrix sends every authenticated route of the API as each
// kind of caller: no, an expired or a revoked token get 401; a role below
// the route's gets 403, and so does a caller of one org on a route for all
// orgs; a caller of another org gets 404 for acme's objects and sees
// nothing of acme in lists; acme's and cluster callers get anything but
// 401 or 403, acme's objects and acme's data in lists.
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
	for p := range ClusterRoutes {
		require.Contains(t, RouteRoles, p)
	}

	type request struct {
		method, path, role, list string
		cluster, acme            bool
		// selfOrAdmin: below admin, the route serves only the caller's own user (its session).
		selfOrAdmin bool
	}
	var requests []request
	for _, rt := range s.srv.Routes() {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		if !ok {
			method, path = http.MethodGet, rt.Pattern
		}
		if _, inTable := RouteRoles[rt.Pattern]; !inTable { // a Deps.Extra handler: role by method
			requests = append(requests, request{method: http.MethodGet, path: path, role: api.RoleViewer, cluster: rt.Cluster},
				request{method: http.MethodPost, path: path, role: api.RoleOperator, cluster: rt.Cluster})
			continue
		}
		sample, acme := s.samplePath(path)
		rq := request{method: method, path: sample, role: rt.Role, cluster: rt.Cluster, acme: acme, list: ownData[path],
			selfOrAdmin: path == "/api/v1/users/{name}/password"}
		if path == "/api/v1/products/{pk}" {
			// Of the public library: read by all, changed by cluster accounts only.
			rq.cluster = method != http.MethodGet
			own := rq
			own.path, own.acme, own.cluster = "/api/v1/products/"+acmeProduct.Key, true, false
			requests = append(requests, own)
		}
		requests = append(requests, rq)
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
			case rq.selfOrAdmin && c.role != api.RoleAdmin:
				require.Equal(t, http.StatusForbidden, code, what)
				require.Contains(t, string(b), "changes only its own password", what)
			case rq.cluster && c.org != "":
				require.Equal(t, http.StatusForbidden, code, what)
				require.Regexp(t, "needs a cluster account|public model library, read-only to an org", string(b), what)
			case c.org == "beta" && rq.acme:
				require.Equal(t, http.StatusNotFound, code, what)
				require.NotContains(t, string(b), "acme", what)
			default:
				require.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code, what)
				require.Less(t, code, 500, what)
				if rq.method == http.MethodGet && rq.acme {
					require.Equal(t, http.StatusOK, code, what)
				}
			}
			if code == http.StatusNoContent && rq.method == http.MethodDelete && rq.acme { // put back what was deleted
				s.restore(t, rq.path)
			}
			if rq.method != http.MethodGet || c.role == "" {
				continue
			}
			if c.org == "beta" && !rq.acme { // (a 404 names the object asked for)
				for _, acme := range []string{`"d1"`, "acme", "north"} {
					require.NotContains(t, string(b), acme, what)
				}
			} else if rq.list != "" {
				require.Contains(t, string(b), rq.list, what)
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
	code, _ = s.call(t, session.Token, http.MethodGet, "/api/v1/rules", nil)
	require.Equal(t, http.StatusOK, code, "an operator reads rules")
	code, b = s.call(t, session.Token, http.MethodPost, "/api/v1/products", api.Product{Key: "x"})
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, string(b), `session \"ops\" has role operator`)
	// An operator acknowledges as itself only.
	code, _ = s.call(t, session.Token, http.MethodPost, "/api/v1/alerts/1/ack", map[string]string{"user": "someone-else"})
	require.Equal(t, http.StatusForbidden, code)
	code, _ = s.call(t, session.Token, http.MethodPost, "/api/v1/alerts/999/ack", map[string]string{"user": "ops"})
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
		"POST /api/v1/rules/validate":                       true,
		"POST /api/v1/devices/{pk}/{dk}/services/{service}": true,
		"POST /api/v1/runs":                                 true,
	}
	for pattern, role := range RouteRoles {
		want := api.RoleAdmin
		switch {
		case pattern == "POST /api/v1/users/{name}/password": // a user's own, from its session; the handler checks the rest
			want = api.RoleViewer
		case strings.Contains(pattern, "/tokens") || strings.Contains(pattern, "/users") || pattern == "GET /api/v1/audit":
		case operator[pattern]:
			want = api.RoleOperator
		case strings.HasPrefix(pattern, "GET ") || pattern == "/prometheus/":
			want = api.RoleViewer
		}
		require.Equal(t, want, role, pattern)
	}
}

// TestOrgQueryableNeedsACaller: the Prometheus API's reads of the TSDB fail
// without a caller in their context, read an org's series only for a caller
// of that org, and everything for a cluster account.
func TestOrgQueryableNeedsACaller(t *testing.T) {
	db, now := tsdbtest.OpenWithSeries(t, 2)
	q, err := orgQueryable{db}.Querier(0, now.UnixMilli())
	require.NoError(t, err)
	defer q.Close()
	all := labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, ".+")
	count := func(ctx context.Context) (int, error) {
		set := q.Select(ctx, false, nil, all)
		n := 0
		for set.Next() {
			n++
		}
		return n, set.Err()
	}
	_, err = count(context.Background())
	require.ErrorIs(t, err, errNoCaller)
	_, _, err = q.LabelNames(context.Background(), nil)
	require.ErrorIs(t, err, errNoCaller)
	_, _, err = q.LabelValues(context.Background(), "device", nil)
	require.ErrorIs(t, err, errNoCaller)
	_, err = orgQueryable{db}.ExemplarQuerier(context.Background())
	require.ErrorIs(t, err, errNoCaller)

	for org, want := range map[string]int{"": 2, "demo": 2, "other": 0} {
		ctx := WithPrincipal(context.Background(), registry.Principal{Name: "x", Org: org, Role: api.RoleViewer})
		n, err := count(ctx)
		require.NoError(t, err)
		require.Equal(t, want, n, org)
		values, _, err := q.LabelValues(ctx, "org", nil)
		require.NoError(t, err)
		require.Equal(t, want > 0, slices.Contains(values, "demo"), org)
		names, _, err := q.LabelNames(ctx, nil)
		require.NoError(t, err)
		require.Equal(t, want > 0, slices.Contains(names, "device"), org)
	}
}

// TestOrgAdminChangesItsOrgOnly: an org's admin creates, moves and deletes
// devices and creates sites of its org only; another org's site, gateway or
// parent is answered as a missing one; orgs and the public product library are a cluster admin's.
func TestOrgAdminChangesItsOrgOnly(t *testing.T) {
	s := startAcctServer(t)
	ctx := context.Background()
	_, err := s.reg.PutAsset(ctx, api.Asset{ID: "south", Kind: api.AssetSite, Parent: "beta"})
	require.NoError(t, err)
	_, err = s.reg.CreateDevice(ctx, api.Device{ProductKey: "sensor", DeviceKey: "b1", Site: "south", Enabled: true})
	require.NoError(t, err)
	admin := s.tokens["admin"] // of acme

	for _, tc := range []struct {
		method, path string
		body         any
		want         int
		says         string
	}{
		{http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "a2"}, http.StatusCreated, `"org":"acme"`},
		{http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "a3", "site": "north"}, http.StatusCreated, `"site":"north"`},
		{http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "x", "org": "beta"}, http.StatusForbidden, "devices of org acme only"},
		{http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "x", "site": "south"}, http.StatusBadRequest, `site \"south\" does not exist`},
		{http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "x", "gatewayProductKey": "sensor", "gatewayDeviceKey": "b1"},
			http.StatusBadRequest, "gateway sensor/b1 does not exist"},
		{http.MethodPatch, "/api/v1/devices/sensor/d1", map[string]any{"site": "south"}, http.StatusBadRequest, `site \"south\" does not exist`},
		{http.MethodPatch, "/api/v1/devices/sensor/d1", map[string]any{"gatewayProductKey": "sensor", "gatewayDeviceKey": "b1"}, http.StatusBadRequest, "does not exist"},
		{http.MethodPatch, "/api/v1/devices/sensor/b1", map[string]any{"enabled": false}, http.StatusNotFound, "not found"},
		{http.MethodDelete, "/api/v1/devices/sensor/b1", nil, http.StatusNotFound, "not found"},
		{http.MethodPost, "/api/v1/assets", map[string]any{"id": "east", "kind": "site", "parent": "north"}, http.StatusCreated, `"org":"acme"`},
		{http.MethodPost, "/api/v1/assets", map[string]any{"id": "west", "kind": "site", "parent": "south"}, http.StatusBadRequest, `parent \"south\" does not exist`},
		{http.MethodPost, "/api/v1/assets", map[string]any{"id": "gamma", "kind": "org"}, http.StatusForbidden, "orgs are made by a cluster admin"},
		{http.MethodPost, "/api/v1/products", map[string]any{"productKey": "mine", "org": "beta"}, http.StatusForbidden, "creates products of org acme only"},
		{http.MethodDelete, "/api/v1/products/sensor", nil, http.StatusForbidden, "public model library, read-only to an org"},
		{http.MethodPut, "/api/v1/products/sensor", map[string]any{"name": "mine now"}, http.StatusForbidden, "public model library, read-only to an org"},
	} {
		code, b := s.call(t, admin, tc.method, tc.path, tc.body)
		require.Equal(t, tc.want, code, "%s %s %v: %s", tc.method, tc.path, tc.body, b)
		require.Contains(t, string(b), tc.says, "%s %s %v", tc.method, tc.path, tc.body)
		require.NotContains(t, string(b), "beta", "%s %s %v", tc.method, tc.path, tc.body)
	}
	d, ok := s.reg.Device("sensor", "b1")
	require.True(t, ok)
	require.True(t, d.Enabled)
	// A cluster admin still places anything anywhere.
	code, b := s.call(t, s.tokens["cluster-admin"], http.MethodPatch, "/api/v1/devices/sensor/a2", map[string]any{"site": "south"})
	require.Equal(t, http.StatusBadRequest, code, "a device does not change org: %s", b)
	code, b = s.call(t, s.tokens["cluster-admin"], http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "sensor", "deviceKey": "b2", "site": "south"})
	require.Equal(t, http.StatusCreated, code, string(b))
}

// TestOrgProducts: an org's admin creates, changes and deletes products of
// its org, which only its org sees and uses; every org reads the public
// library and none changes it; a cluster admin manages the library and
// sees every org's products.
func TestOrgProducts(t *testing.T) {
	s := startAcctServer(t)
	admin, beta, root := s.tokens["admin"], s.tokens["beta-admin"], s.tokens["cluster-admin"]
	meter := map[string]any{"productKey": "meter", "model": map[string]any{"measurepoints": []map[string]any{{"id": "kWh", "type": "float"}}}}

	code, b := s.call(t, admin, http.MethodPost, "/api/v1/products", meter)
	require.Equal(t, http.StatusCreated, code, string(b))
	require.Contains(t, string(b), `"org":"acme"`)

	// acme sees, changes and uses its own product; the library stays readable.
	code, b = s.call(t, s.tokens["viewer"], http.MethodGet, "/api/v1/products", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(b), `"meter"`)
	require.Contains(t, string(b), `"sensor"`)
	code, b = s.call(t, admin, http.MethodPut, "/api/v1/products/meter", map[string]any{"name": "Meter v2"})
	require.Equal(t, http.StatusOK, code, string(b))
	require.Contains(t, string(b), `"org":"acme"`, "the org stays when the body names none")
	code, b = s.call(t, admin, http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "meter", "deviceKey": "m1", "site": "north"})
	require.Equal(t, http.StatusCreated, code, string(b))

	// beta neither sees nor uses nor changes acme's product, and cannot
	// make one for acme; its answers are those for a missing product.
	code, b = s.call(t, beta, http.MethodGet, "/api/v1/products", nil)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, string(b), "meter")
	require.Contains(t, string(b), `"sensor"`, "the public library is every org's")
	for _, rq := range []struct {
		method, path string
		body         any
		want         int
		says         string
	}{
		{http.MethodGet, "/api/v1/products/meter", nil, http.StatusNotFound, "product meter not found"},
		{http.MethodPut, "/api/v1/products/meter", map[string]any{"name": "mine"}, http.StatusNotFound, "product meter not found"},
		{http.MethodDelete, "/api/v1/products/meter", nil, http.StatusNotFound, "product meter not found"},
		{http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "meter", "deviceKey": "b9", "org": "beta"}, http.StatusBadRequest, `product \"meter\" does not exist`},
		{http.MethodPost, "/api/v1/products", map[string]any{"productKey": "x", "org": "acme"}, http.StatusForbidden, "creates products of org beta only"},
		{http.MethodPost, "/api/v1/products", map[string]any{"productKey": "sensor"}, http.StatusConflict, "already exists"},
	} {
		code, b := s.call(t, beta, rq.method, rq.path, rq.body)
		require.Equal(t, rq.want, code, "%s %s: %s", rq.method, rq.path, b)
		require.Contains(t, string(b), rq.says, "%s %s", rq.method, rq.path)
		require.NotContains(t, string(b), "acme", "%s %s", rq.method, rq.path)
	}
	// Not even a cluster admin gives beta a device of acme's product, nor moves the product.
	code, b = s.call(t, root, http.MethodPost, "/api/v1/devices", map[string]any{"productKey": "meter", "deviceKey": "b9", "org": "beta"})
	require.Equal(t, http.StatusBadRequest, code, string(b))
	code, b = s.call(t, root, http.MethodPut, "/api/v1/products/meter", map[string]any{"org": "beta"})
	require.Equal(t, http.StatusBadRequest, code, string(b))
	require.Contains(t, string(b), "a product's org does not change")

	// The cluster admin sees every org's products and manages the library.
	code, b = s.call(t, root, http.MethodGet, "/api/v1/products", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(b), `"meter"`)
	code, b = s.call(t, root, http.MethodPost, "/api/v1/products", map[string]any{"productKey": "library-meter"})
	require.Equal(t, http.StatusCreated, code, string(b))
	require.NotContains(t, string(b), `"org"`, "a cluster admin's product without org is the library's")
	code, b = s.call(t, root, http.MethodPost, "/api/v1/products", map[string]any{"productKey": "ghost-org", "org": "gamma"})
	require.Equal(t, http.StatusBadRequest, code, string(b))

	// acme deletes its product once no device uses it.
	code, _ = s.call(t, admin, http.MethodDelete, "/api/v1/products/meter", nil)
	require.Equal(t, http.StatusConflict, code)
	code, _ = s.call(t, admin, http.MethodDelete, "/api/v1/devices/meter/m1", nil)
	require.Equal(t, http.StatusNoContent, code)
	code, b = s.call(t, admin, http.MethodDelete, "/api/v1/products/meter", nil)
	require.Equal(t, http.StatusNoContent, code, string(b))
}

// TestValidateRules: an operator of an org checks a rule or route file of
// its org without loading it; a file of another org or of the cluster is
// refused for it, a bad file is answered with its line, a cluster operator
// checks any.
func TestValidateRules(t *testing.T) {
	s := startAcctServer(t)
	const acmeRules = "org: acme\nrules:\n  - {name: hot, type: threshold, point: T, above: 50}\n"
	const acmeRoutes = "org: acme\nroutes:\n  - name: out\n    actions:\n      - kafka: {topic: acme.out}\n"
	for _, tc := range []struct {
		caller, kind, body string
		want               int
		says               string
	}{
		{"operator", "stream", acmeRules, http.StatusOK, `"org":"acme"`},
		{"operator", "routes", acmeRoutes, http.StatusOK, `"name":"out"`},
		{"operator", "stream", strings.Replace(acmeRules, "acme", "beta", 1), http.StatusBadRequest, `\"hot\" is not of org acme`},
		{"operator", "stream", "rules:\n  - {name: hot, type: threshold, point: T, above: 50}\n", http.StatusBadRequest, "validates its org's rules only"},
		{"operator", "routes", "org: acme\nroutes:\n  - name: leak\n    actions:\n      - kafka: {topic: gale.telemetry}\n", http.StatusBadRequest, "writes to no gale.* topic"},
		{"operator", "stream", "org: acme\nrules:\n  - {name: hot, type: nope}\n", http.StatusBadRequest, "rules.yaml:3"},
		{"operator", "stream", "\x00\xff{[", http.StatusBadRequest, "invalid"},
		{"operator", "promql", "groups: []\n", http.StatusBadRequest, "runs no PromQL rules"},
		{"operator", "", acmeRules, http.StatusBadRequest, "want stream, promql or routes"},
		{"viewer", "stream", acmeRules, http.StatusForbidden, "needs role operator"},
		{"beta-operator", "stream", acmeRules, http.StatusBadRequest, "is not of org beta"},
		{"cluster-admin", "stream", "rules:\n  - {name: fleet, type: threshold, point: T, above: 50}\n", http.StatusOK, `"name":"fleet"`},
	} {
		code, b := s.call(t, s.tokens[tc.caller], http.MethodPost, "/api/v1/rules/validate?kind="+tc.kind, tc.body)
		require.Equal(t, tc.want, code, "%s %s: %s", tc.caller, tc.body, b)
		require.Contains(t, string(b), tc.says, "%s %s", tc.caller, tc.body)
	}
}

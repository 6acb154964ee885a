package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/audit"
	"github.com/gale-iot/gale/platform/registry"
)

// openAudit opens an audit log in a temporary directory.
func openAudit(t *testing.T) *audit.Log {
	t.Helper()
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.db"), audit.DefaultMaxEntries)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l
}

// A change, a command, an acknowledgement, a failed login and an admin's
// read of a device secret are in the audit log with their actor; readers
// are admins only, and an org admin reads only its org's entries.
func TestAuditLog(t *testing.T) {
	s := startAcctServer(t)
	ctx := context.Background()
	root, admin, operator, viewer := s.tokens["cluster-admin"], s.tokens["admin"], s.tokens["operator"], s.tokens["viewer"]
	_, err := s.reg.CreateUser(ctx, registry.UserSpec{Name: "alice", Password: "correct horse battery", Org: "acme", Role: api.RoleViewer})
	require.NoError(t, err)
	alert, _, err := s.reg.FireAlert(ctx, api.Alert{Rule: "hot", Severity: "major", Source: "stream", Key: "sensor/d1", Device: "sensor/d1", Org: "acme", FiredAt: time.Now().UnixMilli()})
	require.NoError(t, err)

	code, b := s.call(t, admin, http.MethodPost, "/api/v1/devices", api.Device{ProductKey: "sensor", DeviceKey: "d2", Site: "north"})
	require.Equal(t, http.StatusCreated, code, string(b))
	code, b = s.call(t, admin, http.MethodPost, "/api/v1/tokens", map[string]any{"name": "ci", "role": "viewer"})
	require.Equal(t, http.StatusCreated, code, string(b))
	var tok struct{ ID, Token string }
	require.NoError(t, json.Unmarshal(b, &tok))
	code, _ = s.call(t, operator, http.MethodPost, "/api/v1/devices/sensor/d1/services/reboot", "{}")
	require.Equal(t, http.StatusNotFound, code, "the fake dispatcher knows no device")
	code, b = s.call(t, operator, http.MethodPost, "/api/v1/alerts/"+jsonNumber(alert.ID)+"/ack", map[string]string{"comment": "on it"})
	require.Equal(t, http.StatusOK, code, string(b))
	code, _ = s.call(t, viewer, http.MethodPost, "/api/v1/rules/reload", nil)
	require.Equal(t, http.StatusForbidden, code)
	code, _ = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]string{"user": "alice", "password": "wrong"})
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = s.call(t, admin, http.MethodGet, "/api/v1/devices/sensor/d1", nil) // shows the secret
	require.Equal(t, http.StatusOK, code)
	code, _ = s.call(t, viewer, http.MethodGet, "/api/v1/devices/sensor/d1", nil) // does not
	require.Equal(t, http.StatusOK, code)
	code, _ = s.call(t, root, http.MethodPost, "/api/v1/assets", api.Asset{ID: "gamma", Kind: api.AssetOrg})
	require.Equal(t, http.StatusCreated, code)

	read := func(token, query string) []audit.Entry {
		t.Helper()
		code, b := s.call(t, token, http.MethodGet, "/api/v1/audit"+query, nil)
		require.Equal(t, http.StatusOK, code, string(b))
		require.NotContains(t, string(b), tok.Token, "a token's secret is never in the log")
		var out []audit.Entry
		require.NoError(t, json.Unmarshal(b, &out))
		return out
	}
	type row struct {
		Actor, Org, Route, Target string
		Status                    int
	}
	rows := func(es []audit.Entry) []row {
		var out []row
		for _, e := range es {
			require.Equal(t, "127.0.0.1", e.Client)
			require.InDelta(t, time.Now().UnixMilli(), e.Time, 60_000)
			out = append(out, row{e.Actor, e.Org, e.Route, e.Target, e.Status})
		}
		return out
	}
	acme := []row{
		{"admin", "acme", "GET /api/v1/devices/{pk}/{dk}", "sensor/d1", 200},
		{"alice", "acme", "POST /api/v1/login", "", 401},
		{"viewer", "acme", "POST /api/v1/rules/reload", "", 403},
		{"operator", "acme", "POST /api/v1/alerts/{id}/ack", jsonNumber(alert.ID), 200},
		{"operator", "acme", "POST /api/v1/devices/{pk}/{dk}/services/{service}", "sensor/d1/reboot", 404},
		{"admin", "acme", "POST /api/v1/tokens", tok.ID, 201},
		{"admin", "acme", "POST /api/v1/devices", "sensor/d2", 201},
	}
	all := read(root, "")
	require.Equal(t, append([]row{{"root", "", "POST /api/v1/assets", "gamma", 201}}, acme...), rows(all), "newest first")
	require.Equal(t, acme, rows(read(admin, "")), "an org admin reads its org's entries only")
	byLogin := read(root, "?actor=alice")
	require.Len(t, byLogin, 1)
	require.Equal(t, "login", byLogin[0].Kind)
	require.Empty(t, byLogin[0].TokenID)
	require.Len(t, read(root, "?actor="+all[1].TokenID), 3, "by token id: the org admin's three")
	require.Equal(t, rows(all[:2]), rows(read(root, "?limit=2")))
	require.Empty(t, read(root, "?since="+time.Now().Add(time.Minute).Format(time.RFC3339)))
	require.Len(t, read(root, "?since="+time.Now().Add(-time.Minute).Format(time.RFC3339)), len(all))

	for _, tc := range []struct {
		token, query string
		want         int
	}{
		{viewer, "", http.StatusForbidden},
		{operator, "", http.StatusForbidden},
		{"", "", http.StatusUnauthorized},
		{root, "?limit=0", http.StatusBadRequest},
		{root, "?limit=100000", http.StatusBadRequest},
		{root, "?limit=x", http.StatusBadRequest},
		{root, "?since=yesterday", http.StatusBadRequest},
	} {
		code, b := s.call(t, tc.token, http.MethodGet, "/api/v1/audit"+tc.query, nil)
		require.Equal(t, tc.want, code, "%s: %s", tc.query, b)
		require.Contains(t, string(b), `"error"`)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestCreatedID reads the id the audit log names a created object by from
// the API's answer, JSON escapes decoded.
func TestCreatedID(t *testing.T) {
	for answer, want := range map[string]string{
		`{"id":"t1","token":"secret"}`: "t1", `{"productKey":"wt","deviceKey":"WT01"}`: "wt/WT01", `{"id":42}`: "42",
		`{"name":"a\/b \u00e9"}`: "a/b é", "{\"key\":\"\xa3\"}": "\ufffd", `[1,2]`: "",
	} {
		require.Equal(t, want, createdID([]byte(answer)), answer)
	}
}

// FuzzCreatedID reads ids from answers, cut anywhere: no panic, and the id
// is valid UTF-8 and no longer than the answer with every byte made U+FFFD.
func FuzzCreatedID(f *testing.F) {
	for _, s := range []string{`{"id":"t1","token":"secret"}`, `{"key":"wt","model":{"measurepoints":[`, `{"productKey":"wt","deviceKey":"WT01"}`,
		`{"id":42}`, `{"name":"ops"}`, `[1,2]`, `{"id":`, `"x"`, ``, `{"id":"\u00e9\"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		id := createdID(answer)
		require.True(t, utf8.ValidString(id), "%q", id)
		require.LessOrEqual(t, len(id), 3*len(answer)+1, "at most the answer, each invalid byte made U+FFFD (and a '/')")
	})
}

// Bad tokens and throttled logins are audited summed per client, kind and
// reason within a window, and past maxRefusalKeys of those into one entry:
// a flood writes a bounded number of entries.
func TestAuditRefusalsSummed(t *testing.T) {
	s := startAcctServer(t)
	ctx := context.Background()
	_, err := s.reg.CreateUser(ctx, registry.UserSpec{Name: "alice", Password: "correct horse battery", Org: "acme", Role: api.RoleViewer})
	require.NoError(t, err)
	for range 50 {
		code, _ := s.call(t, "not-a-token", http.MethodGet, "/api/v1/devices", nil)
		require.Equal(t, http.StatusUnauthorized, code)
	}
	code, _ := s.call(t, "", http.MethodGet, "/api/v1/devices", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = s.call(t, s.tokens["revoked"], http.MethodGet, "/api/v1/devices", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	throttled := 0
	for range 10 {
		code, _ = s.call(t, "", http.MethodPost, "/api/v1/login", map[string]string{"user": "alice", "password": "wrong wrong wrong"})
		if code == http.StatusTooManyRequests {
			throttled++
		}
	}
	require.Positive(t, throttled, "the fourth failure locks alice out")
	// Requests from more clients and reasons than are followed (as the
	// aggregator sees them: the client address is the request's).
	for i := range maxRefusalKeys + 30 {
		r, _ := http.NewRequest(http.MethodGet, "/api/v1/devices", nil)
		r.RemoteAddr = fmt.Sprintf("10.0.%d.%d:1234", i/250, i%250)
		s.srv.refused.add(r, auditBadToken, "unknown token", "", "", http.StatusUnauthorized)
	}
	s.srv.flushRefusals()
	entries, err := s.srv.deps.Audit.Query(ctx, audit.Filter{AllOrgs: true, Limit: audit.MaxLimit})
	require.NoError(t, err)
	byTarget := map[string]audit.Entry{}
	refusals := 0
	for _, e := range entries {
		if e.Kind == auditBadToken || e.Kind == auditThrottled || e.Kind == "refused" {
			refusals++
			byTarget[e.Kind+" "+e.Client+" "+e.Target] = e
		}
	}
	require.Equal(t, maxRefusalKeys+1, refusals, "one entry per followed key, one for the rest")
	require.Contains(t, byTarget, auditBadToken+" 127.0.0.1 unknown token ×50")
	require.Contains(t, byTarget, auditBadToken+" 127.0.0.1 no token ×1")
	require.Contains(t, byTarget, auditBadToken+" 127.0.0.1 revoked token ×1")
	th := byTarget[auditThrottled+" 127.0.0.1 too many failed logins ×"+fmt.Sprint(throttled)]
	require.Equal(t, "alice", th.Actor)
	require.Equal(t, "acme", th.Org, "its org's admins see it")
	require.Equal(t, http.StatusTooManyRequests, th.Status)
	found := false
	for k, e := range byTarget {
		if e.Kind == "refused" {
			found = true
			require.Contains(t, k, fmt.Sprintf("×%d", maxRefusalKeys+30-(maxRefusalKeys-4)), "the rest summed")
		}
	}
	require.True(t, found)
	s.srv.flushRefusals()
	again, err := s.srv.deps.Audit.Query(ctx, audit.Filter{AllOrgs: true, Limit: audit.MaxLimit})
	require.NoError(t, err)
	require.Len(t, again, len(entries), "a window is written once")
	code, b := s.call(t, s.tokens["admin"], http.MethodGet, "/api/v1/audit", nil)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, string(b), "not-a-token", "no token is ever stored")
}

// A user changes its own password from its session (giving the current
// one); an admin of its org changes it or deletes the user; either ends
// the user's sessions. Another org's admin finds no such user.
func TestUserPasswordAndDelete(t *testing.T) {
	s := startAcctServer(t)
	const pw, pw2, pw3 = "ann's long password", "ann's new password", "the admin's choice"
	login := func(password string) (int, string) {
		code, b := s.call(t, "", http.MethodPost, "/api/v1/login", map[string]string{"user": "ann", "password": password})
		var out struct{ Token string }
		_ = json.Unmarshal(b, &out)
		return code, out.Token
	}
	code, session := login(pw)
	require.Equal(t, http.StatusOK, code)
	path := "/api/v1/users/ann/password"

	code, b := s.call(t, session, http.MethodPost, path, map[string]string{"password": pw2, "currentPassword": "not it"})
	require.Equal(t, http.StatusForbidden, code, string(b))
	require.Contains(t, string(b), "currentPassword is wrong")
	code, b = s.call(t, session, http.MethodPost, path, map[string]string{"password": "short", "currentPassword": pw})
	require.Equal(t, http.StatusBadRequest, code, string(b))
	code, b = s.call(t, session, http.MethodPost, "/api/v1/users/nobody/password", map[string]string{"password": pw2})
	require.Equal(t, http.StatusForbidden, code, "a viewer's session changes its own password only: %s", b)
	code, b = s.call(t, session, http.MethodPost, path, map[string]string{"password": pw2, "currentPassword": pw})
	require.Equal(t, http.StatusNoContent, code, string(b))
	code, _ = s.call(t, session, http.MethodGet, "/api/v1/devices", nil)
	require.Equal(t, http.StatusUnauthorized, code, "the session ended with the password")
	code, _ = login(pw)
	require.Equal(t, http.StatusUnauthorized, code)
	code, session = login(pw2)
	require.Equal(t, http.StatusOK, code)

	code, b = s.call(t, s.tokens["beta-admin"], http.MethodPost, path, map[string]string{"password": pw3})
	require.Equal(t, http.StatusNotFound, code, string(b))
	code, b = s.call(t, s.tokens["beta-admin"], http.MethodDelete, "/api/v1/users/ann", nil)
	require.Equal(t, http.StatusNotFound, code, string(b))
	require.NotContains(t, string(b), "acme")
	code, b = s.call(t, s.tokens["admin"], http.MethodPost, path, map[string]string{"password": pw3})
	require.Equal(t, http.StatusNoContent, code, string(b))
	code, _ = s.call(t, session, http.MethodGet, "/api/v1/devices", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, session = login(pw3)
	require.Equal(t, http.StatusOK, code)

	code, b = s.call(t, s.tokens["admin"], http.MethodDelete, "/api/v1/users/ann", nil)
	require.Equal(t, http.StatusNoContent, code, string(b))
	code, _ = s.call(t, session, http.MethodGet, "/api/v1/devices", nil)
	require.Equal(t, http.StatusUnauthorized, code, "a deleted user's sessions end")
	code, _ = login(pw3)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = s.call(t, s.tokens["admin"], http.MethodDelete, "/api/v1/users/ann", nil)
	require.Equal(t, http.StatusNotFound, code)
	entries, err := s.srv.deps.Audit.Query(context.Background(), audit.Filter{Org: "acme", Actor: "admin"})
	require.NoError(t, err)
	require.Equal(t, "DELETE /api/v1/users/{name}", entries[0].Route, "audited")
}

package httpapi

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// Bounds of a new API token's lifetime (expiresIn).
const (
	defaultTokenTTL = 90 * 24 * time.Hour
	minTokenTTL     = time.Minute
)

// tokenRequest is the body of POST /api/v1/tokens.
type tokenRequest struct {
	Name string `json:"name"`
	// Org is the token's org; omitted, the caller's org (all orgs for a cluster admin).
	Org  *string `json:"org"`
	Role string  `json:"role"`
	// ExpiresIn is a duration such as "720h" or seconds; omitted, 90 days.
	ExpiresIn string `json:"expiresIn"`
}

// newToken is the answer of POST /api/v1/tokens and /api/v1/login: the
// secret, shown this once.
type newToken struct {
	api.Token
	Secret string `json:"token"`
}

// grantable is the org of a new token or user (the caller's when org is
// nil) if the caller may grant role in it; otherwise it answers 400 for an
// unknown role or 403 for a grant beyond the caller's own.
func grantable(w http.ResponseWriter, r *http.Request, org *string, role string) (string, bool) {
	p := principal(r)
	o := p.Org
	if org != nil {
		o = *org
	}
	if role == "" {
		writeError(w, http.StatusBadRequest, "role is required: viewer, operator or admin")
		return "", false
	}
	if api.RoleRank(role) == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("role %q, want viewer, operator or admin", role))
		return "", false
	}
	if err := registry.CheckGrant(p, o, role); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return "", false
	}
	return o, true
}

// routeAccounts serves the API tokens and the users.
func (s *Server) routeAccounts(mux *http.ServeMux) {
	s.handle(mux, "POST /api/v1/tokens", s.issueToken)
	s.handle(mux, "GET /api/v1/tokens", s.listTokens)
	s.handle(mux, "DELETE /api/v1/tokens/{id}", s.revokeToken)
	s.handle(mux, "POST /api/v1/users", s.createUser)
	s.handle(mux, "GET /api/v1/users", s.listUsers)
	s.handle(mux, "DELETE /api/v1/users/{name}", s.deleteUser)
	s.handle(mux, "POST /api/v1/users/{name}/password", s.setPassword)
}

// issueToken makes an API token of a role and org the caller may grant,
// answering its secret this once.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	var in tokenRequest
	if !decodeJSON(w, r, &in) {
		return
	}
	org, ok := grantable(w, r, in.Org, in.Role)
	if !ok {
		return
	}
	ttl := defaultTokenTTL
	if in.ExpiresIn != "" {
		d, err := parseDuration(in.ExpiresIn)
		if err != nil || d < minTokenTTL || d > registry.MaxTokenTTL {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("expiresIn must be a duration from %s to %s, such as 720h", minTokenTTL, registry.MaxTokenTTL))
			return
		}
		ttl = d
	}
	secret, t, err := s.deps.Registry.IssueToken(r.Context(), registry.TokenSpec{Name: in.Name, Org: org, Role: in.Role, TTL: ttl})
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, newToken{Token: t, Secret: secret})
}

// listTokens answers the tokens of the caller's orgs, without secrets.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, inCallersOrgs(r, s.deps.Registry.Tokens(), func(t api.Token) string { return t.Org }, false))
}

// revokeToken revokes a token of the caller's orgs.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	reg := s.deps.Registry
	id := r.PathValue("id")
	// A token of another org is not found, as if it did not exist.
	if t, ok := reg.Token(id); !ok || !principal(r).InOrg(t.Org) {
		writeError(w, http.StatusNotFound, "token "+id+" not found")
		return
	}
	t, err := reg.RevokeToken(r.Context(), id)
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// createUser makes a user of a role and org the caller may grant.
func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name     string  `json:"name"`
		Password string  `json:"password"`
		Org      *string `json:"org"`
		Role     string  `json:"role"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	org, ok := grantable(w, r, in.Org, in.Role)
	if !ok {
		return
	}
	u, err := s.deps.Registry.CreateUser(r.Context(), registry.UserSpec{Name: in.Name, Password: in.Password, Org: org, Role: in.Role})
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

// listUsers answers the users of the caller's orgs.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, inCallersOrgs(r, s.deps.Registry.Users(), func(u api.User) string { return u.Org }, false))
}

// deleteUser deletes a user the caller may grant (see grantedUser).
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	u, ok := s.grantedUser(w, r)
	if !ok {
		return
	}
	if err := s.deps.Registry.DeleteUser(r.Context(), u.Name); err != nil {
		writeRegistryError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// setPassword sets a user's password: its own, given the current one, or
// any the caller may grant (see grantedUser).
func (s *Server) setPassword(w http.ResponseWriter, r *http.Request) {
	reg := s.deps.Registry
	var in struct {
		Password string `json:"password"`
		// Current is the password now, which a user changing its own gives.
		Current string `json:"currentPassword"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	p, name := principal(r), r.PathValue("name")
	if p.Kind == api.TokenSession && p.Name == name {
		if len(in.Current) > registry.MaxPasswordBytes || !reg.CheckPassword(name, in.Current) {
			writeError(w, http.StatusForbidden, "currentPassword is wrong: a user changing its own password gives the one it has")
			return
		}
	} else if _, ok := s.grantedUser(w, r); !ok {
		return
	}
	if err := reg.SetPassword(r.Context(), name, in.Password); err != nil {
		writeRegistryError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// grantedUser is the user of r's path if the caller is an admin who may
// grant its org and role: 403 for a caller who is not an admin, 404 for a
// user of another org (or none).
func (s *Server) grantedUser(w http.ResponseWriter, r *http.Request) (api.User, bool) {
	p, name := principal(r), r.PathValue("name")
	if !p.Has(api.RoleAdmin) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s %q of role %s changes only its own password (from its session); other users are an admin's", p.Kind, p.Name, p.Role))
		return api.User{}, false
	}
	u, ok := s.deps.Registry.User(name)
	if !ok || !p.InOrg(u.Org) {
		writeError(w, http.StatusNotFound, "user "+name+" not found")
		return api.User{}, false
	}
	if err := registry.CheckGrant(p, u.Org, u.Role); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return api.User{}, false
	}
	return u, true
}

// login answers POST /api/v1/login {"user","password"} with a session
// token. Failures are counted, and after loginFreeFailures for a user name
// or a client address each further one locks both out for a doubling time
// (429 with Retry-After, the password not even checked).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, &in) {
		s.logins.failures.WithLabelValues(loginBadRequest).Inc()
		return
	}
	if in.User == "" || in.Password == "" || len(in.User) > registry.MaxNameBytes || len(in.Password) > registry.MaxPasswordBytes {
		s.logins.failures.WithLabelValues(loginBadRequest).Inc()
		writeError(w, http.StatusBadRequest, fmt.Sprintf("user and password are required (a password has at most %d bytes)", registry.MaxPasswordBytes))
		return
	}
	keys := []string{"user:" + in.User, "addr:" + clientAddr(r)}
	if wait := s.logins.locked(keys...); wait > 0 {
		s.logins.failures.WithLabelValues(loginThrottled).Inc()
		s.refused.add(r, auditThrottled, "too many failed logins", in.User, s.userOrg(in.User), http.StatusTooManyRequests)
		secs := int(wait.Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins: retry in %d s", max(secs, 1)))
		return
	}
	secret, t, err := s.deps.Registry.Login(r.Context(), in.User, in.Password)
	if errors.Is(err, registry.ErrBadCredentials) {
		s.logins.failures.WithLabelValues(loginBadCredentials).Inc()
		s.logins.fail(keys...)
		s.auditLogin(r, in.User, http.StatusUnauthorized)
		writeError(w, http.StatusUnauthorized, "wrong user name or password")
		return
	}
	if err != nil {
		writeRegistryError(w, err)
		return
	}
	s.logins.succeed(keys[0])
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"token": secret, "expiresAt": t.ExpiresAt, "id": t.ID, "role": t.Role, "org": t.Org})
}

// clientAddr is the request's client IP address (no port).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Reasons of gale_http_login_failures_total.
const (
	loginBadCredentials = "bad_credentials"
	loginThrottled      = "throttled"
	loginBadRequest     = "bad_request"
)

// Login back-off: the first loginFreeFailures failures of a key cost
// nothing more; each further one locks the key out for 1 s, 2 s, 4 s, ...
// up to loginMaxLock. A key untouched for loginForget is forgotten; at most
// loginMaxKeys are kept.
const (
	loginFreeFailures = 3
	loginMaxLock      = 5 * time.Minute
	loginForget       = 30 * time.Minute
	loginMaxKeys      = 10000
)

type loginLimiter struct {
	failures *prometheus.CounterVec
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*loginState
}

type loginState struct {
	n     int
	until time.Time
	last  time.Time
}

func newLoginLimiter() *loginLimiter {
	l := &loginLimiter{now: time.Now, keys: map[string]*loginState{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_http_login_failures_total",
			Help: "Failed logins at POST /api/v1/login, by reason (bad_credentials, throttled: locked out after repeated failures, bad_request).",
		}, []string{"reason"}),
	}
	for _, reason := range []string{loginBadCredentials, loginThrottled, loginBadRequest} {
		l.failures.WithLabelValues(reason)
	}
	return l
}

// locked returns how long the longest lock of keys still lasts.
func (l *loginLimiter) locked(keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var wait time.Duration
	for _, k := range keys {
		if st, ok := l.keys[k]; ok {
			wait = max(wait, st.until.Sub(now))
		}
	}
	return wait
}

// fail counts a failure of each key.
func (l *loginLimiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		st, ok := l.keys[k]
		if !ok {
			l.makeRoom(now)
			st = &loginState{}
			l.keys[k] = st
		}
		st.n++
		st.last = now
		if extra := st.n - loginFreeFailures; extra > 0 {
			lock := loginMaxLock
			if extra <= 20 {
				lock = min(time.Second<<(extra-1), loginMaxLock)
			}
			st.until = now.Add(lock)
		}
	}
}

// succeed forgets key's failures.
func (l *loginLimiter) succeed(key string) {
	l.mu.Lock()
	delete(l.keys, key)
	l.mu.Unlock()
}

// makeRoom forgets old keys, and one more when still full. Callers hold l.mu.
func (l *loginLimiter) makeRoom(now time.Time) {
	if len(l.keys) < loginMaxKeys {
		return
	}
	for k, st := range l.keys {
		if now.Sub(st.last) > loginForget && now.After(st.until) {
			delete(l.keys, k)
		}
	}
	for k := range l.keys {
		if len(l.keys) < loginMaxKeys {
			break
		}
		delete(l.keys, k)
	}
}

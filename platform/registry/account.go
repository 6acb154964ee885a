package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gale-iot/gale/platform/api"
)

// Account errors. ErrUnauthenticated and the errors wrapping it mean the
// caller is not known (HTTP 401); ErrForbidden that it may not do what it asks (403).
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrTokenUnknown    = fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	ErrTokenExpired    = fmt.Errorf("%w: token expired", ErrUnauthenticated)
	ErrTokenRevoked    = fmt.Errorf("%w: token revoked", ErrUnauthenticated)
	ErrBadCredentials  = fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	ErrForbidden       = errors.New("forbidden")
)

// Account limits.
const (
	// MinPasswordBytes is the shortest password a user may have.
	MinPasswordBytes = 12
	// MaxPasswordBytes is bcrypt's limit: it ignores what follows.
	MaxPasswordBytes = 72
	// SessionTTL is how long a login session lasts.
	SessionTTL = 12 * time.Hour
	// MaxTokenTTL bounds an API token's lifetime.
	MaxTokenTTL = 366 * 24 * time.Hour
	// lastUsedEvery is how often at most a token's last use is written to the database.
	lastUsedEvery = time.Minute
)

// accountNameRE is what token and user names look like (user names may be e-mail addresses).
var accountNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@+\-]{0,127}$`)

// Principal is who an API call is made by: the token it came with, resolved.
type Principal struct {
	// ID is the token's id; Name is the token's name, or the user's name for a session.
	ID   string
	Name string
	// Org is the one org the principal may see and change; empty is all orgs.
	Org  string
	Role string
	// Kind is api.TokenAPI or api.TokenSession.
	Kind string
}

// AllOrgs reports whether p is scoped to every org (a cluster account).
func (p Principal) AllOrgs() bool { return p.Org == "" }

// ClusterAdmin reports whether p is an admin of every org.
func (p Principal) ClusterAdmin() bool { return p.AllOrgs() && p.Role == api.RoleAdmin }

// Has reports whether p's role is at least role.
func (p Principal) Has(role string) bool {
	return api.RoleRank(p.Role) >= api.RoleRank(role) && api.RoleRank(role) > 0
}

// InOrg reports whether p may see org.
func (p Principal) InOrg(org string) bool { return p.AllOrgs() || p.Org == org }

// tokenEntry is a token in memory; lastUsed and stored are this node's.
type tokenEntry struct {
	api.Token
	hash     string
	lastUsed atomic.Int64 // Unix ms
	stored   atomic.Int64 // the last_used_at last written
}

// userEntry is a user in memory.
type userEntry struct {
	api.User
}

const accountSchema = `
CREATE TABLE IF NOT EXISTS tokens (
	hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL,
	id TEXT NOT NULL DEFAULT '', org TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT 'admin',
	kind TEXT NOT NULL DEFAULT 'api', user_name TEXT NOT NULL DEFAULT '', expires_at INTEGER NOT NULL DEFAULT 0,
	revoked INTEGER NOT NULL DEFAULT 0, last_used_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS users (
	name TEXT PRIMARY KEY, org TEXT NOT NULL, role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
`

// addColumns adds to table the columns of cols it does not have yet.
func addColumns(db *sql.DB, table string, cols []column) error {
	rows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return fmt.Errorf("migrate %s: %w", table, err)
		}
		have[n] = true
	}
	rows.Close()
	for _, c := range cols {
		if !have[c.name] {
			if _, err := db.Exec(`ALTER TABLE ` + table + ` ADD COLUMN ` + c.name + ` ` + c.decl); err != nil {
				return fmt.Errorf("migrate %s: add %s: %w", table, c.name, err)
			}
		}
	}
	return nil
}

// column is a column a newer schema added to a table.
type column struct{ name, decl string }

// tokenColumns are the columns accounts added to the tokens table; a
// database made before them gets them, and its tokens stay cluster admins'.
var tokenColumns = []column{
	{"id", "TEXT NOT NULL DEFAULT ''"},
	{"org", "TEXT NOT NULL DEFAULT ''"},
	{"role", "TEXT NOT NULL DEFAULT 'admin'"},
	{"kind", "TEXT NOT NULL DEFAULT 'api'"},
	{"user_name", "TEXT NOT NULL DEFAULT ''"},
	{"expires_at", "INTEGER NOT NULL DEFAULT 0"},
	{"revoked", "INTEGER NOT NULL DEFAULT 0"},
	{"last_used_at", "INTEGER NOT NULL DEFAULT 0"},
}

// legacyTokenID is the id of a token made before tokens had ids: derived
// from its hash, so that every node gives it the same one.
func legacyTokenID(hash string) string { return "t" + hash[:min(16, len(hash))] }

// migrateAccounts brings an older database's tokens table up to date.
func migrateAccounts(db *sql.DB) error {
	if err := addColumns(db, "tokens", tokenColumns); err != nil {
		return err
	}
	if _, err := db.Exec(`UPDATE tokens SET id = 't' || substr(hash, 1, 16) WHERE id = ''`); err != nil {
		return fmt.Errorf("migrate tokens: ids: %w", err)
	}
	if _, err := db.Exec(`CREATE UNIQUE INDEX IF NOT EXISTS tokens_id ON tokens(id)`); err != nil {
		return fmt.Errorf("migrate tokens: index: %w", err)
	}
	return nil
}

// loadAccounts reads the tokens and users into memory.
func (r *Registry) loadAccounts() error {
	r.tokens = map[string]*tokenEntry{}
	r.tokenIDs = map[string]string{}
	r.users = map[string]*userEntry{}
	rows, err := r.db.Query(`SELECT hash, name, created_at, id, org, role, kind, user_name, expires_at, revoked, last_used_at FROM tokens`)
	if err != nil {
		return fmt.Errorf("load tokens: %w", err)
	}
	for rows.Next() {
		e := &tokenEntry{}
		var lastUsed int64
		if err := rows.Scan(&e.hash, &e.Name, &e.CreatedAt, &e.ID, &e.Org, &e.Role, &e.Kind, &e.User, &e.ExpiresAt, &e.Revoked, &lastUsed); err != nil {
			rows.Close()
			return fmt.Errorf("load tokens: %w", err)
		}
		e.lastUsed.Store(lastUsed)
		e.stored.Store(lastUsed)
		r.tokens[e.hash] = e
		r.tokenIDs[e.ID] = e.hash
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load tokens: %w", err)
	}
	rows, err = r.db.Query(`SELECT name, org, role, password_hash, created_at FROM users`)
	if err != nil {
		return fmt.Errorf("load users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		u := &userEntry{}
		if err := rows.Scan(&u.Name, &u.Org, &u.Role, &u.PasswordHash, &u.CreatedAt); err != nil {
			return fmt.Errorf("load users: %w", err)
		}
		r.users[u.Name] = u
	}
	return rows.Err()
}

// TokenSpec is what a new API token is made of.
type TokenSpec struct {
	Name string
	// Org scopes the token to one org; empty is all orgs.
	Org  string
	Role string
	// TTL is the token's lifetime; 0 never expires.
	TTL time.Duration
}

// CheckGrant checks that by may give an account org and role: a cluster
// admin may give any; an org's admin only its own org, with a role at most
// its own. It wraps ErrForbidden.
func CheckGrant(by Principal, org, role string) error {
	switch {
	case !by.Has(api.RoleAdmin):
		return fmt.Errorf("%w: only an admin makes tokens and users", ErrForbidden)
	case org == "" && !by.AllOrgs():
		return fmt.Errorf("%w: only a cluster admin makes accounts for all orgs", ErrForbidden)
	case !by.InOrg(org):
		return fmt.Errorf("%w: an admin of org %q makes accounts of that org only, not of %q", ErrForbidden, by.Org, org)
	case api.RoleRank(role) > api.RoleRank(by.Role):
		return fmt.Errorf("%w: role %q is above the caller's %q", ErrForbidden, role, by.Role)
	}
	return nil
}

// checkAccount checks an account's name, org and role. Callers hold r.mu (read) or none.
func (r *Registry) checkAccount(what, name, org, role string) error {
	if !accountNameRE.MatchString(name) {
		return fmt.Errorf("%w: %s name %q: 1 to 128 letters, digits and _ . @ + - (not leading with . @ + -)", ErrInvalid, what, name)
	}
	if api.RoleRank(role) == 0 {
		return fmt.Errorf("%w: %s role %q, want viewer, operator or admin", ErrInvalid, what, role)
	}
	if org != "" {
		r.mu.RLock()
		a, ok := r.assets[org]
		r.mu.RUnlock()
		if !ok || a.Kind != api.AssetOrg {
			return fmt.Errorf("%w: org %q does not exist (create it as an asset of kind org)", ErrInvalid, org)
		}
	}
	return nil
}

// CreateToken makes a new cluster admin token named name that never expires
// and returns it; only its hash is stored.
func (r *Registry) CreateToken(ctx context.Context, name string) (string, error) {
	if err := checkName("token name", name); err != nil {
		return "", err
	}
	token, _, err := r.issue(ctx, api.Token{Name: name, Role: api.RoleAdmin, Kind: api.TokenAPI})
	return token, err
}

// IssueToken makes a new API token of spec and returns its secret (shown
// once: only its hash is stored) and the token.
func (r *Registry) IssueToken(ctx context.Context, spec TokenSpec) (string, api.Token, error) {
	if err := r.checkAccount("token", spec.Name, spec.Org, spec.Role); err != nil {
		return "", api.Token{}, err
	}
	if spec.TTL < 0 || spec.TTL > MaxTokenTTL {
		return "", api.Token{}, fmt.Errorf("%w: token lifetime %s, want 0 (never expires) up to %s", ErrInvalid, spec.TTL, MaxTokenTTL)
	}
	t := api.Token{Name: spec.Name, Org: spec.Org, Role: spec.Role, Kind: api.TokenAPI}
	if spec.TTL > 0 {
		t.ExpiresAt = time.Now().Add(spec.TTL).UnixMilli()
	}
	return r.issue(ctx, t)
}

// issue stores t under a new secret and announces it.
func (r *Registry) issue(ctx context.Context, t api.Token) (string, api.Token, error) {
	if err := r.purgeDue(ctx); err != nil {
		return "", api.Token{}, err
	}
	token := randomHex(24)
	h := hashToken(token)
	t.ID = "t" + randomHex(8)
	t.CreatedAt = time.Now().UnixMilli()
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	if err := r.storeToken(ctx, h, t); err != nil {
		return "", api.Token{}, err
	}
	r.mu.Lock()
	r.putTokenLocked(h, t)
	r.mu.Unlock()
	tc := t
	err := r.keep(ctx, api.RegistryChange{Kind: api.ChangeToken, Key: h, Token: &tc}, func(ctx context.Context) error {
		r.mu.Lock()
		delete(r.tokens, h)
		delete(r.tokenIDs, t.ID)
		r.mu.Unlock()
		if _, err := r.db.ExecContext(ctx, `DELETE FROM tokens WHERE hash = ?`, h); err != nil {
			return fmt.Errorf("delete token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", api.Token{}, err
	}
	return token, t, nil
}

// storeToken upserts t under hash; a revoked token stays revoked.
func (r *Registry) storeToken(ctx context.Context, hash string, t api.Token) error {
	if _, err := r.db.ExecContext(ctx, `INSERT INTO tokens(hash, name, created_at, id, org, role, kind, user_name, expires_at, revoked)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(hash) DO UPDATE SET name=excluded.name, org=excluded.org, role=excluded.role, kind=excluded.kind,
			user_name=excluded.user_name, expires_at=excluded.expires_at, revoked=max(revoked, excluded.revoked)`,
		hash, t.Name, t.CreatedAt, t.ID, t.Org, t.Role, t.Kind, t.User, t.ExpiresAt, t.Revoked); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

// putTokenLocked puts t in memory, keeping an existing entry's last use and
// revocation. Callers hold r.mu.
func (r *Registry) putTokenLocked(hash string, t api.Token) {
	e, ok := r.tokens[hash]
	if !ok {
		e = &tokenEntry{hash: hash}
		r.tokens[hash] = e
	}
	revoked := e.Revoked || t.Revoked
	if e.ID != "" && e.ID != t.ID {
		delete(r.tokenIDs, e.ID)
	}
	e.Token = t
	e.Revoked = revoked
	r.tokenIDs[t.ID] = hash
}

// Authenticate resolves a bearer token to its principal. Its error wraps
// ErrUnauthenticated (ErrTokenUnknown, ErrTokenExpired or ErrTokenRevoked).
func (r *Registry) Authenticate(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrTokenUnknown
	}
	h := hashToken(token)
	now := time.Now().UnixMilli()
	r.mu.RLock()
	e, ok := r.tokens[h]
	var t api.Token
	if ok {
		t = e.Token
	}
	r.mu.RUnlock()
	switch {
	case !ok:
		return Principal{}, ErrTokenUnknown
	case t.Revoked:
		return Principal{}, ErrTokenRevoked
	case t.ExpiresAt != 0 && now >= t.ExpiresAt:
		return Principal{}, ErrTokenExpired
	}
	r.touch(e, now)
	p := Principal{ID: t.ID, Name: t.Name, Org: t.Org, Role: t.Role, Kind: t.Kind}
	if t.Kind == api.TokenSession {
		p.Name = t.User
	}
	return p, nil
}

// touch records a use of e at now, writing it to the database at most once
// every lastUsedEvery, in the background: a request never waits for it.
func (r *Registry) touch(e *tokenEntry, now int64) {
	e.lastUsed.Store(now)
	stored := e.stored.Load()
	if now-stored < lastUsedEvery.Milliseconds() || !e.stored.CompareAndSwap(stored, now) {
		return
	}
	r.bgMu.Lock()
	defer r.bgMu.Unlock()
	if r.closed {
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		_, _ = r.db.Exec(`UPDATE tokens SET last_used_at = ? WHERE hash = ?`, now, e.hash) // best effort
	}()
}

// ValidToken reports whether token is a known API token, unexpired and not revoked.
func (r *Registry) ValidToken(token string) bool {
	_, err := r.Authenticate(token)
	return err == nil
}

// HasTokens reports whether any API token exists.
func (r *Registry) HasTokens() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.tokens) > 0
}

// Tokens returns the tokens and sessions (never a secret), oldest first.
func (r *Registry) Tokens() []api.Token {
	r.mu.RLock()
	out := make([]api.Token, 0, len(r.tokens))
	for _, e := range r.tokens {
		t := e.Token
		t.LastUsedAt = e.lastUsed.Load()
		out = append(out, t)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Token returns the token of id.
func (r *Registry) Token(id string) (api.Token, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.tokenIDs[id]
	if !ok {
		return api.Token{}, false
	}
	e := r.tokens[h]
	t := e.Token
	t.LastUsedAt = e.lastUsed.Load()
	return t, true
}

// RevokeToken revokes the token of id at once, here and, through the change
// log, on every node. Revoking a revoked token is harmless.
func (r *Registry) RevokeToken(ctx context.Context, id string) (api.Token, error) {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.mu.RLock()
	h, ok := r.tokenIDs[id]
	var t api.Token
	if ok {
		t = r.tokens[h].Token
	}
	r.mu.RUnlock()
	if !ok {
		return api.Token{}, fmt.Errorf("%w: token %q", ErrNotFound, id)
	}
	if t.Revoked {
		return t, nil
	}
	if _, err := r.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE hash = ?`, h); err != nil {
		return api.Token{}, fmt.Errorf("revoke token: %w", err)
	}
	r.mu.Lock()
	r.tokens[h].Revoked = true
	r.mu.Unlock()
	t.Revoked = true
	tc := t
	err := r.keep(ctx, api.RegistryChange{Kind: api.ChangeToken, Key: h, Token: &tc}, func(ctx context.Context) error {
		r.mu.Lock()
		r.tokens[h].Revoked = false
		r.mu.Unlock()
		if _, err := r.db.ExecContext(ctx, `UPDATE tokens SET revoked = 0 WHERE hash = ?`, h); err != nil {
			return fmt.Errorf("undo token revocation: %w", err)
		}
		return nil
	})
	if err != nil {
		return api.Token{}, err
	}
	return t, nil
}

// UserSpec is what a new user is made of.
type UserSpec struct {
	Name     string
	Password string
	Org      string
	Role     string
}

// bcryptCost is the cost of password hashes (a variable for tests).
var bcryptCost = bcrypt.DefaultCost

// hashPassword checks a new password's length and returns its bcrypt hash.
func hashPassword(password string) (string, error) {
	if n := len(password); n < MinPasswordBytes || n > MaxPasswordBytes {
		return "", fmt.Errorf("%w: a password has %d to %d bytes, not %d", ErrInvalid, MinPasswordBytes, MaxPasswordBytes, n)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("%w: password: %v", ErrInvalid, err)
	}
	return string(hash), nil
}

// CreateUser makes a user; its password is stored only as a bcrypt hash.
func (r *Registry) CreateUser(ctx context.Context, spec UserSpec) (api.User, error) {
	if err := r.checkAccount("user", spec.Name, spec.Org, spec.Role); err != nil {
		return api.User{}, err
	}
	hash, err := hashPassword(spec.Password)
	if err != nil {
		return api.User{}, err
	}
	u := api.User{Name: spec.Name, Org: spec.Org, Role: spec.Role, CreatedAt: time.Now().UnixMilli(), PasswordHash: hash}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	if _, err := r.db.ExecContext(ctx, `INSERT INTO users(name, org, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
		u.Name, u.Org, u.Role, u.PasswordHash, u.CreatedAt); err != nil {
		r.mu.RLock()
		_, exists := r.users[u.Name]
		r.mu.RUnlock()
		if exists {
			return api.User{}, fmt.Errorf("%w: user %q", ErrExists, u.Name)
		}
		return api.User{}, fmt.Errorf("store user: %w", err)
	}
	r.mu.Lock()
	r.users[u.Name] = &userEntry{User: u}
	r.mu.Unlock()
	uc := u
	err = r.keep(ctx, api.RegistryChange{Kind: api.ChangeUser, Key: u.Name, User: &uc}, func(ctx context.Context) error {
		r.mu.Lock()
		delete(r.users, u.Name)
		r.mu.Unlock()
		if _, err := r.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, u.Name); err != nil {
			return fmt.Errorf("delete user: %w", err)
		}
		return nil
	})
	if err != nil {
		return api.User{}, err
	}
	u.PasswordHash = ""
	return u, nil
}

// User returns the user of that name (without its password hash).
func (r *Registry) User(name string) (api.User, bool) {
	u, ok := r.user(name)
	u.PasswordHash = ""
	return u, ok
}

// user returns the user of that name, password hash included.
func (r *Registry) user(name string) (api.User, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if u, ok := r.users[name]; ok {
		return u.User, true
	}
	return api.User{}, false
}

// Users returns the users (without password hashes) by name.
func (r *Registry) Users() []api.User {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]api.User, 0, len(r.users))
	for _, name := range sortedKeys(r.users) {
		u := r.users[name].User
		u.PasswordHash = ""
		out = append(out, u)
	}
	return out
}

// dummyHash is compared against when a login names no user, so that an
// unknown user takes as long to refuse as a wrong password.
// Made on first use, not when the program starts.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("gale-no-such-user-password"), bcryptCost)
	return h
})

// Login checks a user's password and opens a session of SessionTTL: it
// returns the session token's secret (shown once) and the session. A wrong
// user name or password both give ErrBadCredentials, in about the same time.
func (r *Registry) Login(ctx context.Context, name, password string) (string, api.Token, error) {
	user, ok := r.user(name)
	hash := dummyHash()
	if ok {
		hash = []byte(user.PasswordHash)
	}
	// bcrypt's comparison is constant-time; both branches ran it.
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok {
		return "", api.Token{}, ErrBadCredentials
	}
	t := api.Token{Name: "session:" + user.Name, Org: user.Org, Role: user.Role, Kind: api.TokenSession, User: user.Name,
		ExpiresAt: time.Now().Add(SessionTTL).UnixMilli()}
	return r.issue(ctx, t)
}

// applyToken stores a token change of another node. Callers hold r.mu and r.changeMu.
func (r *Registry) applyToken(ctx context.Context, c api.RegistryChange) error {
	if c.Deleted {
		if _, err := r.db.ExecContext(ctx, `DELETE FROM tokens WHERE hash = ?`, c.Key); err != nil {
			return fmt.Errorf("apply token delete: %w", err)
		}
		if e, ok := r.tokens[c.Key]; ok {
			delete(r.tokenIDs, e.ID)
			delete(r.tokens, c.Key)
		}
		return nil
	}
	var t api.Token
	if c.Token != nil {
		t = *c.Token
		t.LastUsedAt = 0
	} else {
		// A record made before accounts: its token is a cluster admin's.
		t = api.Token{ID: legacyTokenID(c.Key), Name: c.TokenName, Role: api.RoleAdmin, Kind: api.TokenAPI, CreatedAt: time.Now().UnixMilli()}
	}
	if other, ok := r.tokenIDs[t.ID]; ok && other != c.Key {
		return fmt.Errorf("%w: token id %q is another token's", ErrInvalid, t.ID)
	}
	if err := r.storeToken(ctx, c.Key, t); err != nil {
		return fmt.Errorf("apply token: %w", err)
	}
	r.putTokenLocked(c.Key, t)
	return nil
}

// applyUser stores a user change of another node. Callers hold r.mu and
// r.changeMu. A deleted user's sessions, or those opened with a password
// that changed, end here at once, as well as by the revocations the other
// node announces (which cannot name a session opened here it did not know yet).
func (r *Registry) applyUser(ctx context.Context, c api.RegistryChange) error {
	prev, existed := r.users[c.Key]
	if !c.Deleted && (c.User == nil || c.User.PasswordHash == "") {
		return fmt.Errorf("%w: user change without user or password hash", ErrInvalid)
	}
	var u *api.User
	if !c.Deleted {
		u = c.User
	}
	if err := r.storeUserLocked(ctx, c.Key, u); err != nil {
		return fmt.Errorf("apply user: %w", err)
	}
	if existed && (u == nil || u.PasswordHash != prev.PasswordHash) {
		return r.endSessionsLocked(ctx, c.Key)
	}
	return nil
}

// endSessionsLocked marks user's sessions revoked on this node only. Callers hold r.mu.
func (r *Registry) endSessionsLocked(ctx context.Context, user string) error {
	if _, err := r.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE kind = ? AND user_name = ?`, api.TokenSession, user); err != nil {
		return fmt.Errorf("end the sessions of user %q: %w", user, err)
	}
	for _, e := range r.tokens {
		if e.Kind == api.TokenSession && e.User == user {
			e.Revoked = true
		}
	}
	return nil
}

// DeleteUser removes user name and revokes its sessions, here and, through
// the change log, on every node.
func (r *Registry) DeleteUser(ctx context.Context, name string) error {
	r.changeMu.Lock()
	prev, ok := r.user(name)
	if !ok {
		r.changeMu.Unlock()
		return fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	err := r.storeUser(ctx, name, nil)
	if err == nil {
		err = r.keep(ctx, api.RegistryChange{Kind: api.ChangeUser, Key: name, Deleted: true},
			func(ctx context.Context) error { return r.storeUser(ctx, name, &prev) })
	}
	r.changeMu.Unlock()
	if err != nil {
		return err
	}
	return r.revokeSessions(ctx, name)
}

// SetPassword gives user name a new password and revokes its sessions:
// whoever held one logs in again, with the new password.
func (r *Registry) SetPassword(ctx context.Context, name, password string) error {
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	r.changeMu.Lock()
	prev, ok := r.user(name)
	if !ok {
		r.changeMu.Unlock()
		return fmt.Errorf("%w: user %q", ErrNotFound, name)
	}
	u := prev
	u.PasswordHash = hash
	err = r.storeUser(ctx, name, &u)
	if err == nil {
		uc := u
		err = r.keep(ctx, api.RegistryChange{Kind: api.ChangeUser, Key: name, User: &uc},
			func(ctx context.Context) error { return r.storeUser(ctx, name, &prev) })
	}
	r.changeMu.Unlock()
	if err != nil {
		return err
	}
	return r.revokeSessions(ctx, name)
}

// CheckPassword reports whether password is user name's (in bcrypt's constant time).
func (r *Registry) CheckPassword(name, password string) bool {
	u, ok := r.user(name)
	return ok && bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) == nil
}

// storeUser upserts u as user name, or deletes the user when u is nil. Callers hold r.changeMu.
func (r *Registry) storeUser(ctx context.Context, name string, u *api.User) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.storeUserLocked(ctx, name, u)
}

// storeUserLocked is storeUser for callers holding r.mu.
func (r *Registry) storeUserLocked(ctx context.Context, name string, u *api.User) error {
	if u == nil {
		if _, err := r.db.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name); err != nil {
			return fmt.Errorf("delete user %q: %w", name, err)
		}
		delete(r.users, name)
		return nil
	}
	if _, err := r.db.ExecContext(ctx, `INSERT INTO users(name, org, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET org=excluded.org, role=excluded.role, password_hash=excluded.password_hash`,
		u.Name, u.Org, u.Role, u.PasswordHash, u.CreatedAt); err != nil {
		return fmt.Errorf("store user %q: %w", name, err)
	}
	r.users[name] = &userEntry{User: *u}
	return nil
}

// revokeSessions revokes every live session of user.
func (r *Registry) revokeSessions(ctx context.Context, user string) error {
	var ids []string
	r.mu.RLock()
	for _, e := range r.tokens {
		if e.Kind == api.TokenSession && e.User == user && !e.Revoked {
			ids = append(ids, e.ID)
		}
	}
	r.mu.RUnlock()
	for _, id := range ids {
		if _, err := r.RevokeToken(ctx, id); err != nil {
			return fmt.Errorf("revoke the sessions of user %q: %w", user, err)
		}
	}
	return nil
}

// Purging of tokens past their expiry: kept purgeGrace after it (so that
// their holders are told "expired" for a while), looked for at most every purgeEvery.
const (
	purgeGrace = 24 * time.Hour
	purgeEvery = 10 * time.Minute
)

// PurgeExpired deletes the tokens and sessions that expired before
// now less purgeGrace, revoked or not, and returns how many. Each node
// purges its own copy: the expiry travels with every token, so all agree.
func (r *Registry) PurgeExpired(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-purgeGrace).UnixMilli()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.db.ExecContext(ctx, `DELETE FROM tokens WHERE expires_at != 0 AND expires_at < ?`, cutoff); err != nil {
		return 0, fmt.Errorf("purge expired tokens: %w", err)
	}
	n := 0
	for h, e := range r.tokens {
		if e.ExpiresAt != 0 && e.ExpiresAt < cutoff {
			delete(r.tokenIDs, e.ID)
			delete(r.tokens, h)
			n++
		}
	}
	r.lastPurge = now
	return n, nil
}

// purgeDue purges expired tokens when the last purge is purgeEvery old,
// so that logins, which make a session each, never pile them up.
func (r *Registry) purgeDue(ctx context.Context) error {
	now := time.Now()
	r.mu.RLock()
	due := now.Sub(r.lastPurge) >= purgeEvery
	r.mu.RUnlock()
	if !due {
		return nil
	}
	_, err := r.PurgeExpired(ctx, now)
	return err
}

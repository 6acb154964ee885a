package registry

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/gale-iot/gale/platform/api"
)

func init() { bcryptCost = bcrypt.MinCost } // fast hashes in tests

func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reg.db")
	r := seeded(t, path)

	secret, tok, err := r.IssueToken(ctx, TokenSpec{Name: "grafana", Org: "acme", Role: api.RoleViewer, TTL: time.Hour})
	require.NoError(t, err)
	require.NotEmpty(t, secret)
	require.NotEmpty(t, tok.ID)
	require.InDelta(t, time.Now().Add(time.Hour).UnixMilli(), tok.ExpiresAt, 5000)
	p, err := r.Authenticate(secret)
	require.NoError(t, err)
	require.Equal(t, Principal{ID: tok.ID, Name: "grafana", Org: "acme", Role: api.RoleViewer, Kind: api.TokenAPI}, p)
	require.True(t, p.Has(api.RoleViewer))
	require.False(t, p.Has(api.RoleOperator))
	require.True(t, p.InOrg("acme"))
	require.False(t, p.InOrg("other"))

	_, err = r.Authenticate(secret + "x")
	require.ErrorIs(t, err, ErrTokenUnknown)
	_, err = r.Authenticate("")
	require.ErrorIs(t, err, ErrUnauthenticated)

	// Last use is kept in memory at once and written in the background.
	got, ok := r.Token(tok.ID)
	require.True(t, ok)
	require.NotZero(t, got.LastUsedAt)
	for _, listed := range r.Tokens() {
		require.NotContains(t, listed.Name, secret)
	}

	// Expiry: a token past its time is refused.
	shortSecret, short, err := r.IssueToken(ctx, TokenSpec{Name: "short", Org: "acme", Role: api.RoleViewer, TTL: time.Minute})
	require.NoError(t, err)
	r.mu.Lock()
	r.tokens[r.tokenIDs[short.ID]].ExpiresAt = time.Now().Add(-time.Second).UnixMilli()
	r.mu.Unlock()
	_, err = r.Authenticate(shortSecret)
	require.ErrorIs(t, err, ErrTokenExpired)

	revoked, err := r.RevokeToken(ctx, tok.ID)
	require.NoError(t, err)
	require.True(t, revoked.Revoked)
	_, err = r.Authenticate(secret)
	require.ErrorIs(t, err, ErrTokenRevoked)
	_, err = r.RevokeToken(ctx, tok.ID)
	require.NoError(t, err, "revoking twice is harmless")
	_, err = r.RevokeToken(ctx, "tnope")
	require.ErrorIs(t, err, ErrNotFound)

	// Everything survives a restart, the last use included.
	require.NoError(t, r.Close())
	r2, err := Open(path)
	require.NoError(t, err)
	defer r2.Close()
	_, err = r2.Authenticate(secret)
	require.ErrorIs(t, err, ErrTokenRevoked)
	got, ok = r2.Token(tok.ID)
	require.True(t, ok)
	require.Equal(t, "acme", got.Org)
	require.Equal(t, api.RoleViewer, got.Role)
	require.NotZero(t, got.LastUsedAt, "the first use is written at once")

	// The secret is nowhere in the database.
	requireNotInDB(t, path, secret)
}

func requireNotInDB(t *testing.T, path string, secrets ...string) {
	t.Helper()
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		for _, s := range secrets {
			require.False(t, bytes.Contains(b, []byte(s)), "%s holds a secret", f)
		}
	}
}

func TestTokenInputs(t *testing.T) {
	ctx := context.Background()
	r := seeded(t, filepath.Join(t.TempDir(), "reg.db"))
	_, err := r.PutAsset(ctx, api.Asset{ID: "site2", Kind: api.AssetSite, Parent: "acme"})
	require.NoError(t, err)
	for _, spec := range []TokenSpec{
		{Name: "", Role: api.RoleViewer},
		{Name: "has space", Role: api.RoleViewer},
		{Name: strings.Repeat("n", 129), Role: api.RoleViewer},
		{Name: "x", Role: "root"},
		{Name: "x", Role: ""},
		{Name: "x", Org: "ghost", Role: api.RoleViewer},
		{Name: "x", Org: "site2", Role: api.RoleViewer},
		{Name: "x", Role: api.RoleViewer, TTL: -time.Second},
		{Name: "x", Role: api.RoleViewer, TTL: MaxTokenTTL + time.Hour},
	} {
		_, _, err := r.IssueToken(ctx, spec)
		require.ErrorIs(t, err, ErrInvalid, "%+v", spec)
	}
	require.Len(t, r.Tokens(), 0)
}

func TestCheckGrant(t *testing.T) {
	cluster := Principal{Role: api.RoleAdmin}
	orgAdmin := Principal{Org: "acme", Role: api.RoleAdmin}
	operator := Principal{Org: "acme", Role: api.RoleOperator}
	clusterViewer := Principal{Role: api.RoleViewer}
	for _, tc := range []struct {
		by        Principal
		org, role string
		ok        bool
	}{
		{cluster, "", api.RoleAdmin, true},
		{cluster, "acme", api.RoleViewer, true},
		{orgAdmin, "acme", api.RoleAdmin, true},
		{orgAdmin, "acme", api.RoleViewer, true},
		{orgAdmin, "", api.RoleViewer, false},
		{orgAdmin, "other", api.RoleViewer, false},
		{operator, "acme", api.RoleViewer, false},
		{clusterViewer, "acme", api.RoleViewer, false},
	} {
		err := CheckGrant(tc.by, tc.org, tc.role)
		if tc.ok {
			require.NoError(t, err, "%+v %s %s", tc.by, tc.org, tc.role)
		} else {
			require.ErrorIs(t, err, ErrForbidden, "%+v %s %s", tc.by, tc.org, tc.role)
		}
	}
}

func TestUsersAndLogin(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reg.db")
	r := seeded(t, path)
	const pw = "correct horse battery"
	u, err := r.CreateUser(ctx, UserSpec{Name: "ops@acme.example", Password: pw, Org: "acme", Role: api.RoleOperator})
	require.NoError(t, err)
	require.Empty(t, u.PasswordHash)
	for _, spec := range []UserSpec{
		{Name: "short", Password: "elevenchars", Role: api.RoleViewer},
		{Name: "long", Password: strings.Repeat("p", 73), Role: api.RoleViewer},
		{Name: "bad name", Password: pw, Role: api.RoleViewer},
		{Name: "norole", Password: pw},
		{Name: "noorg", Password: pw, Org: "ghost", Role: api.RoleViewer},
	} {
		_, err := r.CreateUser(ctx, spec)
		require.ErrorIs(t, err, ErrInvalid, "%+v", spec)
	}
	_, err = r.CreateUser(ctx, UserSpec{Name: "ops@acme.example", Password: pw, Org: "acme", Role: api.RoleViewer})
	require.ErrorIs(t, err, ErrExists)
	require.Len(t, r.Users(), 1)
	require.Empty(t, r.Users()[0].PasswordHash)

	secret, session, err := r.Login(ctx, "ops@acme.example", pw)
	require.NoError(t, err)
	require.Equal(t, api.TokenSession, session.Kind)
	require.InDelta(t, time.Now().Add(SessionTTL).UnixMilli(), session.ExpiresAt, 5000)
	p, err := r.Authenticate(secret)
	require.NoError(t, err)
	require.Equal(t, Principal{ID: session.ID, Name: "ops@acme.example", Org: "acme", Role: api.RoleOperator, Kind: api.TokenSession}, p)

	_, _, err = r.Login(ctx, "ops@acme.example", pw+"x")
	require.ErrorIs(t, err, ErrBadCredentials)
	_, _, err = r.Login(ctx, "nobody", pw)
	require.ErrorIs(t, err, ErrBadCredentials)

	require.NoError(t, r.Close())
	requireNotInDB(t, path, pw, secret)
	r2, err := Open(path)
	require.NoError(t, err)
	defer r2.Close()
	_, _, err = r2.Login(ctx, "ops@acme.example", pw)
	require.NoError(t, err, "users survive a restart")
}

func TestTokensOfAnOlderDatabaseBecomeClusterAdmins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reg.db")
	db, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL)`)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO tokens VALUES (?, 'admin', 1)`, hashToken("old-secret"))
	require.NoError(t, err)
	require.NoError(t, db.Close())

	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	p, err := r.Authenticate("old-secret")
	require.NoError(t, err)
	require.True(t, p.ClusterAdmin())
	require.Equal(t, legacyTokenID(hashToken("old-secret")), p.ID)
	_, err = r.RevokeToken(context.Background(), p.ID)
	require.NoError(t, err)
	require.False(t, r.ValidToken("old-secret"))
}

// TestAccountsReplicate: tokens, revocations and users made on one node
// reach another through sealed change-log records, which carry hashes only.
func TestAccountsReplicate(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t, 7)
	leader := seeded(t, filepath.Join(t.TempDir(), "a.db"), WithKeys(k))
	followerPath := filepath.Join(t.TempDir(), "b.db")
	follower := seeded(t, followerPath, WithKeys(k))
	follower.SetPublisher("b", nil)
	f := NewFollower(follower, k, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	var records [][]byte
	offset := int64(0)
	leader.SetPublisher("a", func(ctx context.Context, c api.RegistryChange) error {
		rec, err := k.SealChange(c)
		if err != nil {
			return err
		}
		records = append(records, rec)
		offset++
		return f.Handle(ctx, ChangeKey(c), rec, offset)
	})

	secret, tok, err := leader.IssueToken(ctx, TokenSpec{Name: "ci", Org: "acme", Role: api.RoleOperator, TTL: time.Hour})
	require.NoError(t, err)
	p, err := follower.Authenticate(secret)
	require.NoError(t, err)
	require.Equal(t, Principal{ID: tok.ID, Name: "ci", Org: "acme", Role: api.RoleOperator, Kind: api.TokenAPI}, p)

	_, err = leader.RevokeToken(ctx, tok.ID)
	require.NoError(t, err)
	_, err = follower.Authenticate(secret)
	require.ErrorIs(t, err, ErrTokenRevoked, "a revocation is effective on the other node at once")

	// A stale record of the token, replayed, does not bring it back.
	stale := api.RegistryChange{Kind: api.ChangeToken, Key: hashToken(secret), Token: &tok, Origin: "a"}
	rec, err := k.SealChange(stale)
	require.NoError(t, err)
	require.NoError(t, f.Handle(ctx, ChangeKey(stale), rec, 99))
	_, err = follower.Authenticate(secret)
	require.ErrorIs(t, err, ErrTokenRevoked)

	const pw = "a long enough password"
	_, err = leader.CreateUser(ctx, UserSpec{Name: "eve", Password: pw, Org: "acme", Role: api.RoleViewer})
	require.NoError(t, err)
	session, _, err := follower.Login(ctx, "eve", pw)
	require.NoError(t, err, "a user made on one node logs in on another")
	require.True(t, follower.ValidToken(session))

	leader.mu.RLock()
	hash := leader.users["eve"].PasswordHash
	leader.mu.RUnlock()
	for _, rec := range records {
		require.False(t, bytes.Contains(rec, []byte(secret)), "no token secret on the change log")
		require.False(t, bytes.Contains(rec, []byte(pw)), "no password on the change log")
		require.False(t, bytes.Contains(rec, []byte(hash)), "the password hash travels sealed")
	}
	require.Zero(t, rejectedTotal(t, f))
	require.NoError(t, follower.Close())
	requireNotInDB(t, followerPath, secret, pw)
}

func TestAccountRecordsChecked(t *testing.T) {
	k := testKeys(t, 1)
	h := hashToken("x")
	for _, c := range []api.RegistryChange{
		{Kind: api.ChangeToken, Key: h, Token: &api.Token{ID: "t1", Role: "root", Kind: api.TokenAPI}},
		{Kind: api.ChangeToken, Key: h, Token: &api.Token{ID: "t1", Role: api.RoleAdmin, Kind: "magic"}},
		{Kind: api.ChangeToken, Key: h, Token: &api.Token{Role: api.RoleAdmin, Kind: api.TokenAPI}},
		{Kind: api.ChangeUser, Key: "eve", User: &api.User{Name: "eve", Role: api.RoleViewer}},
		{Kind: api.ChangeUser, Key: "eve", User: &api.User{Name: "mallory", Role: api.RoleViewer, PasswordHash: "h"}},
		{Kind: api.ChangeUser, Key: "eve", User: &api.User{Name: "eve", Role: "god", PasswordHash: "h"}},
		{Kind: api.ChangeDevice, Key: "sensor/d1", User: &api.User{Name: "eve", Role: api.RoleViewer, PasswordHash: "h"}},
	} {
		rec, err := k.SealChange(c)
		require.NoError(t, err)
		_, err = k.OpenChange(ChangeKey(c), rec)
		require.ErrorIs(t, err, ErrInvalid, "%+v", c)
	}
}

// TestUserDeleteAndPassword: deleting a user or giving it a new password
// ends its sessions, on this node and on the others (also a session the
// other node opened itself); the old password no longer logs in.
func TestUserDeleteAndPassword(t *testing.T) {
	ctx := context.Background()
	k := testKeys(t, 7)
	leader := seeded(t, filepath.Join(t.TempDir(), "a.db"), WithKeys(k))
	follower := seeded(t, filepath.Join(t.TempDir(), "b.db"), WithKeys(k))
	follower.SetPublisher("b", nil) // its sessions stay its own: the leader cannot name them
	f := NewFollower(follower, k, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	offset := int64(0)
	leader.SetPublisher("a", func(ctx context.Context, c api.RegistryChange) error {
		rec, err := k.SealChange(c)
		if err != nil {
			return err
		}
		offset++
		return f.Handle(ctx, ChangeKey(c), rec, offset)
	})
	const pw, pw2 = "a long enough password", "another long password"
	for _, name := range []string{"eve", "mallory"} {
		_, err := leader.CreateUser(ctx, UserSpec{Name: name, Password: pw, Org: "acme", Role: api.RoleViewer})
		require.NoError(t, err)
	}
	here, _, err := leader.Login(ctx, "eve", pw)
	require.NoError(t, err)
	there, _, err := follower.Login(ctx, "eve", pw)
	require.NoError(t, err)
	api1, _, err := leader.IssueToken(ctx, TokenSpec{Name: "eve", Org: "acme", Role: api.RoleViewer})
	require.NoError(t, err)

	require.ErrorIs(t, leader.SetPassword(ctx, "eve", "short"), ErrInvalid)
	require.ErrorIs(t, leader.SetPassword(ctx, "nobody", pw2), ErrNotFound)
	require.NoError(t, leader.SetPassword(ctx, "eve", pw2))
	for _, tok := range []struct {
		r      *Registry
		secret string
	}{{leader, here}, {follower, here}, {follower, there}} {
		_, err = tok.r.Authenticate(tok.secret)
		require.ErrorIs(t, err, ErrTokenRevoked, "a session of the old password ends")
	}
	require.True(t, leader.ValidToken(api1), "an API token of the same name is no session")
	for _, r := range []*Registry{leader, follower} {
		_, _, err = r.Login(ctx, "eve", pw)
		require.ErrorIs(t, err, ErrBadCredentials)
		require.True(t, r.CheckPassword("eve", pw2))
	}

	kept, _, err := follower.Login(ctx, "mallory", pw)
	require.NoError(t, err)
	require.NoError(t, leader.DeleteUser(ctx, "mallory"))
	require.ErrorIs(t, leader.DeleteUser(ctx, "mallory"), ErrNotFound)
	_, ok := follower.User("mallory")
	require.False(t, ok)
	_, err = follower.Authenticate(kept)
	require.ErrorIs(t, err, ErrTokenRevoked)
	_, _, err = follower.Login(ctx, "mallory", pw)
	require.ErrorIs(t, err, ErrBadCredentials)
}

// TestPurgeExpired: tokens and sessions a day past their expiry are
// deleted, from memory and disk; live and never-expiring ones stay.
func TestPurgeExpired(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "reg.db")
	r := seeded(t, path)
	_, err := r.CreateUser(ctx, UserSpec{Name: "eve", Password: "a long enough password", Org: "acme", Role: api.RoleViewer})
	require.NoError(t, err)
	session, st, err := r.Login(ctx, "eve", "a long enough password")
	require.NoError(t, err)
	short, _, err := r.IssueToken(ctx, TokenSpec{Name: "short", Org: "acme", Role: api.RoleViewer, TTL: time.Hour})
	require.NoError(t, err)
	forever, err := r.CreateToken(ctx, "root")
	require.NoError(t, err)

	n, err := r.PurgeExpired(ctx, time.Now())
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = r.PurgeExpired(ctx, time.UnixMilli(st.ExpiresAt).Add(purgeGrace+time.Minute))
	require.NoError(t, err)
	require.Equal(t, 2, n, "the session and the hour's token")
	for _, gone := range []string{session, short} {
		_, err = r.Authenticate(gone)
		require.ErrorIs(t, err, ErrTokenUnknown)
	}
	require.True(t, r.ValidToken(forever))
	require.NoError(t, r.Close())
	reopened, err := Open(path)
	require.NoError(t, err)
	defer reopened.Close()
	require.Len(t, reopened.Tokens(), 1, "purged from disk too")
}

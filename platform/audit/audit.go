// Package audit keeps the node's audit log: who changed what through the
// API, and who failed to log in. The log is a SQLite file of its own in the
// node's data dir, bounded to its newest entries; it is per node (each
// node records the requests it answered), so a cluster's whole log is the
// union of its nodes' logs.
package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	_ "modernc.org/sqlite" // pure-Go SQLite driver
)

// DefaultMaxEntries bounds a log: about 300 bytes an entry, so some 30 MB.
const DefaultMaxEntries = 100_000

// MaxLimit bounds the entries one query returns.
const MaxLimit = 1000

// Entry is one audited request.
type Entry struct {
	ID int64 `json:"id"`
	// Time is when the request was answered, in Unix milliseconds.
	Time int64 `json:"time"`
	// TokenID is the id of the token used ("" for a failed login); Actor is
	// the token's name, or the user's for a session or a login.
	TokenID string `json:"tokenId,omitempty"`
	Actor   string `json:"actor"`
	// Kind is the token's kind (api or session), or "login".
	Kind string `json:"kind"`
	// Org is the actor's org ("" for an all-orgs account, or a login of an unknown user).
	Org    string `json:"org"`
	Role   string `json:"role,omitempty"`
	Client string `json:"client"`
	Method string `json:"method"`
	// Route is the route pattern matched, e.g. "POST /api/v1/devices".
	Route string `json:"route"`
	// Target names what the request changed or read: the route's path
	// values and the id of what it created, e.g. "wind-turbine/WT01/stop 4f2a…".
	Target string `json:"target,omitempty"`
	// Status is the HTTP status answered.
	Status int `json:"status"`
}

// Filter selects entries; zero fields select all.
type Filter struct {
	// Since is a time in Unix milliseconds; older entries are left out.
	Since int64
	// Actor matches an entry's actor or token id.
	Actor string
	// Org, unless AllOrgs, keeps only entries of that org.
	Org     string
	AllOrgs bool
	// Limit is the number of newest entries returned (at most MaxLimit; 0: 100).
	Limit int
}

// Log is an audit log on disk.
type Log struct {
	db  *sql.DB
	max int64
}

const schema = `
CREATE TABLE IF NOT EXISTS audit (
	id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, token_id TEXT NOT NULL, actor TEXT NOT NULL,
	kind TEXT NOT NULL, org TEXT NOT NULL, role TEXT NOT NULL, client TEXT NOT NULL, method TEXT NOT NULL,
	route TEXT NOT NULL, target TEXT NOT NULL, status INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS audit_org ON audit(org, id);
`

// Open opens (creating it if needed) the log at path, keeping its newest maxEntries entries.
func Open(path string, maxEntries int) (*Log, error) {
	if maxEntries < 1 {
		return nil, fmt.Errorf("audit log: maxEntries %d must be positive", maxEntries)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	return &Log{db: db, max: int64(maxEntries)}, nil
}

// Close closes the log.
func (l *Log) Close() error { return l.db.Close() }

// maxField bounds each text field stored, so that no request can make an entry large.
const maxField = 256

func cut(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}

// Add appends e (its ID is assigned) and drops the entries beyond the bound.
func (l *Log) Add(ctx context.Context, e Entry) error {
	res, err := l.db.ExecContext(ctx, `INSERT INTO audit(time, token_id, actor, kind, org, role, client, method, route, target, status)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.Time, cut(e.TokenID), cut(e.Actor), cut(e.Kind), cut(e.Org), cut(e.Role),
		cut(e.Client), cut(e.Method), cut(e.Route), cut(e.Target), e.Status)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	// Ids are never reused (AUTOINCREMENT), so this keeps the newest max.
	id, err := res.LastInsertId()
	if err == nil {
		_, err = l.db.ExecContext(ctx, `DELETE FROM audit WHERE id <= ?`, id-l.max)
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Query returns the newest entries f selects, newest first.
func (l *Log) Query(ctx context.Context, f Filter) ([]Entry, error) {
	if !f.AllOrgs && f.Org == "" {
		return nil, errors.New("audit: a query names an org or all orgs")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxLimit)
	q := `SELECT id, time, token_id, actor, kind, org, role, client, method, route, target, status FROM audit WHERE time >= ?`
	args := []any{f.Since}
	if !f.AllOrgs {
		q += ` AND org = ?`
		args = append(args, f.Org)
	}
	if f.Actor != "" {
		q += ` AND (actor = ? OR token_id = ?)`
		args = append(args, f.Actor, f.Actor)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	rows, err := l.db.QueryContext(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.ID, &e.Time, &e.TokenID, &e.Actor, &e.Kind, &e.Org, &e.Role, &e.Client, &e.Method, &e.Route, &e.Target, &e.Status); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

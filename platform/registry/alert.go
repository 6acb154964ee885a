package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
)

const alertSchema = `
CREATE TABLE IF NOT EXISTS alerts (
	id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, severity TEXT NOT NULL, source TEXT NOT NULL,
	key TEXT NOT NULL, device TEXT NOT NULL, site TEXT NOT NULL, org TEXT NOT NULL, state TEXT NOT NULL,
	value REAL NOT NULL, message TEXT NOT NULL, started_at INTEGER NOT NULL, fired_at INTEGER NOT NULL,
	resolved_at INTEGER NOT NULL, acked_by TEXT NOT NULL, ack_comment TEXT NOT NULL, acked_at INTEGER NOT NULL,
	UNIQUE (rule, key, started_at));
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE TABLE IF NOT EXISTS rule_state (name TEXT PRIMARY KEY, snapshot BLOB NOT NULL, saved_at INTEGER NOT NULL);
`

const alertColumns = `id, rule, severity, source, key, device, site, org, state, value, message, started_at, fired_at, resolved_at, acked_by, ack_comment, acked_at`

func scanAlert(row interface{ Scan(...any) error }) (api.Alert, error) {
	var a api.Alert
	err := row.Scan(&a.ID, &a.Rule, &a.Severity, &a.Source, &a.Key, &a.Device, &a.Site, &a.Org, &a.State, &a.Value, &a.Message,
		&a.StartedAt, &a.FiredAt, &a.ResolvedAt, &a.AckedBy, &a.AckComment, &a.AckedAt)
	return a, err
}

// FireAlert records a firing episode of (rule, key, startedAt). Firing the
// same episode again (a replay after a crash) returns it with created false.
func (r *Registry) FireAlert(ctx context.Context, a api.Alert) (api.Alert, bool, error) {
	res, err := r.db.ExecContext(ctx, `INSERT INTO alerts(rule, severity, source, key, device, site, org, state, value, message,
		started_at, fired_at, resolved_at, acked_by, ack_comment, acked_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'firing', ?, ?, ?, ?, 0, '', '', 0)
		ON CONFLICT(rule, key, started_at) DO NOTHING`,
		a.Rule, a.Severity, a.Source, a.Key, a.Device, a.Site, a.Org, a.Value, a.Message, a.StartedAt, a.FiredAt)
	if err != nil {
		return a, false, fmt.Errorf("store alert %s/%s: %w", a.Rule, a.Key, err)
	}
	n, _ := res.RowsAffected()
	got, err := scanAlert(r.db.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE rule = ? AND key = ? AND started_at = ?`, a.Rule, a.Key, a.StartedAt))
	if err != nil {
		return a, false, fmt.Errorf("read alert %s/%s: %w", a.Rule, a.Key, err)
	}
	return got, n == 1, nil
}

// ResolveAlert resolves the firing episode (rule, key, startedAt) at resolvedAt;
// changed is false when it was not firing (already resolved, or never fired).
func (r *Registry) ResolveAlert(ctx context.Context, rule, key string, startedAt, resolvedAt int64, value float64) (api.Alert, bool, error) {
	res, err := r.db.ExecContext(ctx, `UPDATE alerts SET state = 'resolved', resolved_at = ?, value = ?
		WHERE rule = ? AND key = ? AND started_at = ? AND state = 'firing'`, resolvedAt, value, rule, key, startedAt)
	if err != nil {
		return api.Alert{}, false, fmt.Errorf("resolve alert %s/%s: %w", rule, key, err)
	}
	n, _ := res.RowsAffected()
	a, err := scanAlert(r.db.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE rule = ? AND key = ? AND started_at = ?`, rule, key, startedAt))
	if errors.Is(err, sql.ErrNoRows) {
		return a, false, nil
	}
	return a, n == 1, err
}

// AlertFilter selects alerts; empty fields match everything.
type AlertFilter struct {
	State, Severity, Site, Rule, Source string
	// Org, when set, keeps the alerts of that org only.
	Org string
	// Since and Until bound the firing time (Unix ms); zero is open.
	Since, Until int64
	Limit        int
}

// Alerts lists alerts matching f, newest first.
func (r *Registry) Alerts(ctx context.Context, f AlertFilter) ([]api.Alert, error) {
	var where []string
	var args []any
	for col, v := range map[string]string{"state": f.State, "severity": f.Severity, "site": f.Site, "rule": f.Rule, "source": f.Source, "org": f.Org} {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	if f.Since > 0 {
		where = append(where, "fired_at >= ?")
		args = append(args, f.Since)
	}
	if f.Until > 0 {
		where = append(where, "fired_at <= ?")
		args = append(args, f.Until)
	}
	q := `SELECT ` + alertColumns + ` FROM alerts`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 1000
	}
	q += fmt.Sprintf(" ORDER BY id DESC LIMIT %d", f.Limit)
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	defer rows.Close()
	out := []api.Alert{}
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Alert returns alert id.
func (r *Registry) Alert(ctx context.Context, id int64) (api.Alert, error) {
	a, err := scanAlert(r.db.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("alert %d %w", id, ErrNotFound)
	}
	return a, err
}

// AckAlert acknowledges alert id by user with comment.
func (r *Registry) AckAlert(ctx context.Context, id int64, user, comment string) (api.Alert, error) {
	res, err := r.db.ExecContext(ctx, `UPDATE alerts SET acked_by = ?, ack_comment = ?, acked_at = ? WHERE id = ?`,
		user, comment, time.Now().UnixMilli(), id)
	if err != nil {
		return api.Alert{}, fmt.Errorf("ack alert %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return api.Alert{}, fmt.Errorf("alert %d %w", id, ErrNotFound)
	}
	return scanAlert(r.db.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = ?`, id))
}

// SaveRuleState stores an engine snapshot under name.
func (r *Registry) SaveRuleState(ctx context.Context, name string, snapshot []byte) error {
	_, err := r.db.ExecContext(ctx, `INSERT INTO rule_state(name, snapshot, saved_at) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET snapshot = excluded.snapshot, saved_at = excluded.saved_at`, name, snapshot, time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("save rule state: %w", err)
	}
	return nil
}

// RuleState returns the snapshot stored under name, or nil.
func (r *Registry) RuleState(ctx context.Context, name string) ([]byte, error) {
	var b []byte
	err := r.db.QueryRowContext(ctx, `SELECT snapshot FROM rule_state WHERE name = ?`, name).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load rule state: %w", err)
	}
	return b, nil
}

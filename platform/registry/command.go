package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/gale-iot/gale/platform/api"
)

const commandSchema = `
CREATE TABLE IF NOT EXISTS commands (
	id TEXT PRIMARY KEY, product_key TEXT NOT NULL, device_key TEXT NOT NULL, service TEXT NOT NULL, params TEXT NOT NULL,
	status TEXT NOT NULL, code INTEGER NOT NULL, message TEXT NOT NULL, output TEXT NOT NULL,
	created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, sent_at INTEGER NOT NULL, replied_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS commands_device ON commands(product_key, device_key, status);
`

const commandColumns = `id, product_key, device_key, service, params, status, code, message, output, created_at, expires_at, sent_at, replied_at`

func scanCommand(row interface{ Scan(...any) error }) (api.Command, error) {
	var c api.Command
	var params, output string
	err := row.Scan(&c.ID, &c.ProductKey, &c.DeviceKey, &c.Service, &params, &c.Status, &c.Code, &c.Message, &output,
		&c.CreatedAt, &c.ExpiresAt, &c.SentAt, &c.RepliedAt)
	if params != "" {
		c.Params = []byte(params)
	}
	if output != "" {
		c.Output = []byte(output)
	}
	return c, err
}

// NewCommandID returns a fresh random command id.
func NewCommandID() string { return randomHex(12) }

// CreateCommand stores a queued command.
func (r *Registry) CreateCommand(ctx context.Context, c api.Command) error {
	_, err := r.db.ExecContext(ctx, `INSERT INTO commands(`+commandColumns+`) VALUES (?, ?, ?, ?, ?, ?, 0, '', '', ?, ?, 0, 0)`,
		c.ID, c.ProductKey, c.DeviceKey, c.Service, string(c.Params), api.CommandQueued, c.CreatedAt, c.ExpiresAt)
	if err != nil {
		return fmt.Errorf("store command: %w", err)
	}
	return nil
}

// Command returns command id.
func (r *Registry) Command(ctx context.Context, id string) (api.Command, error) {
	c, err := scanCommand(r.db.QueryRowContext(ctx, `SELECT `+commandColumns+` FROM commands WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("command %s %w", id, ErrNotFound)
	}
	return c, err
}

// MarkCommandSent records that a queued command was published to its device;
// ok is false when it was no longer queued (already sent, answered or expired).
func (r *Registry) MarkCommandSent(ctx context.Context, id string, at int64) (bool, error) {
	res, err := r.db.ExecContext(ctx, `UPDATE commands SET status = 'sent', sent_at = ? WHERE id = ? AND status = 'queued'`, at, id)
	if err != nil {
		return false, fmt.Errorf("mark command sent: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// CompleteCommand stores a device's reply; ok is false for an unknown or already answered command.
func (r *Registry) CompleteCommand(ctx context.Context, id string, code int, message string, output []byte, at int64) (api.Command, bool, error) {
	status := api.CommandSucceeded
	if code != api.CodeOK {
		status = api.CommandFailed
	}
	res, err := r.db.ExecContext(ctx, `UPDATE commands SET status = ?, code = ?, message = ?, output = ?, replied_at = ?
		WHERE id = ? AND status IN ('queued', 'sent')`, status, code, message, string(output), at, id)
	if err != nil {
		return api.Command{}, false, fmt.Errorf("complete command: %w", err)
	}
	n, _ := res.RowsAffected()
	c, err := r.Command(ctx, id)
	return c, n == 1, err
}

// QueuedCommands lists the unexpired queued commands of a device, oldest first.
func (r *Registry) QueuedCommands(ctx context.Context, pk, dk string, now int64) ([]api.Command, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT `+commandColumns+` FROM commands
		WHERE product_key = ? AND device_key = ? AND status = 'queued' AND expires_at > ? ORDER BY created_at, id`, pk, dk, now)
	if err != nil {
		return nil, fmt.Errorf("queued commands: %w", err)
	}
	defer rows.Close()
	var out []api.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ExpireCommands marks queued and sent commands past their expiry as expired and returns how many.
func (r *Registry) ExpireCommands(ctx context.Context, now int64) (int64, error) {
	res, err := r.db.ExecContext(ctx, `UPDATE commands SET status = 'expired' WHERE status IN ('queued', 'sent') AND expires_at <= ?`, now)
	if err != nil {
		return 0, fmt.Errorf("expire commands: %w", err)
	}
	return res.RowsAffected()
}

package registry

import (
	"context"
	"fmt"

	"github.com/gale-iot/gale/platform/api"
)

// eventSchema keeps the devices' events (thing/event/{id}/post) a node read
// from gale.events, the newest MaxDeviceEvents; an event read again after a
// crash is stored once.
const eventSchema = `
CREATE TABLE IF NOT EXISTS device_events (
	id INTEGER PRIMARY KEY AUTOINCREMENT, org TEXT NOT NULL, product_key TEXT NOT NULL, device_key TEXT NOT NULL,
	site TEXT NOT NULL, event TEXT NOT NULL, severity TEXT NOT NULL, time INTEGER NOT NULL, params TEXT NOT NULL,
	UNIQUE(product_key, device_key, event, time));
CREATE INDEX IF NOT EXISTS device_events_by_device ON device_events(product_key, device_key, id);
`

// MaxDeviceEvents is how many device events a node keeps, the newest (a
// variable for tests).
var MaxDeviceEvents = 100_000

// MaxEventParams is the most bytes of an event's params a node stores; the
// params of a larger one (which the broker never lets through) are dropped.
const MaxEventParams = 4 << 10

// AddDeviceEvents stores events in one transaction and drops the oldest
// beyond MaxDeviceEvents.
func (r *Registry) AddDeviceEvents(ctx context.Context, evs []api.DeviceEvent) error {
	if len(evs) == 0 {
		return nil
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store device events: %w", err)
	}
	defer tx.Rollback()
	for _, ev := range evs {
		params := string(ev.Params)
		if len(params) > MaxEventParams {
			params = ""
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_events(org, product_key, device_key, site, event, severity, time, params)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			ev.Org, ev.Product, ev.Device, ev.Site, ev.Event, ev.Severity, ev.Time, params); err != nil {
			return fmt.Errorf("store device event %s/%s %s: %w", ev.Product, ev.Device, ev.Event, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM device_events WHERE id <= (SELECT MAX(id) FROM device_events) - ?`, MaxDeviceEvents); err != nil {
		return fmt.Errorf("trim device events: %w", err)
	}
	return tx.Commit()
}

// DeviceEvents lists device pk/dk's stored events, newest first, at most limit.
func (r *Registry) DeviceEvents(ctx context.Context, pk, dk string, limit int) ([]api.DeviceEvent, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT org, product_key, device_key, site, event, severity, time, params FROM device_events
		WHERE product_key = ? AND device_key = ? ORDER BY id DESC LIMIT ?`, pk, dk, limit)
	if err != nil {
		return nil, fmt.Errorf("read device events: %w", err)
	}
	defer rows.Close()
	out := []api.DeviceEvent{}
	for rows.Next() {
		ev := api.DeviceEvent{Type: api.EventTypeDevice}
		var params string
		if err := rows.Scan(&ev.Org, &ev.Product, &ev.Device, &ev.Site, &ev.Event, &ev.Severity, &ev.Time, &params); err != nil {
			return nil, fmt.Errorf("read device events: %w", err)
		}
		if params != "" {
			ev.Params = []byte(params)
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
)

// ErrNotAnnounced is returned for a local change that could not be put on
// the change log (Kafka away, the record refused): the change is undone,
// since a change no other node sees must not be kept.
var ErrNotAnnounced = errors.New("registry change not on the change log; undone")

// undoTimeout bounds the undoing of a change that could not be announced.
const undoTimeout = 5 * time.Second

// keep announces c, a local change just stored, and undoes it with undo
// when the announcement fails: a change is kept only once it is on the
// change log. Callers hold r.changeMu, so no other change of the registry
// comes between the change and its undoing.
func (r *Registry) keep(ctx context.Context, c api.RegistryChange, undo func(context.Context) error) error {
	err := r.announce(ctx, c)
	if err == nil {
		return nil
	}
	// ctx may be what failed (a cancelled request); the undo must still happen.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if uerr := undo(uctx); uerr != nil {
		return fmt.Errorf("%w: %w (and undoing it failed: %w)", ErrNotAnnounced, err, uerr)
	}
	return fmt.Errorf("%w: %w", ErrNotAnnounced, err)
}

// Publisher announces a local registry change to the other nodes.
type Publisher func(ctx context.Context, c api.RegistryChange) error

// SetPublisher makes every local mutation announce itself (after it is
// stored), as made by node origin.
func (r *Registry) SetPublisher(origin string, p Publisher) {
	r.mu.Lock()
	r.origin, r.publish = origin, p
	r.mu.Unlock()
}

// announce publishes c if a publisher is set. Callers must not hold r.mu.
func (r *Registry) announce(ctx context.Context, c api.RegistryChange) error {
	r.mu.RLock()
	p := r.publish
	c.Origin = r.origin
	r.mu.RUnlock()
	if p == nil {
		return nil
	}
	if err := p(ctx, c); err != nil {
		return fmt.Errorf("announce registry change %s %s: %w", c.Kind, c.Key, err)
	}
	return nil
}

// Apply stores a change announced by another node: an upsert or delete that
// is not announced again. Applying a change twice is harmless. The node's own
// changes are skipped: they are stored already, and replaying an older one
// would briefly undo a newer local change.
func (r *Registry) Apply(ctx context.Context, c api.RegistryChange) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	defer r.changeApplied(c) // runs after the unlock below
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Origin != "" && c.Origin == r.origin {
		return nil
	}
	switch c.Kind {
	case api.ChangeProduct:
		if c.Deleted {
			if _, err := r.db.ExecContext(ctx, `DELETE FROM products WHERE key = ?`, c.Key); err != nil {
				return fmt.Errorf("apply product delete: %w", err)
			}
			delete(r.products, c.Key)
			return nil
		}
		if c.Product == nil {
			return fmt.Errorf("%w: product change without product", ErrInvalid)
		}
		if err := r.storeProduct(ctx, *c.Product); err != nil {
			return fmt.Errorf("apply product: %w", err)
		}
	case api.ChangeDevice:
		if c.Deleted {
			pk, dk, _ := strings.Cut(c.Key, "/")
			if _, err := r.db.ExecContext(ctx, `DELETE FROM devices WHERE product_key = ? AND device_key = ?`, pk, dk); err != nil {
				return fmt.Errorf("apply device delete: %w", err)
			}
			delete(r.devices, deviceID{pk, dk})
			return nil
		}
		if c.Device == nil {
			return fmt.Errorf("%w: device change without device", ErrInvalid)
		}
		d := *c.Device
		if err := r.storeDevice(ctx, &d); err != nil {
			return err
		}
		r.devices[deviceID{d.ProductKey, d.DeviceKey}] = &d
	case api.ChangeAsset:
		if c.Asset == nil {
			return fmt.Errorf("%w: asset change without asset", ErrInvalid)
		}
		a := *c.Asset
		a.Children, a.Devices = nil, nil
		if _, err := r.db.ExecContext(ctx, `INSERT INTO assets(id, kind, name, parent, org) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, name=excluded.name, parent=excluded.parent, org=excluded.org`,
			a.ID, a.Kind, a.Name, a.Parent, a.Org); err != nil {
			return fmt.Errorf("apply asset: %w", err)
		}
		r.assets[a.ID] = a
	case api.ChangeToken:
		return r.applyToken(ctx, c)
	case api.ChangeUser:
		return r.applyUser(ctx, c)
	default:
		return fmt.Errorf("%w: registry change kind %q", ErrInvalid, c.Kind)
	}
	return nil
}

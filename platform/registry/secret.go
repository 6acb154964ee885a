package registry

import (
	"context"
	"fmt"

	"github.com/gale-iot/gale/platform/api"
)

// RotateSecret gives device (pk, dk) a new random secret and returns the
// device with it. The old secret stops working at once: the broker's
// device watcher drops a session that logged in with it (as it drops a
// disabled device's), here and, through the change log, on every node.
func (r *Registry) RotateSecret(ctx context.Context, pk, dk string) (api.Device, error) {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	prev, ok := r.Device(pk, dk)
	if !ok {
		return api.Device{}, fmt.Errorf("device %s/%s %w", pk, dk, ErrNotFound)
	}
	d := prev
	d.Secret = randomHex(16)
	if err := r.replaceSecret(ctx, d); err != nil {
		return api.Device{}, err
	}
	r.deviceChanged(pk, dk)
	if err := r.keepDevice(ctx, d, &prev); err != nil {
		return api.Device{}, err
	}
	return d, nil
}

// replaceSecret stores device d with its new secret. Callers hold r.changeMu.
func (r *Registry) replaceSecret(ctx context.Context, d api.Device) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.devices[deviceID{d.ProductKey, d.DeviceKey}]; !ok {
		return fmt.Errorf("device %s/%s %w", d.ProductKey, d.DeviceKey, ErrNotFound)
	}
	if err := r.storeDevice(ctx, &d); err != nil {
		return err
	}
	r.devices[deviceID{d.ProductKey, d.DeviceKey}] = &d
	return nil
}

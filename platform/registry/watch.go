package registry

import (
	"strings"
	"sync"

	"github.com/gale-iot/gale/platform/api"
)

// DeviceWatcher is told that device (pk, dk) was changed or deleted, by
// this node or (through the change log) by another; it reads the device's
// new state from the registry. It is called without the registry's lock
// held and must not block for long.
type DeviceWatcher func(pk, dk string)

// watchers holds the registry's device watchers.
type watchers struct {
	mu     sync.RWMutex
	device []DeviceWatcher
}

// WatchDevices calls w after every change or deletion of a device.
func (r *Registry) WatchDevices(w DeviceWatcher) {
	r.watch.mu.Lock()
	r.watch.device = append(r.watch.device, w)
	r.watch.mu.Unlock()
}

// deviceChanged tells the watchers about device (pk, dk). Callers must not hold r.mu.
func (r *Registry) deviceChanged(pk, dk string) {
	r.watch.mu.RLock()
	ws := r.watch.device
	r.watch.mu.RUnlock()
	for _, w := range ws {
		w(pk, dk)
	}
}

// changeApplied tells the watchers about a device change applied from the
// change log (whether or not it succeeded: they read the current state).
func (r *Registry) changeApplied(c api.RegistryChange) {
	if c.Kind != api.ChangeDevice {
		return
	}
	pk, dk, _ := strings.Cut(c.Key, "/")
	if c.Device != nil {
		pk, dk = c.Device.ProductKey, c.Device.DeviceKey
	}
	r.deviceChanged(pk, dk)
}

package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/gale-iot/gale/platform/api"
)

// DeviceFilter selects devices; empty fields match everything.
type DeviceFilter struct {
	ProductKey string
	Org        string
	Site       string
	// Gateway is "productKey/deviceKey" of a gateway whose sub-devices to list.
	Gateway string
}

func (f DeviceFilter) match(d *api.Device) bool {
	return (f.ProductKey == "" || d.ProductKey == f.ProductKey) &&
		(f.Org == "" || d.Org == f.Org) &&
		(f.Site == "" || d.Site == f.Site) &&
		(f.Gateway == "" || d.GatewayProductKey+"/"+d.GatewayDeviceKey == f.Gateway)
}

// Devices lists the devices matching f, ordered by product and device key.
func (r *Registry) Devices(f DeviceFilter) []api.Device {
	r.mu.RLock()
	out := []api.Device{}
	for _, d := range r.devices {
		if f.match(d) {
			out = append(out, *d)
		}
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].ProductKey != out[j].ProductKey {
			return out[i].ProductKey < out[j].ProductKey
		}
		return out[i].DeviceKey < out[j].DeviceKey
	})
	return out
}

// Device returns device (pk, dk).
func (r *Registry) Device(pk, dk string) (api.Device, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[deviceID{pk, dk}]
	if !ok {
		return api.Device{}, false
	}
	return *d, true
}

// CreateDevice registers d and returns it with its secret (generated when empty).
func (r *Registry) CreateDevice(ctx context.Context, d api.Device) (api.Device, error) {
	if err := checkDeviceSize(&d); err != nil {
		return d, err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	d, err := r.createDevice(ctx, d)
	if err != nil {
		return d, err
	}
	return d, r.keepDevice(ctx, d, nil)
}

// keepDevice announces device d, just stored, and puts prev (nil: no
// device) back when that fails. Callers hold r.changeMu.
func (r *Registry) keepDevice(ctx context.Context, d api.Device, prev *api.Device) error {
	c := api.RegistryChange{Kind: api.ChangeDevice, Key: d.ProductKey + "/" + d.DeviceKey, Device: &d}
	return r.keep(ctx, c, func(ctx context.Context) error { return r.restoreDevice(ctx, d.ProductKey, d.DeviceKey, prev) })
}

// restoreDevice puts device (pk, dk) back as prev, or removes it when prev is nil.
func (r *Registry) restoreDevice(ctx context.Context, pk, dk string, prev *api.Device) error {
	defer r.deviceChanged(pk, dk) // after the unlock: the watchers see the undone change
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev == nil {
		if _, err := r.db.ExecContext(ctx, `DELETE FROM devices WHERE product_key = ? AND device_key = ?`, pk, dk); err != nil {
			return fmt.Errorf("remove device %s/%s: %w", pk, dk, err)
		}
		delete(r.devices, deviceID{pk, dk})
		return nil
	}
	d := *prev
	if err := r.storeDevice(ctx, &d); err != nil {
		return err
	}
	r.devices[deviceID{pk, dk}] = &d
	return nil
}

func (r *Registry) createDevice(ctx context.Context, d api.Device) (api.Device, error) {
	if !identRE.MatchString(d.DeviceKey) {
		return d, fmt.Errorf("%w: deviceKey %q must be 1-128 letters, digits, '_', '.', '-'", ErrInvalid, d.DeviceKey)
	}
	if d.Secret == "" {
		d.Secret = randomHex(16)
	}
	if d.Name == "" {
		d.Name = d.DeviceKey
	}
	d.CreatedAt = time.Now().UnixMilli()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.products[d.ProductKey]; !ok {
		return d, fmt.Errorf("%w: product %q does not exist", ErrInvalid, d.ProductKey)
	}
	if _, ok := r.devices[deviceID{d.ProductKey, d.DeviceKey}]; ok {
		return d, fmt.Errorf("device %s/%s %w", d.ProductKey, d.DeviceKey, ErrExists)
	}
	if err := r.checkPlacement(&d); err != nil {
		return d, err
	}
	if err := r.storeDevice(ctx, &d); err != nil {
		return d, err
	}
	r.devices[deviceID{d.ProductKey, d.DeviceKey}] = &d
	return d, nil
}

// DevicePatch changes some fields of a device; nil fields stay as they are.
type DevicePatch struct {
	Name              *string         `json:"name"`
	Enabled           *bool           `json:"enabled"`
	Site              *string         `json:"site"`
	GatewayProductKey *string         `json:"gatewayProductKey"`
	GatewayDeviceKey  *string         `json:"gatewayDeviceKey"`
	Attributes        *map[string]any `json:"attributes"`
}

// PatchDevice applies p to device (pk, dk) and returns the result.
func (r *Registry) PatchDevice(ctx context.Context, pk, dk string, p DevicePatch) (api.Device, error) {
	if err := checkPatchSize(p); err != nil {
		return api.Device{}, err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	prev, _ := r.Device(pk, dk)
	d, err := r.patchDevice(ctx, pk, dk, p)
	if err != nil {
		return d, err
	}
	r.deviceChanged(pk, dk)
	return d, r.keepDevice(ctx, d, &prev)
}

func (r *Registry) patchDevice(ctx context.Context, pk, dk string, p DevicePatch) (api.Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.devices[deviceID{pk, dk}]
	if !ok {
		return api.Device{}, fmt.Errorf("device %s/%s %w", pk, dk, ErrNotFound)
	}
	d := *cur
	p.ApplyTo(&d)
	if err := r.checkPlacement(&d); err != nil {
		return d, err
	}
	if err := r.storeDevice(ctx, &d); err != nil {
		return d, err
	}
	r.devices[deviceID{pk, dk}] = &d
	return d, nil
}

// ApplyTo sets the fields of d that p changes.
func (p DevicePatch) ApplyTo(d *api.Device) {
	set(&d.Name, p.Name)
	set(&d.Enabled, p.Enabled)
	set(&d.Site, p.Site)
	set(&d.GatewayProductKey, p.GatewayProductKey)
	set(&d.GatewayDeviceKey, p.GatewayDeviceKey)
	set(&d.Attributes, p.Attributes)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// DeleteDevice removes device (pk, dk).
func (r *Registry) DeleteDevice(ctx context.Context, pk, dk string) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	prev, _ := r.Device(pk, dk)
	if err := r.deleteDevice(ctx, pk, dk); err != nil {
		return err
	}
	r.deviceChanged(pk, dk)
	return r.keep(ctx, api.RegistryChange{Kind: api.ChangeDevice, Key: pk + "/" + dk, Deleted: true},
		func(ctx context.Context) error { return r.restoreDevice(ctx, pk, dk, &prev) })
}

func (r *Registry) deleteDevice(ctx context.Context, pk, dk string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.devices[deviceID{pk, dk}]; !ok {
		return fmt.Errorf("device %s/%s %w", pk, dk, ErrNotFound)
	}
	if _, err := r.db.ExecContext(ctx, `DELETE FROM devices WHERE product_key = ? AND device_key = ?`, pk, dk); err != nil {
		return fmt.Errorf("delete device %s/%s: %w", pk, dk, err)
	}
	delete(r.devices, deviceID{pk, dk})
	return nil
}

// checkPlacement fills the device's org from its site and checks its site
// and gateway exist and its product is of the public library or of its
// org. Callers hold r.mu.
func (r *Registry) checkPlacement(d *api.Device) error {
	if d.Site != "" {
		site, ok := r.assets[d.Site]
		if !ok || site.Kind != api.AssetSite {
			return fmt.Errorf("%w: site %q does not exist", ErrInvalid, d.Site)
		}
		if d.Org != "" && d.Org != site.Org {
			return fmt.Errorf("%w: site %q belongs to org %q, not %q", ErrInvalid, d.Site, site.Org, d.Org)
		}
		d.Org = site.Org
	}
	if d.Org == "" {
		return fmt.Errorf("%w: a device needs an org or a site", ErrInvalid)
	}
	if a, ok := r.assets[d.Org]; !ok || a.Kind != api.AssetOrg {
		return fmt.Errorf("%w: org %q does not exist", ErrInvalid, d.Org)
	}
	if m, ok := r.products[d.ProductKey]; ok && m.Product.Org != "" && m.Product.Org != d.Org {
		// Another org's product is answered as a missing one.
		return fmt.Errorf("%w: product %q does not exist", ErrInvalid, d.ProductKey)
	}
	if (d.GatewayProductKey == "") != (d.GatewayDeviceKey == "") {
		return fmt.Errorf("%w: gatewayProductKey and gatewayDeviceKey go together", ErrInvalid)
	}
	if d.GatewayDeviceKey != "" {
		if _, ok := r.devices[deviceID{d.GatewayProductKey, d.GatewayDeviceKey}]; !ok {
			return fmt.Errorf("%w: gateway %s/%s does not exist", ErrInvalid, d.GatewayProductKey, d.GatewayDeviceKey)
		}
	}
	return nil
}

func (r *Registry) storeDevice(ctx context.Context, d *api.Device) error {
	attrs, err := json.Marshal(d.Attributes)
	if err != nil {
		return fmt.Errorf("encode attributes: %w", err)
	}
	secret := d.Secret
	if r.keys != nil {
		secret = r.keys.sealRest(secret, secretAD(d.ProductKey, d.DeviceKey))
	}
	_, err = r.db.ExecContext(ctx, `INSERT INTO devices(product_key, device_key, name, secret, enabled, org, site, gateway_pk, gateway_dk, attributes, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(product_key, device_key) DO UPDATE SET name=excluded.name, secret=excluded.secret, enabled=excluded.enabled, org=excluded.org,
		site=excluded.site, gateway_pk=excluded.gateway_pk, gateway_dk=excluded.gateway_dk, attributes=excluded.attributes`,
		d.ProductKey, d.DeviceKey, d.Name, secret, d.Enabled, d.Org, d.Site, d.GatewayProductKey, d.GatewayDeviceKey, string(attrs), d.CreatedAt)
	if err != nil {
		return fmt.Errorf("store device %s/%s: %w", d.ProductKey, d.DeviceKey, err)
	}
	return nil
}

// SetGateway places device (pk, dk) behind gateway (gwPK, gwDK).
func (r *Registry) SetGateway(ctx context.Context, pk, dk, gwPK, gwDK string) error {
	_, err := r.PatchDevice(ctx, pk, dk, DevicePatch{GatewayProductKey: &gwPK, GatewayDeviceKey: &gwDK})
	return err
}

// secretAD binds a sealed secret to its device, so that it does not open as another's.
func secretAD(pk, dk string) string { return pk + "/" + dk }

// sealPlaintextSecrets seals the secrets of devices an older database
// stored in plaintext. It runs while the registry is opened.
func (r *Registry) sealPlaintextSecrets(devices []*api.Device) error {
	if len(devices) == 0 {
		return nil
	}
	tx, err := r.db.Begin()
	if err != nil {
		return fmt.Errorf("seal device secrets: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, d := range devices {
		if _, err := tx.Exec(`UPDATE devices SET secret = ? WHERE product_key = ? AND device_key = ?`,
			r.keys.sealRest(d.Secret, secretAD(d.ProductKey, d.DeviceKey)), d.ProductKey, d.DeviceKey); err != nil {
			return fmt.Errorf("seal device %s/%s secret: %w", d.ProductKey, d.DeviceKey, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seal device secrets: %w", err)
	}
	return nil
}

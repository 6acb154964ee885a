package registry

import (
	"context"
	"fmt"
	"sort"

	"github.com/gale-iot/gale/platform/api"
)

// PutAsset creates an org (no parent) or a site (parent is an org or a site).
func (r *Registry) PutAsset(ctx context.Context, a api.Asset) (api.Asset, error) {
	if err := checkName("asset name", a.Name); err != nil {
		return a, err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	a, err := r.putAsset(ctx, a)
	if err != nil {
		return a, err
	}
	return a, r.keep(ctx, api.RegistryChange{Kind: api.ChangeAsset, Key: a.ID, Asset: &a}, func(ctx context.Context) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, err := r.db.ExecContext(ctx, `DELETE FROM assets WHERE id = ?`, a.ID); err != nil {
			return fmt.Errorf("remove asset %q: %w", a.ID, err)
		}
		delete(r.assets, a.ID)
		return nil
	})
}

func (r *Registry) putAsset(ctx context.Context, a api.Asset) (api.Asset, error) {
	if !identRE.MatchString(a.ID) {
		return a, fmt.Errorf("%w: asset id %q", ErrInvalid, a.ID)
	}
	if a.Name == "" {
		a.Name = a.ID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.assets[a.ID]; ok {
		return a, fmt.Errorf("asset %q %w", a.ID, ErrExists)
	}
	switch a.Kind {
	case api.AssetOrg:
		if a.Parent != "" {
			return a, fmt.Errorf("%w: an org has no parent", ErrInvalid)
		}
		a.Org = a.ID
	case api.AssetSite:
		parent, ok := r.assets[a.Parent]
		if !ok {
			return a, fmt.Errorf("%w: parent %q does not exist", ErrInvalid, a.Parent)
		}
		a.Org = parent.Org
	default:
		return a, fmt.Errorf("%w: asset kind %q, want org or site", ErrInvalid, a.Kind)
	}
	if _, err := r.db.ExecContext(ctx, `INSERT INTO assets(id, kind, name, parent, org) VALUES (?, ?, ?, ?, ?)`,
		a.ID, a.Kind, a.Name, a.Parent, a.Org); err != nil {
		return a, fmt.Errorf("store asset %q: %w", a.ID, err)
	}
	r.assets[a.ID] = a
	return a, nil
}

// Asset returns asset id.
func (r *Registry) Asset(id string) (api.Asset, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.assets[id]
	return a, ok
}

// AssetTree returns the orgs with their sites nested, and each site's devices.
func (r *Registry) AssetTree() []*api.Asset {
	r.mu.RLock()
	defer r.mu.RUnlock()
	nodes := map[string]*api.Asset{}
	for _, id := range sortedKeys(r.assets) {
		a := r.assets[id]
		nodes[id] = &a
	}
	for _, d := range r.devices {
		if n, ok := nodes[d.Site]; ok {
			n.Devices = append(n.Devices, d.ProductKey+"/"+d.DeviceKey)
		}
	}
	var roots []*api.Asset
	for _, id := range sortedKeys(nodes) {
		n := nodes[id]
		sort.Strings(n.Devices)
		if p, ok := nodes[n.Parent]; ok {
			p.Children = append(p.Children, n)
		} else {
			roots = append(roots, n)
		}
	}
	return roots
}

// Subtree returns the ids of asset id and all assets below it.
func (r *Registry) Subtree(id string) map[string]bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[string]bool{id: true}
	for changed := true; changed; {
		changed = false
		for _, a := range r.assets {
			if out[a.Parent] && !out[a.ID] {
				out[a.ID], changed = true, true
			}
		}
	}
	return out
}

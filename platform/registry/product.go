package registry

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gale-iot/gale/platform/api"
)

// productColumns are the columns orgs added to the products table: a
// database made before them keeps its products in the public library.
var productColumns = []column{{"org", "TEXT NOT NULL DEFAULT ''"}}

// Products lists all products by key: the public library's (Org empty) and every org's.
func (r *Registry) Products() []api.Product {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]api.Product, 0, len(r.products))
	for _, k := range sortedKeys(r.products) {
		out = append(out, r.products[k].Product)
	}
	return out
}

// Model returns the compiled thing model of product pk.
func (r *Registry) Model(pk string) (*Model, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.products[pk]
	return m, ok
}

// PutProduct creates product p, or replaces it when replace is true. A
// product of an org (p.Org) is that org's own, usable by its devices only;
// one without is of the public library. Its org never changes.
func (r *Registry) PutProduct(ctx context.Context, p api.Product, replace bool) error {
	if err := ValidateProduct(&p); err != nil {
		return err
	}
	if err := checkProductSize(&p); err != nil {
		return err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.mu.Lock()
	prev, exists := r.products[p.Key]
	var err error
	switch {
	case exists && !replace:
		err = fmt.Errorf("product %q %w", p.Key, ErrExists)
	case !exists && replace:
		err = fmt.Errorf("product %q %w", p.Key, ErrNotFound)
	case exists && prev.Product.Org != p.Org:
		err = fmt.Errorf("%w: product %q is of %s; a product's org does not change", ErrInvalid, p.Key, libraryOf(prev.Product.Org))
	case p.Org != "" && r.assets[p.Org].Kind != api.AssetOrg:
		err = fmt.Errorf("%w: org %q does not exist", ErrInvalid, p.Org)
	}
	if err != nil {
		r.mu.Unlock()
		return err
	}
	if err := r.storeProduct(ctx, p); err != nil {
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()
	return r.keep(ctx, api.RegistryChange{Kind: api.ChangeProduct, Key: p.Key, Product: &p},
		func(ctx context.Context) error { return r.restoreProduct(ctx, p.Key, prev) })
}

// restoreProduct puts product pk back as prev, or removes it when prev is nil.
func (r *Registry) restoreProduct(ctx context.Context, pk string, prev *Model) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev != nil {
		return r.storeProduct(ctx, prev.Product)
	}
	if _, err := r.db.ExecContext(ctx, `DELETE FROM products WHERE key = ?`, pk); err != nil {
		return fmt.Errorf("remove product %q: %w", pk, err)
	}
	delete(r.products, pk)
	return nil
}

// storeProduct upserts p and its compiled model. Callers hold r.mu.
func (r *Registry) storeProduct(ctx context.Context, p api.Product) error {
	model, err := json.Marshal(p.Model)
	if err != nil {
		return fmt.Errorf("encode model: %w", err)
	}
	if _, err := r.db.ExecContext(ctx, `INSERT INTO products(key, name, description, model, org) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET name=excluded.name, description=excluded.description, model=excluded.model, org=excluded.org`,
		p.Key, p.Name, p.Description, string(model), p.Org); err != nil {
		return fmt.Errorf("store product %q: %w", p.Key, err)
	}
	r.products[p.Key] = compile(p)
	return nil
}

// DeleteProduct deletes product pk; it must have no devices.
func (r *Registry) DeleteProduct(ctx context.Context, pk string) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	prev, _ := r.Model(pk)
	if err := r.deleteProduct(ctx, pk); err != nil {
		return err
	}
	return r.keep(ctx, api.RegistryChange{Kind: api.ChangeProduct, Key: pk, Deleted: true},
		func(ctx context.Context) error { return r.restoreProduct(ctx, pk, prev) })
}

func (r *Registry) deleteProduct(ctx context.Context, pk string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.products[pk]; !ok {
		return fmt.Errorf("product %q %w", pk, ErrNotFound)
	}
	for id := range r.devices {
		if id.pk == pk {
			return fmt.Errorf("product %q is %w by device %q", pk, ErrInUse, id.dk)
		}
	}
	if _, err := r.db.ExecContext(ctx, `DELETE FROM products WHERE key = ?`, pk); err != nil {
		return fmt.Errorf("delete product %q: %w", pk, err)
	}
	delete(r.products, pk)
	return nil
}

// libraryOf names where a product of org is: the public library or org's own.
func libraryOf(org string) string {
	if org == "" {
		return "the public library"
	}
	return fmt.Sprintf("org %q", org)
}

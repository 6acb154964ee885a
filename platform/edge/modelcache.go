package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
)

// modelCache fetches the thing models of the sub-devices' products from the
// cloud API (GET /api/v1/products/{pk}) and keeps the last copy of each
// under DataDir/models, so the edge starts and validates while the cloud is
// down.
type modelCache struct {
	dir string
	api *apiclient.Client
	log *slog.Logger
}

// newModelCache asks the API at apiURL, trusting tlsCfg's CA when it is https and tlsCfg is set.
func newModelCache(dir, apiURL, token string, tlsCfg *tls.Config, log *slog.Logger) (*modelCache, error) {
	c, err := apiclient.New(apiURL, apiclient.Options{Token: token, TLS: tlsCfg, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCloud, err)
	}
	return &modelCache{dir: dir, api: c, log: log}, nil
}

// load returns product pk's thing model: fetched and saved, or, when the
// cloud cannot be asked, the local copy.
func (c *modelCache) load(ctx context.Context, pk string) (api.Product, error) {
	p, err := c.fetch(ctx, pk)
	if err == nil {
		if err := c.save(p); err != nil {
			c.log.Warn("thing model not cached", "product", pk, "err", err)
		}
		return p, nil
	}
	b, cerr := os.ReadFile(c.path(pk))
	if cerr == nil {
		cerr = json.Unmarshal(b, &p)
	}
	if cerr != nil {
		return p, fmt.Errorf("%w for product %q: cloud: %v; local copy: %v", ErrNoModel, pk, err, cerr)
	}
	c.log.Warn("thing model from the local copy; the cloud did not answer", "product", pk, "err", err)
	return p, nil
}

func (c *modelCache) path(pk string) string {
	return filepath.Join(c.dir, url.PathEscape(pk)+".json")
}

func (c *modelCache) fetch(ctx context.Context, pk string) (api.Product, error) {
	p, err := c.api.Product(ctx, pk)
	if err == nil && p.Key != pk {
		err = fmt.Errorf("GET product %s: answered product %q", pk, p.Key)
	}
	return p, err
}

// save writes the model atomically (temp file, then rename).
func (c *modelCache) save(p api.Product) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.path(p.Key) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.path(p.Key))
}

package edge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
)

// modelCache fetches the thing models of the sub-devices' products from the
// cloud API (GET /api/v1/products/{pk}) and keeps the last copy of each
// under DataDir/models, so the edge starts and validates while the cloud is
// down.
type modelCache struct {
	dir    string
	apiURL string
	token  string
	client *http.Client
	log    *slog.Logger
}

// newModelCache asks the API at apiURL, trusting tlsCfg's CA when it is https and tlsCfg is set.
func newModelCache(dir, apiURL, token string, tlsCfg *tls.Config, log *slog.Logger) *modelCache {
	client := &http.Client{Timeout: 5 * time.Second}
	if tlsCfg != nil {
		client.Transport = &http.Transport{TLSClientConfig: tlsCfg}
	}
	return &modelCache{dir: dir, apiURL: strings.TrimRight(apiURL, "/"), token: token, client: client, log: log}
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
	var p api.Product
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.apiURL+"/api/v1/products/"+url.PathEscape(pk), nil)
	if err != nil {
		return p, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return p, err
	}
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("GET %s: %w", req.URL.Path, err)
	}
	if p.Key != pk {
		return p, fmt.Errorf("GET %s: answered product %q", req.URL.Path, p.Key)
	}
	return p, nil
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

package loadgen

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
)

// Platform provisions the generator's org, site, product and devices in
// Gale's registry, and queries its Prometheus-compatible API, through
// apiclient.
type Platform struct {
	api *apiclient.Client
	log *slog.Logger
}

// NewPlatform returns a client of the API at baseURL (http://host:port or
// https://…, verified with tlsCfg when set, else the system's roots).
func NewPlatform(baseURL, token string, tlsCfg *tls.Config, log *slog.Logger) (*Platform, error) {
	// Uncompressed: the prober polls a few series many times a second, and
	// gzip would cost the node under test more than ingest does per query.
	c, err := apiclient.New(baseURL, apiclient.Options{Token: token, TLS: tlsCfg, Uncompressed: true})
	if err != nil {
		return nil, err
	}
	return &Platform{api: c, log: log}, nil
}

// Provision makes sure cfg's org, site and product exist (adding missing
// points to an existing product) and that devices PREFIX00000... exist, and
// returns their identities with secrets.
func (p *Platform) Provision(ctx context.Context, cfg Config) ([]Identity, error) {
	for _, a := range []api.Asset{{ID: cfg.Org, Kind: api.AssetOrg}, {ID: cfg.Site, Kind: api.AssetSite, Parent: cfg.Org}} {
		if err := p.api.CreateAsset(ctx, a); err != nil && apiclient.StatusOf(err) != http.StatusConflict {
			return nil, fmt.Errorf("create %s %s: %w", a.Kind, a.ID, err)
		}
	}
	if err := p.ensureProduct(ctx, cfg.Product, cfg.Points); err != nil {
		return nil, err
	}
	existing, err := p.api.Devices(ctx, url.Values{"productKey": {cfg.Product}})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	secrets := make(map[string]string, len(existing))
	for _, d := range existing {
		secrets[d.DeviceKey] = d.Secret
	}
	ids := make([]Identity, cfg.Devices)
	var mu sync.Mutex
	created := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range ids {
		dk := deviceKey(cfg, i)
		ids[i] = Identity{ProductKey: cfg.Product, DeviceKey: dk, Secret: secrets[dk]}
		if ids[i].Secret != "" {
			continue
		}
		g.Go(func() error {
			var d api.Device
			_, listed := secrets[dk]
			var err error
			if !listed {
				d, err = p.api.CreateDevice(gctx, api.Device{ProductKey: cfg.Product, DeviceKey: dk, Site: cfg.Site, Enabled: true})
				if err == nil {
					mu.Lock()
					created++
					mu.Unlock()
				}
			}
			if listed || apiclient.StatusOf(err) == http.StatusConflict {
				// Listed without its secret, or created meanwhile: ask for it alone.
				d, err = p.api.Device(gctx, cfg.Product, dk)
			}
			if err != nil {
				return fmt.Errorf("device %s: %w", dk, err)
			}
			if d.Secret == "" {
				return fmt.Errorf("device %s: the API did not return its secret (is the token an admin's?)", dk)
			}
			ids[i].Secret = d.Secret
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	p.log.Info("devices ready", "product", cfg.Product, "devices", len(ids), "created", created)
	return ids, nil
}

// ensureProduct creates product pk with points P0..P{points-1} (float) and
// Seq (int), or adds those it lacks to an existing one.
func (p *Platform) ensureProduct(ctx context.Context, pk string, points int) error {
	want := []api.Measurepoint{{ID: SeqPoint, Name: "load generator sequence number", Type: api.TypeInt}}
	for i := range points {
		want = append(want, api.Measurepoint{ID: pointID(i), Type: api.TypeFloat})
	}
	prod, err := p.api.Product(ctx, pk)
	if apiclient.StatusOf(err) == http.StatusNotFound {
		prod = api.Product{Key: pk, Name: "Load generator devices", Model: api.ThingModel{Measurepoints: want}}
		if err := p.api.CreateProduct(ctx, prod); err != nil {
			return fmt.Errorf("create product %s: %w", pk, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("product %s: %w", pk, err)
	}
	added := false
	for _, mp := range want {
		if !slices.ContainsFunc(prod.Model.Measurepoints, func(h api.Measurepoint) bool { return h.ID == mp.ID }) {
			prod.Model.Measurepoints = append(prod.Model.Measurepoints, mp)
			added = true
		}
	}
	if added {
		if err := p.api.UpdateProduct(ctx, prod); err != nil {
			return fmt.Errorf("add points to product %s: %w", pk, err)
		}
	}
	return nil
}

func pointID(i int) string { return "P" + strconv.Itoa(i) }

// deviceSelector is a PromQL selector of metric name for the given devices.
func deviceSelector(name string, ids []Identity) string {
	products := map[string]bool{}
	var pks, dks []string
	for _, id := range ids {
		if !products[id.ProductKey] {
			products[id.ProductKey] = true
			pks = append(pks, regexp.QuoteMeta(id.ProductKey))
		}
		dks = append(dks, regexp.QuoteMeta(id.DeviceKey))
	}
	return fmt.Sprintf(`%s{product=~%s,device=~%s}`, api.MetricName(name),
		strconv.Quote(strings.Join(pks, "|")), strconv.Quote(strings.Join(dks, "|")))
}

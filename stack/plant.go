package stack

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/direct"
)

// PlantConfig says where a plant reaches the cloud.
type PlantConfig struct {
	// Cloud is the cloud's MQTT broker and API (with an admin token file)
	// that the directly connected devices and the edges use, and the TLS
	// they use towards it: a CA, no client certificate (one names a single
	// device, and the plant has many; see DeviceTLS).
	Cloud edge.CloudConfig
	// DeviceTLS, when set, gives each directly connected device and each
	// edge's gateway a TLS config of its own (with its own client
	// certificate, for a cloud that requires them) instead of Cloud.TLS.
	DeviceTLS func(productKey, deviceKey string) (*edge.CloudTLS, error)
	// Secret looks the devices' secrets up.
	Secret direct.SecretFunc
	// DataDir holds each edge's data under DataDir/edge/GATEWAY.
	DataDir string
	// NoEdges leaves the Modbus gateways unpolled (a scenario runs its own edges).
	NoEdges bool
}

// Plant is the twin side of a deployment: the fleet, its directly connected
// devices and one edge gateway per twin Modbus gateway (on the fleet's
// clock), against a cloud in this process or elsewhere. Its devices must be
// registered in the cloud.
type Plant struct {
	Fleet *twins.Fleet
	cfg   PlantConfig
	log   *slog.Logger
	dir   *direct.Runner
}

// NewPlant prepares the directly connected devices of fleet.
func NewPlant(fleet *twins.Fleet, cfg PlantConfig, log *slog.Logger, reg prometheus.Registerer) (*Plant, error) {
	tlsCfg, err := cfg.Cloud.ClientTLS()
	if err != nil {
		return nil, err
	}
	dcfg := direct.Config{Broker: cfg.Cloud.MQTTAddr, TLS: tlsCfg, Secret: cfg.Secret}
	if cfg.DeviceTLS != nil {
		dcfg.TLSFor = func(pk, dk string) (*tls.Config, error) {
			ct, err := cfg.DeviceTLS(pk, dk)
			if err != nil {
				return nil, err
			}
			return edge.CloudConfig{TLS: ct}.ClientTLS()
		}
	}
	dir, err := direct.New(fleet, dcfg, log.With("component", "direct"), reg)
	if err != nil {
		return nil, err
	}
	return &Plant{Fleet: fleet, cfg: cfg, log: log, dir: dir}, nil
}

// Run runs the fleet, its direct devices and (unless NoEdges) its edges until ctx ends.
func (p *Plant) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Fleet.Run(gctx) })
	g.Go(func() error { return p.dir.Run(gctx) })
	if !p.cfg.NoEdges {
		g.Go(func() error {
			select {
			case <-p.Fleet.Ready():
			case <-gctx.Done():
				return nil
			}
			return p.runEdges(gctx)
		})
	}
	return g.Wait()
}

// EdgeConfig is the edge gateway config for twin gateway id: logged in as
// the demo gateway device of that name, polling the gateway's units.
func (p *Plant) EdgeConfig(id string) (edge.Config, error) {
	var units []edge.Unit
	var found bool
	for _, gwCfg := range p.Fleet.Config().Gateways {
		if gwCfg.ID != id {
			continue
		}
		found = true
		for _, u := range gwCfg.Units {
			secret, err := p.cfg.Secret(u.Map, u.Device)
			if err != nil {
				return edge.Config{}, fmt.Errorf("secret of %s/%s: %w", u.Map, u.Device, err)
			}
			units = append(units, edge.Unit{Unit: u, Secret: secret})
		}
	}
	gw, ok := p.Fleet.Gateway(id)
	if !found || !ok {
		return edge.Config{}, fmt.Errorf("twin gateway %s not running", id)
	}
	gwSecret, err := p.cfg.Secret("modbus-gateway", id)
	if err != nil {
		return edge.Config{}, fmt.Errorf("secret of modbus-gateway/%s: %w", id, err)
	}
	cloud := p.cfg.Cloud
	if p.cfg.DeviceTLS != nil {
		if cloud.TLS, err = p.cfg.DeviceTLS("modbus-gateway", id); err != nil {
			return edge.Config{}, fmt.Errorf("tls of modbus-gateway/%s: %w", id, err)
		}
	}
	return edge.Config{
		DataDir: filepath.Join(p.cfg.DataDir, "edge", id),
		Gateway: edge.Identity{ProductKey: "modbus-gateway", DeviceKey: id, Secret: gwSecret},
		Cloud:   cloud,
		Targets: []edge.Target{{Name: id, Addr: gw.Addr(), Units: units}},
	}, nil
}

// runEdges runs one edge gateway per twin gateway, on the fleet's clock so samples carry sim time.
func (p *Plant) runEdges(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, gwCfg := range p.Fleet.Config().Gateways {
		cfg, err := p.EdgeConfig(gwCfg.ID)
		if err != nil {
			return err
		}
		e, err := edge.New(cfg, p.log.With("component", "edge"), edge.WithClock(p.Fleet.Clock()))
		if err != nil {
			return err
		}
		g.Go(func() error { return e.Run(gctx) })
	}
	return g.Wait()
}

// Package stack composes what `gale up` runs on one machine: a cloud node
// with embedded engines, the twin fleet, one edge gateway per twin Modbus
// gateway (on the fleet's clock) and the fleet's directly connected devices.
// Scenarios start the same stack in-process.
package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/direct"
)

// Config configures a stack.
type Config struct {
	Node node.Config
	// Fleet is the twin fleet; its gateways' devices must be registered
	// (SeedDemo does it for the demo fleet).
	Fleet twins.Config
	// Turbines is the size of the demo registry SeedDemo creates.
	Turbines int
	// NoEdges leaves the Modbus gateways unpolled (a scenario may run its own edges).
	NoEdges bool
}

// Stack is a running node with its fleet.
type Stack struct {
	Node  *node.Node
	Fleet *twins.Fleet
	cfg   Config
	log   *slog.Logger
	dir   *direct.Runner
}

// New builds the fleet and the node (mounting the twin control API under
// /twins/), seeds the demo registry and prepares the direct devices.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Stack, error) {
	if cfg.Fleet.Speed > 1 {
		// An accelerated fleet's sim time runs ahead of the wall clock.
		cfg.Node.MQTT.MaxSampleFuture = 10 * 365 * 24 * time.Hour
	}
	fleet, err := twins.New(cfg.Fleet, log.With("component", "twins"))
	if err != nil {
		return nil, err
	}
	n, err := node.New(ctx, cfg.Node, log, map[string]http.Handler{"/twins/": fleet.Handler()})
	if err != nil {
		return nil, err
	}
	if err := node.SeedDemo(ctx, n.Registry, cfg.Turbines); err != nil {
		return nil, err
	}
	s := &Stack{Node: n, Fleet: fleet, cfg: cfg, log: log}
	s.dir, err = direct.New(fleet, direct.Config{Broker: n.MQTTAddr(), Secret: s.Secret}, log.With("component", "direct"), n.Registerer())
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Secret returns a registered device's secret.
func (s *Stack) Secret(pk, dk string) (string, error) {
	d, ok := s.Node.Registry.Device(pk, dk)
	if !ok {
		return "", fmt.Errorf("device %s/%s is not registered", pk, dk)
	}
	return d.Secret, nil
}

// Run runs everything until ctx ends.
func (s *Stack) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Node.Run(gctx) })
	g.Go(func() error { return s.Fleet.Run(gctx) })
	g.Go(func() error { return s.dir.Run(gctx) })
	if !s.cfg.NoEdges {
		g.Go(func() error {
			select {
			case <-s.Fleet.Ready():
			case <-gctx.Done():
				return nil
			}
			return s.runEdges(gctx)
		})
	}
	return g.Wait()
}

// EdgeConfig is the edge gateway config for twin gateway id: logged in as
// the demo gateway device of that name, polling the gateway's units.
func (s *Stack) EdgeConfig(id string) (edge.Config, error) {
	var units []edge.Unit
	var found bool
	for _, gwCfg := range s.cfg.Fleet.Gateways {
		if gwCfg.ID != id {
			continue
		}
		found = true
		for _, u := range gwCfg.Units {
			secret, err := s.Secret(u.Map, u.Device)
			if err != nil {
				return edge.Config{}, err
			}
			units = append(units, edge.Unit{Unit: u, Secret: secret})
		}
	}
	gw, ok := s.Fleet.Gateway(id)
	if !found || !ok {
		return edge.Config{}, fmt.Errorf("twin gateway %s not running", id)
	}
	gwSecret, err := s.Secret("modbus-gateway", id)
	if err != nil {
		return edge.Config{}, err
	}
	return edge.Config{
		DataDir: filepath.Join(s.cfg.Node.DataDir, "edge", id),
		Gateway: edge.Identity{ProductKey: "modbus-gateway", DeviceKey: id, Secret: gwSecret},
		Cloud:   edge.CloudConfig{MQTTAddr: s.Node.MQTTAddr(), APIURL: "http://" + s.Node.HTTPAddr(), TokenFile: s.Node.TokenFile},
		Targets: []edge.Target{{Name: id, Addr: gw.Addr(), Units: units}},
	}, nil
}

// runEdges runs one edge gateway per twin gateway, on the fleet's clock so samples carry sim time.
func (s *Stack) runEdges(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, gwCfg := range s.cfg.Fleet.Gateways {
		cfg, err := s.EdgeConfig(gwCfg.ID)
		if err != nil {
			return err
		}
		e, err := edge.New(cfg, s.log.With("component", "edge", "gateway", gwCfg.ID), edge.WithClock(s.Fleet.Clock()))
		if err != nil {
			return err
		}
		g.Go(func() error { return e.Run(gctx) })
	}
	return g.Wait()
}

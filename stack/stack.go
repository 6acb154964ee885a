// Package stack composes what `gale up` runs on one machine: a cloud node
// with embedded engines and the plant — the twin fleet, its directly
// connected devices and one edge gateway per twin Modbus gateway (on the
// fleet's clock). Scenarios run a plant against clouds of their own.
package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/twins"
)

// Config configures a stack.
type Config struct {
	// Node is the cloud node; set its SeedDemo to register the demo fleet's devices.
	Node node.Config
	// Fleet is the twin fleet; its devices must be registered.
	Fleet twins.Config
	// CloudTLS, when the node serves TLS, is how the plant trusts it (its CA).
	CloudTLS *edge.CloudTLS
	// DeviceTLS, when the node requires client certificates, gives each
	// plant device its own (see PlantConfig.DeviceTLS).
	DeviceTLS func(productKey, deviceKey string) (*edge.CloudTLS, error)
}

// Stack is a running node with its plant.
type Stack struct {
	Node  *node.Node
	Plant *Plant
}

// New builds the fleet and the node (mounting the twin control API under
// /twins/) and the plant against the node.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Stack, error) {
	cfg.Node.MQTT.MaxSampleFuture = MaxSampleFuture(cfg.Fleet.Speed, cfg.Node.MQTT.MaxSampleFuture)
	fleet, err := twins.New(cfg.Fleet, log.With("component", "twins"))
	if err != nil {
		return nil, err
	}
	n, err := node.New(ctx, cfg.Node, log, map[string]http.Handler{"/twins/": fleet.Handler()})
	if err != nil {
		return nil, err
	}
	if err := describeFleet(ctx, n.Registry, fleet.Config()); err != nil {
		return nil, err
	}
	secret := func(pk, dk string) (string, error) {
		d, ok := n.Registry.Device(pk, dk)
		if !ok {
			return "", fmt.Errorf("device %s/%s is not registered", pk, dk)
		}
		return d.Secret, nil
	}
	cloud := edge.CloudConfig{MQTTAddr: n.MQTTAddr(), APIURL: n.APIURL(), TokenFile: n.TokenFile, TLS: cfg.CloudTLS}
	plant, err := NewPlant(fleet, PlantConfig{Cloud: cloud, DeviceTLS: cfg.DeviceTLS, Secret: secret, DataDir: cfg.Node.DataDir}, log, n.Registerer())
	if err != nil {
		return nil, err
	}
	return &Stack{Node: n, Plant: plant}, nil
}

// MaxSampleFuture is how far ahead of the wall clock a node must accept
// samples from a fleet running at speed: normal at real time, ten years when
// accelerated, as the sim clock then runs ahead of the wall clock.
func MaxSampleFuture(speed float64, normal time.Duration) time.Duration {
	if speed > 1 {
		return 10 * 365 * 24 * time.Hour
	}
	return normal
}

// Run runs everything until ctx ends.
func (s *Stack) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Node.Run(gctx) })
	g.Go(func() error { return s.Plant.Run(gctx) })
	return g.Wait()
}

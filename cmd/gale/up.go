package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/direct"
)

func runUp(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := node.DefaultConfig()
	fs := newFlagSet("up")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory (registry, TSDB, Kafka log, rules, admin token)")
	fs.StringVar(&cfg.HTTP.Addr, "http-addr", cfg.HTTP.Addr, "HTTP API listen address")
	fs.StringVar(&cfg.MQTT.Addr, "mqtt-addr", cfg.MQTT.Addr, "MQTT listen address")
	fs.StringVar(&cfg.Kafka.EmbeddedAddr, "kafka-addr", cfg.Kafka.EmbeddedAddr, "embedded Kafka listen address")
	modbusAddr := fs.String("modbus-addr", "127.0.0.1:5020", "first listen address of the twin Modbus gateways (one per ten turbines, on consecutive ports)")
	turbines := fs.Int("turbines", 20, "turbines in the demo farm")
	speed := fs.Float64("speed", 1, "twin clock speed (1 = real time, up to 10000)")
	seed := fs.Uint64("seed", 1, "random seed of the twin fleet")
	syncWrites := fs.Bool("kafka-sync-writes", false, "fsync every Kafka batch (survives power loss, slower)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *turbines < 1 || *turbines > 1000 {
		return fmt.Errorf("--turbines %d: want 1 to 1000", *turbines)
	}
	if *speed < 1 || *speed > 10000 {
		return fmt.Errorf("--speed %g: want 1 to 10000", *speed)
	}
	cfg.Kafka.SyncWrites = *syncWrites
	if *speed > 1 {
		// An accelerated fleet's sim time runs ahead of the wall clock.
		cfg.MQTT.MaxSampleFuture = 10 * 365 * 24 * time.Hour
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	fleetCfg, err := twins.DemoConfig(*turbines, *modbusAddr)
	if err != nil {
		return err
	}
	fleetCfg.Seed, fleetCfg.Speed = *seed, *speed
	fleet, err := twins.New(fleetCfg, log.With("component", "twins"))
	if err != nil {
		return err
	}
	n, err := node.New(ctx, cfg, log, map[string]http.Handler{"/twins/": fleet.Handler()})
	if err != nil {
		return err
	}
	if err := node.SeedDemo(ctx, n.Registry, *turbines); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := n.ReloadRules(); err != nil {
				log.Error("rules not reloaded; the previous rules stay", "err", err)
			} else {
				log.Info("rules reloaded")
			}
		}
	}()
	fmt.Fprintf(stdout, "Gale is up.\n  HTTP API:    http://%s  (Prometheus API: http://%s/prometheus, twin control: /twins/v1)\n  MQTT:        %s\n  Kafka:       %v\n  Admin token: %s\n",
		n.HTTPAddr(), n.HTTPAddr(), n.MQTTAddr(), n.KafkaAddrs(), n.TokenFile)
	secret := func(pk, dk string) (string, error) {
		d, ok := n.Registry.Device(pk, dk)
		if !ok {
			return "", fmt.Errorf("device %s/%s is not registered", pk, dk)
		}
		return d.Secret, nil
	}
	direct, err := direct.New(fleet, direct.Config{Broker: n.MQTTAddr(), Secret: secret}, log.With("component", "direct"), n.Registerer())
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.Run(gctx) })
	g.Go(func() error { return fleet.Run(gctx) })
	g.Go(func() error { return direct.Run(gctx) })
	g.Go(func() error {
		select {
		case <-fleet.Ready():
		case <-gctx.Done():
			return nil
		}
		return runEdges(gctx, fleet, fleetCfg, n, cfg.DataDir, secret, log)
	})
	return g.Wait()
}

// runEdges runs one edge gateway per twin Modbus gateway, on the fleet's
// clock so samples carry sim time, logged in as the demo gateway device.
func runEdges(ctx context.Context, fleet *twins.Fleet, fleetCfg twins.Config, n *node.Node, dataDir string,
	secret func(pk, dk string) (string, error), log *slog.Logger) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, gwCfg := range fleetCfg.Gateways {
		gw, ok := fleet.Gateway(gwCfg.ID)
		if !ok {
			return fmt.Errorf("twin gateway %s not running", gwCfg.ID)
		}
		gwSecret, err := secret("modbus-gateway", gwCfg.ID)
		if err != nil {
			return err
		}
		target := edge.Target{Name: gwCfg.ID, Addr: gw.Addr()}
		for _, u := range gwCfg.Units {
			s, err := secret(u.Map, u.Device)
			if err != nil {
				return err
			}
			target.Units = append(target.Units, edge.Unit{Unit: u, Secret: s})
		}
		cfg := edge.Config{
			DataDir: filepath.Join(dataDir, "edge", gwCfg.ID),
			Gateway: edge.Identity{ProductKey: "modbus-gateway", DeviceKey: gwCfg.ID, Secret: gwSecret},
			Cloud:   edge.CloudConfig{MQTTAddr: n.MQTTAddr(), APIURL: "http://" + n.HTTPAddr(), TokenFile: n.TokenFile},
			Targets: []edge.Target{target},
		}
		e, err := edge.New(cfg, log.With("component", "edge", "gateway", gwCfg.ID), edge.WithClock(fleet.Clock()))
		if err != nil {
			return err
		}
		g.Go(func() error { return e.Run(gctx) })
	}
	return g.Wait()
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/stack"
	"github.com/gale-iot/gale/twins"
)

func runUp(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := node.DefaultConfig()
	fs := newFlagSet("up")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory (registry, TSDB, Kafka log, rules, admin token)")
	fs.StringVar(&cfg.HTTP.Addr, "http-addr", cfg.HTTP.Addr, "HTTP API listen address")
	fs.StringVar(&cfg.MQTT.Addr, "mqtt-addr", cfg.MQTT.Addr, "MQTT listen address")
	fs.StringVar(&cfg.Kafka.EmbeddedAddr, "kafka-addr", cfg.Kafka.EmbeddedAddr, "embedded Kafka listen address")
	modbusAddr := fs.String("modbus-addr", "127.0.0.1:5020", "first listen address of the twin Modbus gateways (one per ten turbines, on consecutive ports)")
	turbines := fs.Int("turbines", 20, "turbines in the demo farm behind the twin Modbus gateways")
	direct := fs.Int("direct-turbines", 0, "more turbines of the demo farm, connected directly over MQTT")
	speed := fs.Float64("speed", 1, "twin clock speed (1 = real time, up to 10000)")
	seed := fs.Uint64("seed", 1, "random seed of the twin fleet")
	syncWrites := fs.Bool("kafka-sync-writes", false, "fsync every Kafka batch (survives power loss, slower)")
	fs.StringVar(&cfg.Kafka.SASL.Username, "kafka-sasl-user", "", "SCRAM user the embedded Kafka requires (needed to serve it beyond loopback)")
	fs.StringVar(&cfg.Kafka.SASL.PasswordFile, "kafka-sasl-password-file", "", "file holding --kafka-sasl-user's password")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *turbines < 1 || *turbines > 1000 {
		return fmt.Errorf("--turbines %d: want 1 to 1000", *turbines)
	}
	if *direct < 0 || *turbines+*direct > 1000 {
		return fmt.Errorf("--direct-turbines %d: want 0 to %d", *direct, 1000-*turbines)
	}
	if *speed < 1 || *speed > 10000 {
		return fmt.Errorf("--speed %g: want 1 to 10000", *speed)
	}
	// Refuse a bad config, e.g. an open embedded Kafka beyond loopback, before anything starts.
	if err := cfg.Complete(); err != nil {
		return err
	}
	cfg.Kafka.SyncWrites, cfg.SeedDemo = *syncWrites, node.Demo{Turbines: *turbines, Direct: *direct}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	fleetCfg, err := twins.DemoConfig(*turbines, *direct, *modbusAddr)
	if err != nil {
		return err
	}
	fleetCfg.Seed, fleetCfg.Speed = *seed, *speed
	st, err := stack.New(ctx, stack.Config{Node: cfg, Fleet: fleetCfg}, log)
	if err != nil {
		return err
	}
	n := st.Node
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
	return st.Run(ctx)
}

package main

import (
	"context"
	"fmt"
	"io"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/node"
)

// runCloud runs a cloud node from a YAML config file.
func runCloud(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("cloud")
	path := fs.String("config", "", "node config file (YAML); see platform/node/testdata/*.good.yaml")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("%w: gale cloud --config FILE", errUsage)
	}
	cfg, err := node.LoadConfig(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	n, err := node.New(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Gale cloud node %s is up.\n  HTTP API: %s\n  MQTT:     %s%s\n  Kafka:    %v\n  Admin token: %s\n",
		cfg.NodeID, n.APIURL(), n.MQTTAddr(), tlsNote(n.MQTTTLS()), n.KafkaAddrs(), n.TokenFile)
	return n.Run(ctx)
}

// runKafka serves the embedded Kafka broker alone (the Kafka node of a cluster).
func runKafka(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := bus.DefaultConfig()
	fs := newFlagSet("kafka")
	dataDir := fs.String("data-dir", "data/kafka", "where the broker persists its log")
	fs.StringVar(&cfg.EmbeddedAddr, "addr", cfg.EmbeddedAddr, "listen address (advertised to clients as given)")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of each topic Gale creates")
	sync := fs.Bool("sync-writes", false, "fsync every produced batch")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	k, err := bus.StartEmbedded(cfg.EmbeddedAddr, *dataDir, *sync, cfg.Partitions, api.Topics()...)
	if err != nil {
		return err
	}
	defer k.Close()
	fmt.Fprintf(stdout, "Gale Kafka is up on %v (data in %s).\n", k.Addrs(), *dataDir)
	<-ctx.Done()
	return nil
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gale-iot/gale/platform/edge"
	"github.com/gale-iot/gale/platform/node"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/stack"
	"github.com/gale-iot/gale/twins"
)

func runUp(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := node.DefaultConfig()
	cfg.Kafka.Partitions = upPartitions()
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
	fs.DurationVar(&cfg.Kafka.EmbeddedRetention, "kafka-retention", cfg.Kafka.EmbeddedRetention, "how long the embedded Kafka keeps telemetry, events and commands (the registry's change log: forever); 0 keeps them forever")
	fs.Var(&cfg.Kafka.EmbeddedRetentionBytes, "kafka-retention-bytes", "most bytes the embedded Kafka keeps a partition of telemetry, events and commands, the oldest going first; none sets no bound")
	fs.StringVar(&cfg.Kafka.SASL.Username, "kafka-sasl-user", "", "SCRAM user the embedded Kafka requires (needed to serve it beyond loopback)")
	fs.StringVar(&cfg.Kafka.SASL.PasswordFile, "kafka-sasl-password-file", "", "file holding --kafka-sasl-user's password")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	useTLS := fs.Bool("tls", false, "serve MQTT and HTTP over TLS only, with a development CA and server certificate kept in DATA/tls (made when missing or expired)")
	tlsHosts := fs.String("tls-hosts", "", "more host names and IP addresses for the server certificate, comma-separated (127.0.0.1, ::1, localhost and the listen hosts are always in)")
	clientAuth := fs.String("tls-client-auth", pki.ClientAuthOptional, "MQTT client certificates with --tls: none; optional (a certificate given must name the device that logs in: CN productKey/deviceKey); require (the demo plant's devices get theirs from the CA, in DATA/tls/devices)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch *clientAuth {
	case pki.ClientAuthNone, pki.ClientAuthOptional, pki.ClientAuthRequire:
	default:
		return fmt.Errorf("--tls-client-auth %q: want none, optional or require", *clientAuth)
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
	stackCfg := stack.Config{Node: cfg, Fleet: fleetCfg}
	var tlsFiles pki.DevFiles
	if *useTLS {
		if tlsFiles, err = stackCfg.Node.DevTLS(splitList(*tlsHosts), *clientAuth, time.Now()); err != nil {
			return err
		}
		stackCfg.CloudTLS = &edge.CloudTLS{CAFile: tlsFiles.CA}
		if *clientAuth == pki.ClientAuthRequire {
			if stackCfg.DeviceTLS, err = deviceCerts(tlsFiles, filepath.Join(cfg.DataDir, "tls", pki.DevicesDir)); err != nil {
				return err
			}
		}
	}
	st, err := stack.New(ctx, stackCfg, log)
	if err != nil {
		return err
	}
	n := st.Node
	hup, reloaded := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(hup, syscall.SIGHUP)
	defer func() {
		signal.Stop(hup) // no more sends: hup may close
		close(hup)
		<-reloaded
	}()
	go func() {
		defer close(reloaded)
		for range hup {
			if err := n.ReloadRules(); err != nil {
				log.Error("rules not reloaded; the previous rules stay", "err", err)
			} else {
				log.Info("rules reloaded")
			}
		}
	}()
	fmt.Fprintf(stdout, "Gale is up.\n  HTTP API:    %s  (Prometheus API: %s/prometheus, twin control: /twins/v1)\n  MQTT:        %s%s\n  Kafka:       %v\n  Admin token: %s\n",
		n.APIURL(), n.APIURL(), n.MQTTAddr(), tlsNote(n.MQTTTLS()), n.KafkaAddrs(), n.TokenFile)
	if *useTLS {
		fmt.Fprintf(stdout, "  TLS CA:      %s  (mosquitto_pub --cafile, curl --cacert; device certificates: gale certs device)\n", tlsFiles.CA)
	}
	return st.Run(ctx)
}

// deviceCerts issues each plant device a certificate from the development CA
// into dir (afresh at every start) and returns its TLS files.
func deviceCerts(files pki.DevFiles, dir string) (func(pk, dk string) (*edge.CloudTLS, error), error) {
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	if err != nil {
		return nil, err
	}
	return func(pk, dk string) (*edge.CloudTLS, error) {
		certFile, keyFile := pki.DeviceFiles(dir, pk, dk)
		if err := ca.IssueDevice(certFile, keyFile, pk, dk, time.Now()); err != nil {
			return nil, err
		}
		return &edge.CloudTLS{CAFile: files.CA, CertFile: certFile, KeyFile: keyFile}, nil
	}, nil
}

// tlsNote marks a listener that speaks TLS in a banner.
func tlsNote(on bool) string {
	if on {
		return " (TLS)"
	}
	return ""
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// upPartitions is the partition count of the one-process platform's topics:
// one per core, 2 to 8. Its one node reads every partition of every topic,
// so partitions beyond its cores only multiply the produce and fetch
// requests: on 2 cores, 2 partitions instead of 8 cut the node's CPU by a
// sixth and PUBACK p99 by about half at 5,000-12,000 msgs/s
// (docs/benchmarks.md, "Partitions of the one-process platform"). A data
// dir made with more partitions keeps them.
func upPartitions() int {
	return min(8, max(2, runtime.GOMAXPROCS(0)))
}

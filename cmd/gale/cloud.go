package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"

	"github.com/gale-iot/gale/internal/config"
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
	cfg, err := config.Load[node.Config](*path)
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

// runKafka serves the embedded Kafka broker alone (the Kafka node of a
// cluster). It requires SASL (SCRAM) logins unless told to run open.
func runKafka(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := bus.DefaultConfig()
	fs := newFlagSet("kafka")
	dataDir := fs.String("data-dir", "data/kafka", "where the broker persists its log")
	fs.StringVar(&cfg.EmbeddedAddr, "addr", cfg.EmbeddedAddr, "listen address (advertised to clients as given)")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of each topic Gale creates")
	fs.DurationVar(&cfg.EmbeddedRetention, "retention", cfg.EmbeddedRetention, "how long records are kept (the registry's change log: forever); 0 keeps them forever")
	fs.Var(&cfg.EmbeddedRetentionBytes, "retention-bytes", "most bytes kept a partition, the oldest records going first (the registry's change log: all); none sets no bound")
	sync := fs.Bool("sync-writes", false, "fsync every produced batch")
	user := fs.String("sasl-user", "", "the SCRAM user clients log in as (SCRAM-SHA-256 or -512)")
	passFile := fs.String("sasl-password-file", "", "file holding --sasl-user's password")
	usersFile := fs.String("users-file", "", `file of SCRAM users, one "name:password" a line`)
	insecure := fs.Bool("insecure-no-auth", false, "serve every client without authentication (a trusted network only)")
	certFile := fs.String("tls-cert", "", "PEM certificate to serve TLS with (with --tls-key)")
	keyFile := fs.String("tls-key", "", "PEM private key of --tls-cert")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := bus.CheckRetention(cfg.EmbeddedRetention); err != nil {
		return usageError{"kafka: --" + err.Error()}
	}
	if err := bus.CheckRetentionBytes(cfg.EmbeddedRetentionBytes); err != nil {
		return usageError{"kafka: --" + err.Error()}
	}
	sec, err := kafkaSecurity(*user, *passFile, *usersFile, *insecure, *certFile, *keyFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("create kafka data dir: %w", err)
	}
	if err := node.SecureDataDir(*dataDir); err != nil {
		return err
	}
	k, err := bus.StartEmbeddedSecure(cfg.EmbeddedAddr, *dataDir, *sync, node.EmbeddedLog(cfg), sec)
	if err != nil {
		return err
	}
	defer func() {
		k.Close()
		if err := node.SecureDataDir(*dataDir); err != nil {
			fmt.Fprintln(os.Stderr, "gale kafka:", err)
		}
	}()
	auth := fmt.Sprintf("SASL SCRAM, %d user(s)", len(sec.Users))
	if len(sec.Users) == 0 {
		auth = "NO AUTHENTICATION (--insecure-no-auth)"
	}
	tlsOn := "off"
	if sec.TLS != nil {
		tlsOn = "on"
	}
	fmt.Fprintf(stdout, "Gale Kafka is up on %v (data in %s; %s; TLS %s).\n", k.Addrs(), *dataDir, auth, tlsOn)
	<-ctx.Done()
	return nil
}

// kafkaSecurity builds the broker's SASL users and TLS from gale kafka's flags.
func kafkaSecurity(user, passFile, usersFile string, insecure bool, certFile, keyFile string) (bus.Security, error) {
	var sec bus.Security
	if usersFile != "" {
		users, err := bus.ReadUsersFile(usersFile)
		if err != nil {
			return sec, err
		}
		sec.Users = users
	}
	if (user == "") != (passFile == "") {
		return sec, fmt.Errorf("%w: --sasl-user and --sasl-password-file go together", errUsage)
	}
	if user != "" {
		pass, err := bus.ReadSecretFile(passFile)
		if err != nil {
			return sec, fmt.Errorf("--sasl-password-file: %w", err)
		}
		sec.Users = append(sec.Users, bus.User{Name: user, Password: pass})
	}
	switch {
	case len(sec.Users) == 0 && !insecure:
		return sec, fmt.Errorf("%w: gale kafka requires SASL: give --sasl-user and --sasl-password-file, or --users-file "+
			"(--insecure-no-auth serves every client unauthenticated)", errUsage)
	case len(sec.Users) > 0 && insecure:
		return sec, fmt.Errorf("%w: --insecure-no-auth contradicts the SASL users given", errUsage)
	}
	if (certFile == "") != (keyFile == "") {
		return sec, fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return sec, fmt.Errorf("kafka tls certificate: %w", err)
		}
		sec.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return sec, nil
}

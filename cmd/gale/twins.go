package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/gale-iot/gale/internal/config"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/httpapi"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/twins"
	"github.com/gale-iot/gale/twins/direct"
)

func runTwins(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("twins")
	configFile := fs.String("config", "", "fleet config file (YAML; see twins/testdata/demo.good.yaml)")
	mqttAddr := fs.String("mqtt-addr", "127.0.0.1:1883", "the cloud's MQTT address, for the directly connected devices")
	apiURL := fs.String("api-url", "http://127.0.0.1:8080", "the cloud's HTTP API, to look the devices' secrets up")
	tokenFile := fs.String("token-file", "", "file holding an admin API token (the cloud's DATA/admin.token)")
	secretsFile := fs.String("secrets", "", `YAML file of device secrets, "productKey/deviceKey: secret", tried before the API`)
	httpAddr := fs.String("http-addr", "127.0.0.1:8090", "listen address of the twin control API (/twins/v1/), /metrics and /healthz")
	interval := fs.Duration("interval", 10*time.Second, "sim time between two posts of a directly connected device")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	useTLS := fs.Bool("tls", false, "connect the directly connected devices over TLS (implied by --ca-file)")
	caFile := fs.String("ca-file", "", "PEM CA of the cloud's certificates, for MQTT over TLS and an https --api-url (gale up --tls: DATA/tls/ca.crt)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configFile == "" {
		return usageError{"twins: --config FILE is required"}
	}
	var tlsCfg *tls.Config
	if *useTLS || *caFile != "" {
		var err error
		if tlsCfg, err = (pki.ClientConfig{CAFile: *caFile}).Load(); err != nil {
			return err
		}
	}
	cfg, err := config.Load[twins.Config](*configFile)
	if err != nil {
		return err
	}
	secret, err := secretLookup(*secretsFile, *apiURL, *tokenFile, tlsCfg)
	if err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	fleet, err := twins.New(cfg, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	devices, err := direct.New(fleet, direct.Config{Broker: *mqttAddr, TLS: tlsCfg, Secret: secret, Interval: *interval}, log, reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *httpAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/twins/v1/", fleet.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := httpapi.DefaultConfig().HTTPServer(mux, log)

	fmt.Fprintf(stdout, "Gale twins are running.\n  Control API: http://%s/twins/v1/turbines\n  Cloud:       MQTT %s\n", ln.Addr(), *mqttAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return fleet.Run(gctx) })
	g.Go(func() error { return devices.Run(gctx) })
	g.Go(func() error { return httpapi.Serve(gctx, srv, ln, "control API", 5*time.Second) })
	return g.Wait()
}

// secretLookup finds device secrets in the secrets file, if given, and then
// through the cloud API, if a token file is given (trusting tlsCfg's CA
// when set).
func secretLookup(secretsFile, apiURL, tokenFile string, tlsCfg *tls.Config) (direct.SecretFunc, error) {
	secrets := map[string]string{}
	if secretsFile != "" {
		b, err := os.ReadFile(secretsFile)
		if err != nil {
			return nil, fmt.Errorf("read secrets: %w", err)
		}
		if err := yaml.Unmarshal(b, &secrets); err != nil {
			return nil, fmt.Errorf("secrets file %s: want \"productKey/deviceKey: secret\" lines: %w", secretsFile, err)
		}
	}
	fromAPI := func(string, string) (string, error) {
		return "", errors.New("not in the secrets file, and no --token-file to ask the cloud API")
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token: %w", err)
		}
		c, err := apiclient.New(apiURL, apiclient.Options{Token: strings.TrimSpace(string(b)), TLS: tlsCfg, Timeout: 10 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("--api-url: %w", err)
		}
		fromAPI = direct.APISecrets(c)
	}
	return func(pk, dk string) (string, error) {
		if s, ok := secrets[pk+"/"+dk]; ok {
			return s, nil
		}
		return fromAPI(pk, dk)
	}, nil
}

// Package httpapi serves Gale's REST API, the Prometheus-compatible query
// API under /prometheus, /metrics and the health endpoints.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/rules"
)

// Config configures the HTTP server.
type Config struct {
	Addr string `yaml:"addr"`
	// TLS, with a certificate, serves HTTPS only on Addr (a plain HTTP
	// request gets 400 and nothing of the API).
	TLS pki.ServerConfig `yaml:"tls"`
}

// Deps are what the API serves.
type Deps struct {
	Registry *registry.Registry
	Latest   *ingest.Latest
	Storage  Storage
	Engine   *promql.Engine
	Rules    Rules
	// PromRules serves Prometheus's /api/v1/rules and /api/v1/alerts.
	PromRules v1.RulesRetriever
	Commands  Commands
	Gatherer  prometheus.Gatherer
	// Ready reports whether the node is ready to serve (nil: always).
	Ready func() error
	// Extra mounts more handlers by pattern (e.g. the twin control API).
	Extra map[string]http.Handler
}

// Rules is the event engine as the API needs it.
type Rules interface {
	Rules() []rules.RuleInfo
	Reload() error
	Pending() []api.Alert
}

// Storage is the TSDB as the query API needs it.
type Storage interface {
	storage.Queryable
	storage.ExemplarQueryable
}

// Server is the HTTP API server.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	handler http.Handler
	ln      net.Listener
}

// New builds the server's routes.
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	s := &Server{cfg: cfg, deps: deps, log: log}
	mux := http.NewServeMux()
	authed := http.NewServeMux()
	s.routeRegistry(authed)
	// A cluster node serves the parts of the API its role has.
	if deps.Storage != nil {
		s.routeData(authed)
		prom, err := newPromAPI(deps, log, reg)
		if err != nil {
			return nil, err
		}
		authed.Handle("/prometheus/", prom)
	}
	if deps.Rules != nil {
		s.routeAlerts(authed)
	}
	if deps.Commands != nil {
		s.routeCommands(authed)
	}
	for pattern, h := range deps.Extra {
		authed.Handle(pattern, h)
	}
	authed.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint on this node: "+r.Method+" "+r.URL.Path)
	})
	mux.Handle("/", s.authenticate(authed))
	mux.Handle("GET /metrics", promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	s.handler = mux
	return s, nil
}

// Handler returns the root handler (for tests).
func (s *Server) Handler() http.Handler { return s.handler }

// Listen binds the listener so the address is known before Run. With TLS
// configured, the listener speaks TLS only.
func (s *Server) Listen() error {
	var tlsCfg *tls.Config
	if s.cfg.TLS.Enabled() {
		var err error
		if tlsCfg, err = s.cfg.TLS.Load(); err != nil {
			return fmt.Errorf("http tls: %w", err)
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen http on %s: %w", s.cfg.Addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (after Listen).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("http api listening", "addr", s.Addr(), "tls", s.cfg.TLS.Enabled())
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		// Requests still running after the grace period are cut off; stopping is not a failure.
		s.log.Warn("http requests still running at shutdown; closing them", "err", err)
		return srv.Close()
	}
	return nil
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if s.deps.Ready != nil {
		if err := s.deps.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// authenticate requires a valid bearer token.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gale"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer TOKEN (the admin token is in DATA/admin.token)")
			return
		}
		if !s.deps.Registry.ValidToken(token) {
			writeError(w, http.StatusUnauthorized, "invalid token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeRegistryError maps registry errors to HTTP statuses.
func writeRegistryError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, registry.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, registry.ErrExists), errors.Is(err, registry.ErrInUse):
		status = http.StatusConflict
	case errors.Is(err, registry.ErrInvalid):
		status = http.StatusBadRequest
	}
	writeError(w, status, err.Error())
}

// decodeJSON strictly decodes the request body into v, answering 400 on failure.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

// Package httpapi serves Gale's REST API, the Prometheus-compatible query
// API under /prometheus, /metrics and the health endpoints.
package httpapi

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/audit"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/pki"
	"github.com/gale-iot/gale/platform/registry"
	"github.com/gale-iot/gale/platform/rules"
	"github.com/gale-iot/gale/platform/runs"
	"github.com/gale-iot/gale/platform/tsdb"
)

// Config configures the HTTP server.
type Config struct {
	Addr string `yaml:"addr"`
	// TLS, with a certificate, serves HTTPS only on Addr (a plain HTTP
	// request gets 400 and nothing of the API).
	TLS pki.ServerConfig `yaml:"tls"`
	// ReadHeaderTimeout is how long a client may take to send a request's
	// headers: a slow (slowloris) client is cut off after it.
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout"`
	// ReadTimeout is how long a client may take to send a whole request.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// WriteTimeout is how long a response may take, from the end of the
	// request's headers; it must exceed the query timeout. A synchronous
	// command extends it by its own ?timeout=.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// IdleTimeout closes a keep-alive connection that sends no new request.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// MaxHeaderBytes bounds a request's header (and URL).
	MaxHeaderBytes int `yaml:"maxHeaderBytes"`
	// MaxBodyBytes bounds a request's body; a larger one is answered 413.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// CORSOrigin is a regular expression (anchored) of the browser origins
	// allowed to call the Prometheus-compatible API from scripts, e.g.
	// "https://grafana\\.example\\.com"; empty allows none (Grafana's server-side proxy needs none).
	CORSOrigin string `yaml:"corsOrigin"`
}

// DefaultConfig returns the server's defaults on 127.0.0.1:8080.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    256 << 10,
		MaxBodyBytes:      4 << 20,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid http config")

// Validate checks c.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("%w: http.addr is empty", ErrConfig)
	case c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return fmt.Errorf("%w: http.readHeaderTimeout, readTimeout, writeTimeout and idleTimeout must be positive", ErrConfig)
	case c.ReadHeaderTimeout > c.ReadTimeout:
		return fmt.Errorf("%w: http.readHeaderTimeout must be at most http.readTimeout", ErrConfig)
	case c.MaxHeaderBytes < 4<<10:
		return fmt.Errorf("%w: http.maxHeaderBytes must be at least 4096", ErrConfig)
	case c.MaxBodyBytes < 64<<10:
		return fmt.Errorf("%w: http.maxBodyBytes must be at least 65536", ErrConfig)
	}
	if _, err := corsRegexp(c.CORSOrigin); err != nil {
		return fmt.Errorf("%w: http.corsOrigin: %v", ErrConfig, err)
	}
	return nil
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.ReadHeaderTimeout = cmp.Or(c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, d.ReadTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, d.WriteTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, d.IdleTimeout)
	c.MaxHeaderBytes = cmp.Or(c.MaxHeaderBytes, d.MaxHeaderBytes)
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, d.MaxBodyBytes)
	return c
}

// HTTPServer returns a server of h with c's timeouts and header limit
// (zero fields take the defaults), logging its errors to log at debug level.
// Every Gale HTTP listener uses it, so none is open to slow clients.
func (c Config) HTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	c = c.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Serve serves srv on l until ctx ends or serving fails, then shuts srv
// down, giving running requests grace to finish. It returns the failure,
// named by what, or else Shutdown's error.
func Serve(ctx context.Context, srv *http.Server, l net.Listener, what string, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	if err == nil {
		err = <-errc // http.ErrServerClosed, as Shutdown closed l
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return shutdownErr
}

// Deps are what the API serves.
type Deps struct {
	Registry *registry.Registry
	Latest   *ingest.Latest
	Storage  Storage
	Engine   QueryEngine
	Rules    Rules
	// PromRules serves Prometheus's /api/v1/rules and /api/v1/alerts.
	PromRules v1.RulesRetriever
	Commands  Commands
	Gatherer  prometheus.Gatherer
	// Ready reports whether the node is ready to serve (nil: always).
	Ready func() error
	// Extra mounts more handlers by pattern (e.g. the twin control API).
	Extra map[string]http.Handler
	// Audit, when set, records changes and failed logins and serves GET /api/v1/audit.
	Audit *audit.Log
	// Runs, when set, keeps the reports of loadgen and scenario runs (/api/v1/runs).
	Runs *runs.Store
}

// Rules is the event engine as the API needs it.
type Rules interface {
	Rules() []rules.RuleInfo
	// ListRoutes lists the loaded routes.
	ListRoutes() []rules.RouteInfo
	// Validate checks a rule file of a kind (stream, promql, routes) without loading it.
	Validate(kind string, b []byte) ([]rules.Owned, error)
	Reload() error
	Pending() []api.Alert
}

// QueryEngine is the PromQL engine with the node's query limits (tsdb.Engine).
type QueryEngine interface {
	promql.QueryEngine
	// AcquireQuerySlot takes a query slot for reads outside the engine
	// (series, labels, raw history); the release func must always be called.
	AcquireQuerySlot(ctx context.Context, qs string) (release func(), err error)
	// Parser parses PromQL as the engine does.
	Parser() parser.Parser
	// Config returns the limits (the query timeout bounds reads outside the engine too).
	Config() tsdb.QueryConfig
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

	panics   prometheus.Counter
	requests *prometheus.CounterVec
	// routes are the authenticated routes registered, with their roles.
	routes []Route
	logins *loginLimiter
	// refused sums the 401s and throttled logins for the audit log.
	refused refusals
	// streams counts the open GET /api/v1/stream answers.
	streams atomic.Int64
}

// New builds the server's routes.
// Zero fields of cfg take DefaultConfig's values.
func New(cfg Config, deps Deps, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: log,
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gale_http_panics_total", Help: "HTTP handler panics recovered (answered 500; the stack is in the log).",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gale_http_requests_total", Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"handler", "code"}),
	}
	if err := reg.Register(s.panics); err != nil {
		return nil, fmt.Errorf("register http metrics: %w", err)
	}
	if err := reg.Register(s.requests); err != nil {
		return nil, fmt.Errorf("register http metrics: %w", err)
	}
	s.logins = newLoginLimiter()
	if err := reg.Register(s.logins.failures); err != nil {
		return nil, fmt.Errorf("register http metrics: %w", err)
	}
	mux := http.NewServeMux()
	authed := http.NewServeMux()
	s.routeRegistry(authed)
	s.routeAccounts(authed)
	s.routeSecrets(authed)
	s.routeProductYAML(authed)
	s.routeConsole(mux, authed)
	mux.HandleFunc("POST /api/v1/login", s.login)
	// A cluster node serves the parts of the API its role has.
	if deps.Storage != nil {
		s.routeData(authed)
		prom, err := newPromAPI(cfg, deps, log, reg)
		if err != nil {
			return nil, err
		}
		s.handle(authed, "/prometheus/", prom.ServeHTTP)
	}
	if deps.Rules != nil {
		s.routeAlerts(authed)
	}
	if deps.Commands != nil {
		s.routeCommands(authed)
	}
	if deps.Audit != nil {
		s.routeAudit(authed)
	}
	if deps.Runs != nil {
		s.routeRuns(authed)
	}
	for pattern, h := range deps.Extra {
		s.handleExtra(authed, pattern, h)
	}
	authed.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint on this node: "+r.Method+" "+r.URL.Path)
	})
	mux.Handle("/", s.authenticate(s.audited(authed)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(deps.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	s.handler = s.guard(mux)
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

// CloseListener releases the listener of a server that Listened but never
// Ran (Run's end closes it otherwise).
func (s *Server) CloseListener() error {
	if s.ln == nil {
		return nil
	}
	return s.ln.Close()
}

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	srv := s.cfg.HTTPServer(s.handler, s.log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	flushed := make(chan struct{})
	fctx, stopFlush := context.WithCancel(context.Background())
	go func() {
		defer close(flushed)
		s.flushRefusalsEvery(fctx)
	}()
	defer func() { // after the last request: its refusals are in the last flush
		stopFlush()
		<-flushed
	}()
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
	case errors.Is(err, registry.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, registry.ErrUnauthenticated):
		status = http.StatusUnauthorized
	case errors.Is(err, registry.ErrNotAnnounced):
		// The change log (Kafka) did not take the change, which was undone: retry later.
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, err.Error())
}

// decodeJSON strictly decodes the request body (bounded by guard) into v,
// answering 400 on failure and 413 when the body is too large.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeBodyError(w, err)
		return false
	}
	return true
}

// writeBodyError answers a failed read of the request body: 413 when it is
// larger than http.maxBodyBytes, else 400.
func writeBodyError(w http.ResponseWriter, err error) {
	if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit))
		return
	}
	writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
}

package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/tsdb"
)

// TestPrometheusAPIPanicsAreFixed are the regression tests of the two panics
// any token holder could trigger: they must be answered normally, not merely
// recovered by guard (which would answer 500 and count a panic).
func TestPrometheusAPIPanicsAreFixed(t *testing.T) {
	s := startServer(t, Config{}, tsdb.QueryConfig{}, nil)
	origin := http.Header{"Origin": {"https://evil.example"}}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
	}{
		// web/api/v1 called CORSOrigin.String() on a nil regexp for any request with an Origin header.
		{"origin header", http.MethodGet, "/prometheus/api/v1/query?query=1", origin},
		{"origin header on labels", http.MethodGet, "/prometheus/api/v1/labels", origin},
		{"origin header on preflight", http.MethodOptions, "/prometheus/api/v1/query", origin},
		// The engine had no default subquery step: x[5m:] called a nil function.
		{"subquery without step", http.MethodGet, "/prometheus/api/v1/query?query=max_over_time(temp[5m:])", nil},
		{"nested subqueries without step", http.MethodGet, "/prometheus/api/v1/query_range?query=rate(temp[10m:])&start=0&end=600&step=60", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, b := s.do(t, tc.method, tc.path, nil, tc.header)
			require.Contains(t, []int{http.StatusOK, http.StatusNoContent}, code, string(b))
			require.Empty(t, h.Get("Access-Control-Allow-Origin"), "no origin is allowed by default")
			require.Equal(t, 0.0, s.metric(t, "gale_http_panics_total", nil))
		})
	}
}

func TestCORSOriginConfigured(t *testing.T) {
	s := startServer(t, Config{CORSOrigin: `https://grafana\.example`}, tsdb.QueryConfig{}, nil)
	for origin, want := range map[string]string{"https://grafana.example": "https://grafana.example", "https://grafanaXexample": "", "https://grafana.example.evil": ""} {
		code, h, _ := s.do(t, http.MethodGet, "/prometheus/api/v1/query?query=1", nil, http.Header{"Origin": {origin}})
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, want, h.Get("Access-Control-Allow-Origin"), origin)
	}
}

func TestRecoverMiddleware(t *testing.T) {
	s := startServer(t, Config{}, tsdb.QueryConfig{}, map[string]http.Handler{
		"/boom": http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret detail") }),
		"/boom-late": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"partial":`))
			panic(errors.New("half way"))
		}),
	})
	code, h, b := s.do(t, http.MethodGet, "/boom", nil, nil)
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, "application/json", h.Get("Content-Type"))
	var e map[string]string
	require.NoError(t, json.Unmarshal(b, &e))
	require.Equal(t, map[string]string{"error": "internal error"}, e, "nothing of the panic reaches the client")
	require.Equal(t, 1.0, s.metric(t, "gale_http_panics_total", nil))
	require.Equal(t, 1.0, s.metric(t, "gale_http_requests_total", map[string]string{"handler": "/boom", "code": "500"}))
	require.Contains(t, s.log.String(), "secret detail")
	require.Contains(t, s.log.String(), "guard.go", "the stack is logged")

	// A panic after the answer began: the connection is aborted, not completed as if all went well.
	req, _ := http.NewRequest(http.MethodGet, s.url+"/boom-late", nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	// A client of its own: a reused connection would make it retry the GET.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	require.Error(t, err)
	require.Equal(t, 2.0, s.metric(t, "gale_http_panics_total", nil))

	code, _, _ = s.do(t, http.MethodGet, "/healthz", nil, nil)
	require.Equal(t, http.StatusOK, code, "the node keeps serving")
}

func TestBodyLimit(t *testing.T) {
	s := startServer(t, Config{MaxBodyBytes: 64 << 10}, tsdb.QueryConfig{}, nil)
	big := `{"productKey":"p","name":"` + strings.Repeat("x", 100<<10) + `"}`
	code, _, b := s.do(t, http.MethodPost, "/api/v1/products", strings.NewReader(big), nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, string(b))
	var e map[string]string
	require.NoError(t, json.Unmarshal(b, &e))
	require.Contains(t, e["error"], "larger than 65536 bytes")
	require.Equal(t, 1.0, s.metric(t, "gale_http_requests_total", map[string]string{"handler": "POST /api/v1/products", "code": "413"}))

	code, _, b = s.do(t, http.MethodPost, "/api/v1/products", strings.NewReader(`{"productKey":"p","name":"small"}`), nil)
	require.Equal(t, http.StatusCreated, code, string(b))
}

// TestSlowClientsAreCutOff: a client sending its headers a line at a time
// (slowloris) and an idle keep-alive connection are both closed by the server.
func TestSlowClientsAreCutOff(t *testing.T) {
	s := startServer(t, Config{ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: time.Second, IdleTimeout: 300 * time.Millisecond}, tsdb.QueryConfig{}, nil)
	addr := strings.TrimPrefix(s.url, "http://")

	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		closed := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(conn) // returns when the server closes the connection
			closed <- err
		}()
		_, err = conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gale\r\n"))
		require.NoError(t, err)
		start := time.Now()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-closed:
				require.Less(t, time.Since(start), 2*time.Second)
				return
			case <-tick.C:
				require.Less(t, time.Since(start), 5*time.Second, "a slow client is still connected")
				// Writes fail once the server has closed; the read above reports it.
				_, _ = conn.Write([]byte("X-Slow: 1\r\n"))
			}
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: gale\r\n\r\n"))
		require.NoError(t, err)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.False(t, resp.Close, "the connection is kept alive after the answer")

		start := time.Now()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, err = br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "the server closes the idle connection")
		require.Less(t, time.Since(start), 3*time.Second)
	})
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	for name, mut := range map[string]func(*Config){
		"addr":              func(c *Config) { c.Addr = "" },
		"readHeaderTimeout": func(c *Config) { c.ReadHeaderTimeout = 0 },
		"header over read":  func(c *Config) { c.ReadHeaderTimeout = time.Hour },
		"writeTimeout":      func(c *Config) { c.WriteTimeout = -time.Second },
		"idleTimeout":       func(c *Config) { c.IdleTimeout = 0 },
		"maxHeaderBytes":    func(c *Config) { c.MaxHeaderBytes = 100 },
		"maxBodyBytes":      func(c *Config) { c.MaxBodyBytes = 1 },
		"corsOrigin":        func(c *Config) { c.CORSOrigin = "(" },
	} {
		t.Run(name, func(t *testing.T) {
			c := DefaultConfig()
			mut(&c)
			require.ErrorIs(t, c.Validate(), ErrConfig)
		})
	}
}

// TestHTTPServerCutsSlowHeaders: a server from Config.HTTPServer (as the
// twins' control API gets it) closes a connection that never finishes its
// request headers.
func TestHTTPServerCutsSlowHeaders(t *testing.T) {
	srv := Config{ReadHeaderTimeout: 200 * time.Millisecond}.HTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	require.Equal(t, DefaultConfig().WriteTimeout, srv.WriteTimeout, "zero fields take the defaults")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // never the blank line
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadAll(c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the slow client past its header timeout")
}

// TestServe: Serve (the edge's and the twins' listeners) answers until its
// context ends, then shuts down cleanly; a listener that fails is an error
// named by what.
func TestServe(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := Config{}.HTTPServer(ok, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, "test http", time.Second) }()
	resp, err := http.Get("http://" + ln.Addr().String())
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, "ok", string(b))
	cancel()
	require.NoError(t, <-done)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, closed.Close())
	require.ErrorContains(t, Serve(context.Background(), &http.Server{}, closed, "test http", time.Second), "test http: ")
}

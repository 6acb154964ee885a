package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
)

// guard wraps every handler: it bounds the request body, counts the answer by
// route and status, and turns a panic into a 500 JSON error (the stack goes
// only to the log) so that one bad request never takes the node down.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // net/http's own sentinel, compared as net/http does
					panic(p)
				}
				s.panics.Inc()
				s.log.Error("panic serving http request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if sw.status != 0 {
					// The answer has begun: abort the connection so the client sees it broken, not complete.
					s.requests.WithLabelValues(r.Pattern, strconv.Itoa(sw.status)).Inc()
					panic(http.ErrAbortHandler)
				}
				writeError(sw, http.StatusInternalServerError, "internal error")
			}
			s.requests.WithLabelValues(r.Pattern, strconv.Itoa(sw.code())).Inc()
		}()
		// The writer given to MaxBytesReader must be the server's own so that it
		// can close the connection after an oversize body.
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// code is the status answered (200 when the handler wrote nothing).
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Flush passes streaming responses through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

// Hijack lets handlers that take the connection over (websockets) do so.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	return h.Hijack()
}

// Unwrap gives http.ResponseController the server's writer (per-request deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

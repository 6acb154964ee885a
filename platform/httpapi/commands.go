package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/command"
)

// Commands is the command dispatcher as the API needs it.
type Commands interface {
	Invoke(ctx context.Context, pk, dk, service string, params json.RawMessage, ttl time.Duration) (api.Command, error)
	Wait(ctx context.Context, id string) (api.Command, error)
}

// Command API defaults and bounds.
const (
	defaultCommandTimeout = 10 * time.Second
	maxCommandTimeout     = 5 * time.Minute
	defaultCommandTTL     = 10 * time.Minute
	maxCommandTTL         = 7 * 24 * time.Hour
)

func (s *Server) routeCommands(mux *http.ServeMux) {
	s.handle(mux, "POST /api/v1/devices/{pk}/{dk}/services/{service}", s.invoke)
	s.handle(mux, "GET /api/v1/commands/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, err := s.deps.Registry.Command(r.Context(), r.PathValue("id"))
		if err != nil {
			writeRegistryError(w, err)
			return
		}
		// A command is its device's org's; one of a deleted device only a cluster account's.
		if d, ok := s.deps.Registry.Device(c.ProductKey, c.DeviceKey); !principal(r).AllOrgs() && (!ok || !principal(r).InOrg(d.Org)) {
			writeError(w, http.StatusNotFound, "command "+c.ID+" not found")
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
}

// invoke runs a service on a device: synchronously (waiting up to ?timeout= for the reply)
// or with ?async=true, answering 202 with the command id at once. ?ttl= bounds how long
// a command waits for an offline device.
func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	timeout, ttl := defaultCommandTimeout, defaultCommandTTL
	for name, dst := range map[string]*time.Duration{"timeout": &timeout, "ttl": &ttl} {
		if v := q.Get(name); v != "" {
			d, err := parseDuration(v)
			if err != nil || d <= 0 {
				writeError(w, http.StatusBadRequest, name+" must be a positive duration such as 30s")
				return
			}
			*dst = d
		}
	}
	if timeout > maxCommandTimeout || ttl > maxCommandTTL {
		writeError(w, http.StatusBadRequest, "timeout is at most 5m and ttl at most 168h")
		return
	}
	if _, ok := s.device(w, r); !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeBodyError(w, err)
		return
	}
	c, err := s.deps.Commands.Invoke(r.Context(), r.PathValue("pk"), r.PathValue("dk"), r.PathValue("service"), body, ttl)
	switch {
	case errors.Is(err, command.ErrUnknownDevice), errors.Is(err, command.ErrUnknownService):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case errors.Is(err, command.ErrBadParams):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, command.ErrDeviceDisabled):
		writeError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if q.Get("async") == "true" {
		writeJSON(w, http.StatusAccepted, map[string]string{"commandId": c.ID, "status": c.Status})
		return
	}
	// A reply may take longer than http.writeTimeout: this answer gets the command's own timeout.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second)); err != nil {
		s.log.Debug("extend write deadline for a synchronous command", "err", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	c, err = s.deps.Commands.Wait(ctx, c.ID)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case c.Status == api.CommandSucceeded:
		writeJSON(w, http.StatusOK, c)
	case c.Status == api.CommandFailed:
		writeJSON(w, http.StatusBadGateway, c)
	default: // still queued or sent, or expired: poll /api/v1/commands/{id}
		writeJSON(w, http.StatusGatewayTimeout, c)
	}
}

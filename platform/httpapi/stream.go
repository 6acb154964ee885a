package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/ingest"
	"github.com/gale-iot/gale/platform/registry"
)

// Bounds of GET /api/v1/stream: how often it sends, how long one stream
// lasts (the client then reconnects, re-authenticated), how many streams a
// node serves at once and how many firing alerts one event carries.
const (
	defaultStreamInterval = time.Second
	minStreamInterval     = 250 * time.Millisecond
	maxStreamInterval     = time.Minute
	maxStreamDuration     = 15 * time.Minute
	maxStreams            = 64
	maxStreamAlerts       = 200
)

// latestEvent is the data of a stream's "latest" event: the points of each
// device ("pk/dk") that changed since the previous event (all of them in the first).
type latestEvent struct {
	Time    int64                     `json:"time"`
	Devices map[string][]ingest.Point `json:"devices"`
}

// streamScope is what one stream sends: the devices of a site or one device, always within the caller's orgs.
type streamScope struct {
	p      registry.Principal
	site   string
	device string // "pk/dk"
}

// devices returns the devices in scope now ("pk/dk").
func (sc streamScope) devices(reg *registry.Registry) []string {
	var out []string
	for _, d := range reg.Devices(registry.DeviceFilter{Site: sc.site}) {
		id := d.ProductKey + "/" + d.DeviceKey
		if sc.p.InOrg(d.Org) && (sc.device == "" || sc.device == id) {
			out = append(out, id)
		}
	}
	return out
}

// stream answers GET /api/v1/stream?site=&device=pk/dk&interval=&once= with
// server-sent events: "latest" (the changed latest values of the devices in
// scope) and "alerts" (the firing alerts in scope, when they change), every
// interval, for at most maxStreamDuration; "end" says why a stream ends
// (the token expired or was revoked, or the time is up). once=true sends one
// snapshot and ends. A site or device outside the caller's orgs is not found.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sc := streamScope{p: principal(r), site: q.Get("site"), device: q.Get("device")}
	if sc.site != "" {
		if a, ok := s.deps.Registry.Asset(sc.site); !ok || a.Kind != api.AssetSite || !sc.p.InOrg(a.Org) {
			writeError(w, http.StatusNotFound, "site "+sc.site+" not found")
			return
		}
	}
	if sc.device != "" {
		pk, dk, _ := strings.Cut(sc.device, "/")
		if d, ok := s.deps.Registry.Device(pk, dk); !ok || !sc.p.InOrg(d.Org) {
			writeError(w, http.StatusNotFound, "device "+sc.device+" not found (give productKey/deviceKey)")
			return
		}
	}
	interval := defaultStreamInterval
	if v := q.Get("interval"); v != "" {
		d, err := parseDuration(v)
		if err != nil || d < minStreamInterval || d > maxStreamInterval {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("interval must be a duration from %s to %s", minStreamInterval, maxStreamInterval))
			return
		}
		interval = d
	}
	once := q.Get("once") == "true"
	if n := s.streams.Add(1); n > maxStreams {
		s.streams.Add(-1)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("this node already serves %d streams: retry later", maxStreams))
		return
	}
	defer s.streams.Add(-1)

	rc := http.NewResponseController(w)
	// The stream outlives http.readTimeout and writeTimeout: it has deadlines of its own.
	end := time.Now().Add(maxStreamDuration)
	if err := rc.SetReadDeadline(end.Add(interval)); err != nil {
		writeError(w, http.StatusInternalServerError, "this connection cannot stream")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sent := map[string][]ingest.Point{}
	var lastAlerts []byte
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := rc.SetWriteDeadline(time.Now().Add(interval + 10*time.Second)); err != nil {
			return
		}
		if err := s.streamTick(w, r, sc, sent, &lastAlerts); err != nil || rc.Flush() != nil {
			return
		}
		if once {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case now := <-tick.C:
			if _, err := s.deps.Registry.Authenticate(token); err != nil {
				writeEvent(w, "end", map[string]string{"reason": "token no longer valid: sign in again"})
				return
			}
			if now.After(end) {
				writeEvent(w, "end", map[string]string{"reason": "stream time is up: reconnect"})
				return
			}
		}
	}
}

// streamTick writes the changed latest values and, if they changed, the
// firing alerts in scope; sent and lastAlerts carry what was sent before.
func (s *Server) streamTick(w http.ResponseWriter, r *http.Request, sc streamScope, sent map[string][]ingest.Point, lastAlerts *[]byte) error {
	ev := latestEvent{Time: time.Now().UnixMilli(), Devices: map[string][]ingest.Point{}}
	for _, id := range sc.devices(s.deps.Registry) {
		pts := s.deps.Latest.Device(id)
		prev := sent[id]
		var changed []ingest.Point
		for _, p := range pts {
			i, ok := slices.BinarySearchFunc(prev, p.Point, func(e ingest.Point, point string) int { return strings.Compare(e.Point, point) })
			if !ok || prev[i] != p {
				changed = append(changed, p)
			}
		}
		if len(changed) > 0 {
			ev.Devices[id] = changed
			sent[id] = pts
		}
	}
	if err := writeEvent(w, "latest", ev); err != nil {
		return err
	}
	// The caller's org (none: all) confines the query, as in GET /api/v1/alerts.
	f := registry.AlertFilter{State: api.AlertFiring, Site: sc.site, Org: sc.p.Org}
	if sc.device == "" {
		f.Limit = maxStreamAlerts
	}
	alerts, err := s.deps.Registry.Alerts(r.Context(), f)
	if err != nil {
		return err
	}
	in := []api.Alert{}
	for _, a := range alerts {
		if (sc.device == "" || a.Device == sc.device) && len(in) < maxStreamAlerts {
			in = append(in, a)
		}
	}
	b, err := json.Marshal(in)
	if err != nil || slices.Equal(b, *lastAlerts) {
		return err
	}
	*lastAlerts = b
	_, err = fmt.Fprintf(w, "event: alerts\ndata: %s\n\n", b)
	return err
}

// writeEvent writes one server-sent event of JSON data.
func writeEvent(w http.ResponseWriter, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}

package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/audit"
)

// auditTimeout bounds the write of one audit entry, which outlives its request.
const auditTimeout = 5 * time.Second

// maxAuditBody is how much of an audited answer is kept to find the id of what it created.
const maxAuditBody = 4 << 10

// audited records in Deps.Audit, once answered, every authenticated request
// that may change something (any method but GET and HEAD; queries under
// /prometheus/ are reads) and every read that shows device secrets (an
// admin's GET of devices): the caller, the route and its target, and the
// status, refusals included.
func (s *Server) audited(next http.Handler) http.Handler {
	if s.deps.Audit == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		secrets := read && strings.HasPrefix(r.URL.Path, "/api/v1/devices") && principal(r).Has(api.RoleAdmin)
		if read && !secrets || strings.HasPrefix(r.URL.Path, "/prometheus/") {
			next.ServeHTTP(w, r)
			return
		}
		aw := &auditWriter{statusWriter: statusWriter{ResponseWriter: w}}
		panicked := true
		defer func() {
			status := aw.code()
			if panicked {
				status = http.StatusInternalServerError
			}
			if secrets && r.Pattern != "GET /api/v1/devices" && r.Pattern != "GET /api/v1/devices/{pk}/{dk}" {
				return
			}
			p := principal(r)
			s.audit(r, audit.Entry{TokenID: p.ID, Actor: p.Name, Kind: p.Kind, Org: p.Org, Role: p.Role,
				Route: r.Pattern, Target: target(r, aw.head, status), Status: status})
		}()
		next.ServeHTTP(aw, r)
		panicked = false
	})
}

// auditLogin records a failed login of user.
func (s *Server) auditLogin(r *http.Request, user string, status int) {
	if s.deps.Audit == nil {
		return
	}
	s.audit(r, audit.Entry{Actor: user, Kind: "login", Route: "POST /api/v1/login", Status: status, Org: s.userOrg(user)})
}

// userOrg is the org of user name, "" for none: an entry about a user goes
// to its org's admins.
func (s *Server) userOrg(name string) string {
	u, _ := s.deps.Registry.User(name)
	return u.Org
}

// audit stores e as of now, for the client of r; a failure is logged,
// as the request it records has already been answered.
func (s *Server) audit(r *http.Request, e audit.Entry) {
	e.Time, e.Client, e.Method = time.Now().UnixMilli(), clientAddr(r), r.Method
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.deps.Audit.Add(ctx, e); err != nil {
		s.log.Error("audit entry not stored", "route", e.Route, "actor", e.Actor, "err", err)
	}
}

// auditWriter is a statusWriter that keeps the start of the answer.
type auditWriter struct {
	statusWriter
	head []byte
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if n := maxAuditBody - len(w.head); n > 0 {
		w.head = append(w.head, b[:min(n, len(b))]...)
	}
	return w.statusWriter.Write(b)
}

// target names what request r acted on: its path values ("pk/dk/service")
// and, for a successful answer, the id of what it created when the path
// does not name it (a command's id, a new token's id, a new product's key).
func target(r *http.Request, answer []byte, status int) string {
	var parts []string
	for _, seg := range strings.Split(r.Pattern, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			parts = append(parts, r.PathValue(strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")))
		}
	}
	t := strings.Join(parts, "/")
	if status/100 != 2 {
		return t
	}
	id := createdID(answer)
	if id == "" || id == t || len(parts) > 0 && id == parts[len(parts)-1] {
		return t
	}
	return strings.TrimSpace(t + " " + id)
}

// createdID reads the id of the object a JSON answer describes from its
// first fields (the answer may be cut): id, key, productKey/deviceKey or name.
func createdID(answer []byte) string {
	dec := json.NewDecoder(bytes.NewReader(answer))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	fields := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			break
		}
		if key, _ := tok.(string); key == "id" || key == "key" || key == "productKey" || key == "deviceKey" || key == "name" {
			var s string
			if json.Unmarshal(v, &s) == nil { // a JSON string: escapes read, invalid UTF-8 made U+FFFD
				fields[key] = s
			} else {
				fields[key] = string(v) // a number
			}
		}
	}
	switch {
	case fields["id"] != "":
		return fields["id"]
	case fields["key"] != "":
		return fields["key"]
	case fields["deviceKey"] != "":
		return fields["productKey"] + "/" + fields["deviceKey"]
	}
	return fields["name"]
}

// routeAudit serves GET /api/v1/audit?since=&limit=&actor= to admins: a
// cluster admin reads every entry, an org admin its org's.
func (s *Server) routeAudit(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		p, q := principal(r), r.URL.Query()
		f := audit.Filter{Org: p.Org, AllOrgs: p.ClusterAdmin(), Actor: q.Get("actor")}
		if v := q.Get("since"); v != "" {
			t, err := parseTime(v, time.Time{})
			if err != nil {
				writeError(w, http.StatusBadRequest, "since: "+err.Error())
				return
			}
			f.Since = t.UnixMilli()
		}
		limit, ok := queryLimit(w, r, 0, audit.MaxLimit)
		if !ok {
			return
		}
		f.Limit = limit
		entries, err := s.deps.Audit.Query(r.Context(), f)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, entries)
	})
}

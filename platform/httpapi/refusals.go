package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gale-iot/gale/platform/audit"
)

// Refusals (401 for a missing or bad token, 429 for a throttled login) are
// audited summed, so that an attacker sending them by the million writes a
// few entries a minute, not millions, and pushes no other entry out of the
// bounded log: within a refusalWindow each client, kind and reason make one
// entry counting its refusals, for at most maxRefusalKeys of them; the
// refusals beyond are summed into one more entry. Each window's entries are
// written when it ends (Run flushes them every refusalWindow and at shutdown).
const (
	refusalWindow  = time.Minute
	maxRefusalKeys = 20
)

// Audit kinds of summed refusals.
const (
	auditBadToken  = "unauthenticated"
	auditThrottled = "login-throttled"
)

type refusalKey struct{ kind, reason, client, actor, org string }

type refusalSum struct {
	n      int
	first  int64 // Unix ms
	method string
	route  string
	status int
}

// refusals sums the refusals of the current window.
type refusals struct {
	mu      sync.Mutex
	sums    map[refusalKey]*refusalSum
	other   refusalSum
	clients map[string]bool // the clients summed into other
}

// add counts a refusal of r: kind and reason, the actor it names (a user
// name, never a token) and that actor's org ("" for cluster admins only).
func (a *refusals) add(r *http.Request, kind, reason, actor, org string, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := refusalKey{kind: kind, reason: reason, client: clientAddr(r), actor: actor, org: org}
	sum, ok := a.sums[k]
	if !ok {
		if a.sums == nil {
			a.sums, a.clients = map[refusalKey]*refusalSum{}, map[string]bool{}
		}
		if len(a.sums) >= maxRefusalKeys {
			sum = &a.other
			if len(a.clients) < maxRefusalKeys*50 { // a count, bounded too
				a.clients[k.client] = true
			}
		} else {
			sum = &refusalSum{}
			a.sums[k] = sum
		}
	}
	if sum.n == 0 {
		sum.first, sum.method, sum.route, sum.status = time.Now().UnixMilli(), r.Method, r.URL.Path, status
	}
	sum.n++
}

// take returns the window's entries and starts a new window.
func (a *refusals) take() []audit.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Entry
	for k, sum := range a.sums {
		out = append(out, audit.Entry{Time: sum.first, Actor: k.actor, Kind: k.kind, Org: k.org, Client: k.client,
			Method: sum.method, Route: sum.route, Status: sum.status, Target: fmt.Sprintf("%s ×%d", k.reason, sum.n)})
	}
	if a.other.n > 0 {
		o := a.other
		out = append(out, audit.Entry{Time: o.first, Kind: "refused", Client: fmt.Sprintf("%d+ other clients", len(a.clients)),
			Method: o.method, Route: o.route, Status: o.status,
			Target: fmt.Sprintf("refusals beyond %d clients and reasons in a minute ×%d", maxRefusalKeys, o.n)})
	}
	a.sums, a.clients, a.other = nil, nil, refusalSum{}
	return out
}

// flushRefusals writes the summed refusals of the window that ends.
func (s *Server) flushRefusals() {
	entries := s.refused.take()
	if s.deps.Audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
	defer cancel()
	for _, e := range entries {
		if err := s.deps.Audit.Add(ctx, e); err != nil {
			s.log.Error("audit entry not stored", "route", e.Route, "kind", e.Kind, "err", err)
		}
	}
}

// flushRefusalsEvery flushes the summed refusals every refusalWindow until ctx ends, and then once more.
func (s *Server) flushRefusalsEvery(ctx context.Context) {
	tick := time.NewTicker(refusalWindow)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushRefusals()
			return
		case <-tick.C:
			s.flushRefusals()
		}
	}
}

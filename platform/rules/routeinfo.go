package rules

import (
	"fmt"
	"net/url"
	"strings"
)

// RouteInfo is a loaded route as the API lists it: its org, what it reads and
// matches, and where its actions go. A webhook shows its scheme and host
// only (its path, query and headers may carry credentials).
type RouteInfo struct {
	Name     string   `json:"name"`
	Org      string   `json:"org,omitempty"`
	From     []string `json:"from"`
	Match    string   `json:"match"`
	Actions  []string `json:"actions"`
	Location string   `json:"location"`
}

// Info describes the route for the API.
func (r *Route) Info() RouteInfo {
	info := RouteInfo{Name: r.Name, Org: r.Org, From: r.From, Match: r.Match.summary(), Actions: []string{}, Location: fmt.Sprintf("%s:%d", r.file, r.line)}
	for _, a := range r.Actions {
		info.Actions = append(info.Actions, a.summary())
	}
	return info
}

func (m RouteMatch) summary() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("product", m.Product)
	add("devices", strings.Join(m.Devices, ","))
	add("site", m.Site)
	add("point", m.Point)
	if c := m.Condition; c != nil {
		parts = append(parts, c.summary())
	}
	add("event", m.Event)
	add("rule", m.Rule)
	add("severity", m.Severity)
	add("state", m.State)
	if len(parts) == 0 {
		return "everything"
	}
	return strings.Join(parts, " ")
}

func (a Action) summary() string {
	switch {
	case a.Webhook != nil:
		u, err := url.Parse(a.Webhook.URL)
		if err != nil {
			return "webhook"
		}
		return "webhook " + u.Scheme + "://" + u.Host
	case a.Kafka != nil:
		return "kafka " + a.Kafka.Topic
	case a.Republish != nil:
		return "republish " + a.Republish.Topic
	case a.Command != nil:
		return "command " + a.Command.Service
	}
	return "none"
}

func (c Condition) summary() string {
	var s string
	switch {
	case c.Above != nil:
		s = fmt.Sprintf("above %g", *c.Above)
	case c.Below != nil:
		s = fmt.Sprintf("below %g", *c.Below)
	case c.Equals != nil:
		s = fmt.Sprintf("equals %g", *c.Equals)
	case c.Outside != nil:
		s = fmt.Sprintf("outside %g..%g", c.Outside[0], c.Outside[1])
	}
	if c.Not {
		return "not " + s
	}
	return s
}

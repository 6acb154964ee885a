package rules

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/gale-iot/gale/internal/config"
	"gopkg.in/yaml.v3"
)

// Route sources.
const (
	FromTelemetry = "telemetry"
	FromEvents    = "events"
	FromAlerts    = "alerts"
)

// Route sends matching telemetry, device events or alerts to actions.
type Route struct {
	Name string `yaml:"name"`
	// Org, when set, owns the route: it matches that org's messages only,
	// may not write to the platform's Kafka topics nor republish on device
	// topics, and its org's users list it. Empty is a cluster route.
	Org  string   `yaml:"org"`
	From []string `yaml:"from"`
	// IncludeBackfill also routes resumed (backfilled) telemetry.
	IncludeBackfill bool       `yaml:"includeBackfill"`
	Match           RouteMatch `yaml:"match"`
	Actions         []Action   `yaml:"actions"`
	file            string
	line            int
}

// RouteMatch selects messages; empty fields match everything.
type RouteMatch struct {
	Product string   `yaml:"product" json:"product,omitempty"`
	Devices []string `yaml:"devices" json:"devices,omitempty"`
	Site    string   `yaml:"site" json:"site,omitempty"`
	// Point keeps telemetry carrying this point; Condition, if set, tests its value.
	Point     string     `yaml:"point" json:"point,omitempty"`
	Condition *Condition `yaml:"condition" json:"condition,omitempty"`
	Event     string     `yaml:"event" json:"event,omitempty"`
	Rule      string     `yaml:"rule" json:"rule,omitempty"`
	Severity  string     `yaml:"severity" json:"severity,omitempty"`
	State     string     `yaml:"state" json:"state,omitempty"`
}

// Action is one of: webhook, kafka, republish, command.
type Action struct {
	Webhook   *WebhookAction   `yaml:"webhook"`
	Kafka     *KafkaAction     `yaml:"kafka"`
	Republish *RepublishAction `yaml:"republish"`
	Command   *CommandAction   `yaml:"command"`
}

// WebhookAction POSTs the message as JSON; failures are retried with
// exponential backoff for RetryFor, then dead-lettered.
type WebhookAction struct {
	URL      string            `yaml:"url"`
	Headers  map[string]string `yaml:"headers"`
	Timeout  Duration          `yaml:"timeout"`
	RetryFor Duration          `yaml:"retryFor"`
}

// KafkaAction produces the message to a topic.
type KafkaAction struct {
	Topic string `yaml:"topic"`
}

// RepublishAction publishes the message on an MQTT topic (a template of .Device, .Product, .Site, .Kind).
type RepublishAction struct {
	Topic string `yaml:"topic"`
	tmpl  *template.Template
}

// CommandAction invokes a service on the matched device.
type CommandAction struct {
	Service string         `yaml:"service"`
	Params  map[string]any `yaml:"params"`
	TTL     Duration       `yaml:"ttl"`
}

// kind names an action for metrics.
func (a Action) kind() string {
	switch {
	case a.Webhook != nil:
		return "webhook"
	case a.Kafka != nil:
		return "kafka"
	case a.Republish != nil:
		return "republish"
	default:
		return "command"
	}
}

// LoadRoutes reads every *.yaml file of dir as a route file; a missing dir
// has no routes. The error names each bad file and line.
func LoadRoutes(dir string) ([]*Route, error) {
	routes, errs := loadRoutesEach(dir)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return routes, nil
}

// loadRoutesEach reads the route files of dir one by one: the routes of the
// valid files, and an error (with file and line) for each refused file.
func loadRoutesEach(dir string) ([]*Route, []error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, []error{err}
	}
	return loadEachFile(files, "route", ParseRoutes, func(r *Route) (string, string) { return r.Name, fmt.Sprintf("%s:%d", r.file, r.line) })
}

// ParseRoutes decodes and validates one route file.
func ParseRoutes(name string, b []byte) ([]*Route, error) {
	var f struct {
		// Org is the org of every route of the file that names none.
		Org    string   `yaml:"org"`
		Routes []*Route `yaml:"routes"`
	}
	if err := config.Decode(name, b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(b, &root)
	lines := config.ItemLines(&root, "routes")
	for i, r := range f.Routes {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		if r == nil { // a bare "-": a null entry
			return nil, fmt.Errorf("%w: %s:%d: route %d is empty", ErrInvalid, name, line, i+1)
		}
		r.file, r.line = name, line
		err := ownedBy(&r.Org, f.Org)
		if err == nil {
			err = r.validate()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s:%d: route %q: %v", ErrInvalid, name, r.line, r.Name, err)
		}
	}
	return f.Routes, nil
}

func (r *Route) validate() error {
	if !routeNameRE(r.Name) {
		return errors.New("name must be 1-64 letters, digits, '-' or '_'")
	}
	if len(r.From) == 0 {
		r.From = []string{FromTelemetry}
	}
	for _, f := range r.From {
		if f != FromTelemetry && f != FromEvents && f != FromAlerts {
			return fmt.Errorf("from %q: want telemetry, events or alerts", f)
		}
	}
	if r.Match.Condition != nil && r.Match.Point == "" {
		return errors.New("a condition needs a point")
	}
	if len(r.Actions) == 0 {
		return errors.New("no actions")
	}
	for i := range r.Actions {
		a := &r.Actions[i]
		n := 0
		for _, set := range []bool{a.Webhook != nil, a.Kafka != nil, a.Republish != nil, a.Command != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("action %d must be exactly one of webhook, kafka, republish, command", i+1)
		}
		switch {
		case a.Webhook != nil:
			u, err := url.Parse(a.Webhook.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("action %d: webhook url %q must be http(s)://host/...", i+1, a.Webhook.URL)
			}
			if a.Webhook.Timeout <= 0 {
				a.Webhook.Timeout = Duration(5 * time.Second)
			}
			if a.Webhook.RetryFor <= 0 {
				a.Webhook.RetryFor = Duration(10 * time.Minute)
			}
		case a.Kafka != nil:
			if a.Kafka.Topic == "" {
				return fmt.Errorf("action %d: kafka topic is empty", i+1)
			}
			if r.Org != "" && strings.HasPrefix(a.Kafka.Topic, platformTopics) {
				return fmt.Errorf("action %d: kafka topic %q: a route of an org writes to no %s* topic of the platform", i+1, a.Kafka.Topic, platformTopics)
			}
		case a.Republish != nil:
			t, err := template.New("topic").Option("missingkey=error").Parse(a.Republish.Topic)
			if err != nil || a.Republish.Topic == "" {
				return fmt.Errorf("action %d: republish topic: %v", i+1, err)
			}
			a.Republish.tmpl = t
		case a.Command != nil:
			if a.Command.Service == "" {
				return fmt.Errorf("action %d: command service is empty", i+1)
			}
			if a.Command.TTL <= 0 {
				a.Command.TTL = Duration(10 * time.Minute)
			}
		}
	}
	return nil
}

// platformTopics prefixes the platform's Kafka topics (telemetry, events,
// commands, the registry log): they carry every org's records.
const platformTopics = "gale."

// deviceTopics prefix the MQTT topics devices and gateways talk on, and
// the broker's own ($SYS).
var deviceTopics = []string{"/sys/", "/ext/", "$"}

// inOrg reports whether the route takes a message of org.
func (r *Route) inOrg(org string) bool { return r.Org == "" || r.Org == org }

// checkRepublish refuses a topic a route of an org may not republish on,
// a device's or the broker's: it would command or speak for any device.
func (r *Route) checkRepublish(topic string) error {
	if r.Org == "" {
		return nil
	}
	for _, p := range deviceTopics {
		if strings.HasPrefix(topic, p) {
			return fmt.Errorf("republish topic %q: a route of org %s republishes on no %s* topic", topic, r.Org, p)
		}
	}
	return nil
}

func routeNameRE(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

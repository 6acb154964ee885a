package node

import (
	"context"
	"fmt"
	"slices"
)

// Components of a node (the modules of Mimir's modules.go, by hand): each
// is built by its init, after the components it depends on.
const (
	modMemory      = "memory"       // GOMEMLIMIT and GOGC, tuned while running
	modDataDir     = "data-dir"     // the data dir, the owner's only
	modRegistry    = "registry"     // the SQLite registry and the cluster keys
	modAudit       = "audit"        // the node's audit log of API changes
	modKafka       = "kafka"        // the embedded Kafka (or the configured brokers), the registry producer
	modRegistryLog = "registry-log" // gale.registry: every local change announced, every change applied
	modEvents      = "events"       // the devices' events from gale.events, kept in the registry
	modAdmin       = "admin"        // the admin token and the demo registry
	modBroker      = "broker"       // the MQTT broker and its producer to Kafka
	modCommands    = "commands"     // command delivery through the broker
	modTSDB        = "tsdb"         // the TSDB and its writer from gale.telemetry
	modRemoteWrite = "remote-write" // one consumer per remote-write endpoint
	modQuery       = "query"        // the PromQL engine
	modPromQLRules = "promql-rules" // PromQL alerting rules
	modStreamRules = "stream-rules" // the event engine
	modRoutes      = "routes"       // the rule engine's routes
	modHTTP        = "http"         // the HTTP API, over whatever the node has
	modSelfMonitor = "self-monitor" // the node's own metrics into its TSDB
)

// module is one component: what must be built before it (deps, brought
// along by a role that runs it), what must be built before it when the
// role runs it too (after), and how it is built.
type module struct {
	deps, after []string
	init        func(n *Node, ctx context.Context) error
}

// modules is the table of a node's components.
var modules = map[string]module{
	modMemory:      {init: (*Node).initMemory},
	modDataDir:     {init: (*Node).initDataDir},
	modRegistry:    {deps: []string{modDataDir}, init: (*Node).initRegistry},
	modAudit:       {deps: []string{modDataDir}, init: (*Node).initAudit},
	modKafka:       {deps: []string{modDataDir}, init: (*Node).initKafka},
	modRegistryLog: {deps: []string{modRegistry, modKafka}, init: (*Node).initRegistryLog},
	modAdmin:       {deps: []string{modRegistryLog}, init: (*Node).initAdmin},
	modEvents:      {deps: []string{modRegistryLog}, init: (*Node).initEvents},
	modBroker:      {deps: []string{modAdmin, modKafka}, init: (*Node).initBroker},
	modCommands:    {deps: []string{modBroker}, init: (*Node).initCommands},
	modTSDB:        {deps: []string{modDataDir}, init: (*Node).initTSDB},
	modRemoteWrite: {deps: []string{modTSDB}, init: (*Node).initRemoteWrite},
	modQuery:       {deps: []string{modTSDB}, init: (*Node).initQuery},
	modPromQLRules: {deps: []string{modQuery, modRegistry}, init: (*Node).initPromQLRules},
	modStreamRules: {deps: []string{modRegistryLog}, init: (*Node).initStreamRules},
	modRoutes:      {deps: []string{modStreamRules}, after: []string{modCommands}, init: (*Node).initRoutes},
	modHTTP: {deps: []string{modAdmin, modAudit, modEvents},
		after: []string{modCommands, modTSDB, modPromQLRules, modStreamRules, modRoutes}, init: (*Node).initHTTP},
	modSelfMonitor: {deps: []string{modHTTP, modTSDB}, init: (*Node).initSelfMonitor},
}

// roles lists the components each role runs; their deps come along.
var roles = map[string][]string{
	RoleIngest:  {modMemory, modCommands, modHTTP},
	RoleProcess: {modMemory, modRoutes, modHTTP},
	RoleStore:   {modMemory, modRemoteWrite, modPromQLRules, modSelfMonitor, modHTTP},
	RoleAll:     {modMemory, modCommands, modRoutes, modRemoteWrite, modPromQLRules, modSelfMonitor, modHTTP},
}

// startOrder returns the components of role in the order they are built:
// each after its deps and, among the role's, after its after; the node
// stops them in reverse.
func startOrder(role string) ([]string, error) {
	want, ok := roles[role]
	if !ok {
		return nil, fmt.Errorf("%w: role %q: want ingest, process, store or all", ErrConfig, role)
	}
	enabled := map[string]bool{}
	var enable func(string)
	enable = func(name string) {
		if !enabled[name] {
			enabled[name] = true
			for _, d := range modules[name].deps {
				enable(d)
			}
		}
	}
	for _, name := range want {
		enable(name)
	}
	var order []string
	visiting := map[string]bool{}
	var visit func(string) error
	visit = func(name string) error {
		if slices.Contains(order, name) {
			return nil
		}
		if visiting[name] {
			return fmt.Errorf("node modules: dependency cycle through %s", name)
		}
		visiting[name] = true
		for _, d := range slices.Concat(modules[name].deps, modules[name].after) {
			if enabled[d] {
				if err := visit(d); err != nil {
					return err
				}
			}
		}
		order = append(order, name)
		return nil
	}
	for _, name := range want {
		if err := visit(name); err != nil {
			return nil, err
		}
	}
	return order, nil
}

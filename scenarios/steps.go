package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gale-iot/gale/loadgen"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/apiclient"
	"github.com/gale-iot/gale/platform/device"
)

// loadRun is a load step's outcome.
type loadRun struct {
	gen *loadgen.Generator
	rep *loadgen.Report
	err error

	once    sync.Once
	ledgers []nodeLedger // by node, checked once for the assertions
}

// nodeLedger is a load's loss ledger checked against one node (not when it was down).
type nodeLedger struct {
	node string
	down bool
	rep  loadgen.LedgerReport
}

// startLoad runs the load generator in the background through the MQTT
// balancer. Its devices are provisioned first and, in a cluster, waited
// for on every node, so a device never logs in to a node that does not know it yet.
func (r *runner) startLoad(ctx context.Context, l LoadStep) {
	cfg := loadgen.DefaultConfig()
	cfg.MQTTAddr, cfg.APIURL, cfg.Token = r.mqtt.Addr(), r.api.URL(), r.cloud.Token()
	cfg.Devices, cfg.Rate, cfg.Duration, cfg.Points, cfg.Profile = l.Devices, l.Rate, l.Duration, l.Points, l.Profile
	cfg.PublishTimeout = l.PublishTimeout
	cfg.DevicePrefix, cfg.Product, cfg.Org, cfg.Site = l.Name+"-", "scn", "scn", "scn-site"
	cfg.ProbeDevices = min(4, l.Devices)
	cfg.Replies = true
	cfg.TLSCAFile = r.caFile // TLS towards a cloud with a development CA
	run := &loadRun{}
	r.mu.Lock()
	r.loads[l.Name] = run
	r.mu.Unlock()
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		log := r.log.With("component", "loadgen", "load", l.Name)
		p, err := loadgen.NewPlatform(cfg.APIURL, cfg.Token, r.tls, log)
		var ids []loadgen.Identity
		if err == nil {
			ids, err = p.Provision(ctx, cfg)
		}
		if err == nil {
			last := ids[len(ids)-1]
			err = r.onEveryNode(ctx, "know the load's devices", "/api/v1/devices/"+last.ProductKey+"/"+last.DeviceKey)
		}
		if err == nil {
			cfg.Identities = ids
			run.gen, err = loadgen.New(cfg, log, nil)
		}
		if err == nil {
			run.rep, err = run.gen.Run(ctx)
		}
		run.err = err
	}()
}

// nodeLedgers checks the load's ledger against every running node (each
// keeps a full copy of the telemetry), once; a single node's is the run's own.
func (r *runner) nodeLedgers(ctx context.Context, run *loadRun) []nodeLedger {
	run.once.Do(func() {
		if len(r.nodes) == 1 {
			run.ledgers = []nodeLedger{{node: r.nodes[0], rep: run.rep.Ledger}}
			return
		}
		for _, n := range r.nodes {
			nl := nodeLedger{node: n, down: true}
			if apiURL, _ := r.cloud.Endpoints(n); apiURL != "" {
				nl = nodeLedger{node: n, rep: run.gen.CheckLedger(ctx, apiURL)}
			}
			run.ledgers = append(run.ledgers, nl)
		}
	})
	return run.ledgers
}

// commandResult is one service call's answer.
type commandResult struct {
	Code int    // the device's reply code
	Err  string // the API error, if the call failed
}

// command calls a service Count times, Concurrency at a time.
func (r *runner) command(ctx context.Context, c CommandStep) error {
	pk, dk, _ := strings.Cut(c.Device, "/")
	params := c.Params
	if params == nil {
		params = map[string]any{}
	}
	results := make([]commandResult, c.Count)
	sem := make(chan struct{}, c.Concurrency)
	var wg sync.WaitGroup
	for i := range results {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cmd, err := r.api.CallService(ctx, pk, dk, c.Service, params, nil)
			if err != nil {
				results[i].Err = err.Error()
				return
			}
			results[i].Code = cmd.Code
		}()
	}
	wg.Wait()
	r.mu.Lock()
	r.commands[c.Name] = results
	r.mu.Unlock()
	return ctx.Err()
}

// register creates a device of an existing product on demo-farm and returns its secret.
func (r *runner) register(ctx context.Context, pk, dk string) (string, error) {
	d, err := r.api.CreateDevice(ctx, api.Device{ProductKey: pk, DeviceKey: dk, Site: "demo-farm", Enabled: true})
	return d.Secret, err
}

// connect registers a device and logs it in.
func (r *runner) connect(ctx context.Context, pk, dk string) (*device.Device, error) {
	secret, err := r.register(ctx, pk, dk)
	if err != nil {
		return nil, err
	}
	return device.Connect(ctx, device.Config{Broker: r.mqtt.Addr(), TLS: r.tls, ProductKey: pk, DeviceKey: dk, Secret: secret, Now: r.fleet.Now})
}

// backfill sends a constant value over the last Span of sim time through
// resume/batch, a hundred samples a message.
func (r *runner) backfill(ctx context.Context, b BackfillStep) error {
	pk, dk := "wind-turbine", b.Device
	if p, d, ok := strings.Cut(b.Device, "/"); ok {
		pk, dk = p, d
	}
	dev, err := r.connect(ctx, pk, dk)
	if err != nil {
		return fmt.Errorf("backfill device: %w", err)
	}
	defer dev.Close()
	end := r.fleet.Now()
	var batch []api.MeasurepointParams
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		params, _ := json.Marshal(batch) // plain values: cannot fail
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		topic := api.MeasurepointResumeBatchTopic(pk, dk)
		rep, err := dev.Request(rctx, topic, api.Request{ID: dev.NewID(), Version: "1.0", Method: "thing.measurepoint.resume.batch", Params: params})
		if err != nil {
			return err
		}
		if rep.Code != api.CodeOK {
			return fmt.Errorf("resume/batch answered %d: %s", rep.Code, rep.Message)
		}
		batch = batch[:0]
		return nil
	}
	v, _ := json.Marshal(b.Value)
	for t := end.Add(-b.Span); !t.After(end); t = t.Add(b.Interval) {
		batch = append(batch, api.MeasurepointParams{Time: t.UnixMilli(), Measurepoints: map[string]json.RawMessage{b.Point: v}})
		if len(batch) == 100 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Kinds of bad input a storm sends, in turn.
var stormKinds = []string{"malformed", "oversize", "wrong_type", "unknown_point", "bad_login", "acl"}

// stormRun counts a storm's bad messages by kind.
type stormRun struct {
	mu       sync.Mutex
	sent     map[string]int
	accepted map[string]int // bad input the platform took: each one is a failure
	notes    []string
}

func (s *stormRun) count(kind string, accepted bool, note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[kind]++
	if accepted {
		s.accepted[kind]++
		if len(s.notes) < 5 {
			s.notes = append(s.notes, kind+": "+note)
		}
	}
}

// startStorm registers product scn-storm (point V) with a sender and a
// victim device and sends bad input in the background.
func (r *runner) startStorm(ctx context.Context, s StormStep) error {
	err := r.api.CreateProduct(ctx, api.Product{Key: "scn-storm",
		Model: api.ThingModel{Measurepoints: []api.Measurepoint{{ID: "V", Type: api.TypeFloat}}}})
	if err != nil && apiclient.StatusOf(err) != http.StatusConflict {
		return err
	}
	sender, victim := s.Name+"-sender", s.Name+"-victim"
	secret, err := r.register(ctx, "scn-storm", sender)
	if err != nil {
		return err
	}
	if _, err := r.register(ctx, "scn-storm", victim); err != nil {
		return err
	}
	run := &stormRun{sent: map[string]int{}, accepted: map[string]int{}}
	r.mu.Lock()
	r.storms[s.Name] = run
	r.mu.Unlock()
	cfg := device.Config{Broker: r.mqtt.Addr(), TLS: r.tls, ProductKey: "scn-storm", DeviceKey: sender, Secret: secret, Now: r.fleet.Now}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		r.storm(ctx, s, cfg, victim, run)
	}()
	return nil
}

// storm sends the bad messages; a connection the broker closes (oversize,
// ACL) is opened again.
func (r *runner) storm(ctx context.Context, s StormStep, cfg device.Config, victim string, run *stormRun) {
	var dev *device.Device
	defer func() {
		if dev != nil {
			dev.Close()
		}
	}()
	tick := time.NewTicker(time.Duration(float64(time.Second) / s.Rate))
	defer tick.Stop()
	post := api.MeasurepointPostTopic(cfg.ProductKey, cfg.DeviceKey)
	end := time.Now().Add(s.Duration)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		kind := stormKinds[i%len(stormKinds)]
		if dev == nil || !dev.Connected() {
			if dev != nil {
				dev.Close()
			}
			var err error
			if dev, err = device.Connect(ctx, cfg); err != nil {
				r.log.Warn("storm: the good login failed", "err", err)
				dev = nil
				continue
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		reply := func(id string, payload []byte) {
			rep, err := dev.RequestRaw(rctx, post, id, payload)
			// No reply (the broker closed the connection) or an error code: rejected.
			run.count(kind, err == nil && rep.Code == api.CodeOK, fmt.Sprintf("answered %d", rep.Code))
		}
		t := r.fleet.Now().UnixMilli()
		switch kind {
		case "malformed":
			reply("", []byte(`{"id":"1","params":{"measurepoints":{"V":`))
		case "oversize":
			reply("2", fmt.Appendf(nil, `{"id":"2","method":"thing.measurepoint.post","params":{"measurepoints":{"V":1},"pad":"%s","time":%d}}`, strings.Repeat("x", 300<<10), t))
		case "wrong_type":
			reply("3", fmt.Appendf(nil, `{"id":"3","method":"thing.measurepoint.post","params":{"measurepoints":{"V":"hot"},"time":%d}}`, t))
		case "unknown_point":
			reply("4", fmt.Appendf(nil, `{"id":"4","method":"thing.measurepoint.post","params":{"measurepoints":{"Nope":1},"time":%d}}`, t))
		case "bad_login":
			bad := cfg
			bad.Secret = "wrong"
			d, err := device.Connect(rctx, bad)
			if err == nil {
				d.Close()
			}
			run.count(kind, err == nil, "login with a wrong secret accepted")
		case "acl":
			topic := api.MeasurepointPostTopic(cfg.ProductKey, victim)
			// The broker closes the connection (MQTT 3.1.1) and stores nothing:
			// the rejected assertion checks that the victim has no sample.
			_ = dev.PublishRaw(rctx, topic, 1, fmt.Appendf(nil, `{"id":"5","method":"thing.measurepoint.post","params":{"measurepoints":{"V":1},"time":%d}}`, t))
			run.count(kind, false, "")
			dev.Close()
			dev = nil
		}
		cancel()
	}
}

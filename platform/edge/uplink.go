package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/device"
)

// Back-off of the connection loop.
const (
	minReconnect = 500 * time.Millisecond
	// stableSession is how long a session must last for the back-off to reset;
	// a session taken over at once (by the HA peer) keeps backing off.
	stableSession = 10 * time.Second
)

var (
	errOffline  = errors.New("not logged in to the cloud")
	errRejected = errors.New("refused by the cloud")
)

// uplink is the gateway's MQTT session and the two loops that empty the
// queue through it:
//
//   - live posts new samples on the gateway's measurepoint/post/batch
//     (EnOS thing.measurepoint.post.batch: samples of several sub-devices
//     in one message), in queue order;
//   - replay sends the backlog on measurepoint/resume/batch, oldest first.
//
// Both keep up to MaxInFlight messages on their way at once: they publish
// a window of messages in queue order from one goroutine (so they go out,
// reach Kafka and are acknowledged in that order) and then collect the
// replies in the same order. One round-trip thus carries up to
// MaxInFlight × batch samples, where one message per round-trip capped a
// gateway at a few hundred samples a second.
//
// The backlog is every queued item with id <= mark: live moves mark past
// each item it is done with, so an item it could not post (offline, timeout,
// error) stays queued and becomes backlog, and every item queued before a
// start is backlog. Ids above mark belong to live alone, ids at or below it
// to replay alone, so no sample is sent by both. Live moves mark past a
// window only once every message of the window was answered (or failed).
type uplink struct {
	cfg       CloudConfig
	tls       *tls.Config // nil: plaintext
	gw        Identity
	subs      []Unit
	q         *Queue
	batch     int // samples per resume/batch message
	liveBatch int // samples per post/batch message
	window    int // messages in flight
	log       *slog.Logger
	m         *metrics
	onService device.ServiceHandler

	mark    atomic.Int64
	changed signal // the session came up or went down
	backlog signal // live left an item behind

	mu     sync.Mutex
	dev    *device.Device  // nil while offline
	logged map[string]bool // "pk/dk" of the sub-devices logged in
}

func newUplink(cfg Config, tlsCfg *tls.Config, subs []Unit, q *Queue, log *slog.Logger, m *metrics, onService device.ServiceHandler) (*uplink, error) {
	u := &uplink{cfg: cfg.Cloud, tls: tlsCfg, gw: cfg.Gateway, subs: subs, q: q, batch: cfg.Queue.ReplayBatch,
		liveBatch: max(1, cfg.Queue.LiveBatch), window: max(1, cfg.Cloud.MaxInFlight),
		log: log.With("part", "uplink"), m: m, onService: onService}
	last, err := q.LastID()
	if err != nil {
		return nil, err
	}
	u.mark.Store(last)
	return u, nil
}

// run keeps the session up until ctx ends, backing off between attempts.
func (u *uplink) run(ctx context.Context) error {
	wait, failures := minReconnect, 0
	for {
		start := time.Now()
		up, err := u.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) >= stableSession {
			wait = minReconnect
		}
		switch {
		case up:
			failures = 0
			u.log.Warn("cloud session lost; samples are queued", "err", err)
		case failures == 0:
			u.log.Warn("cannot reach the cloud; samples are queued", "err", err, "retry_in", wait)
		default:
			u.log.Debug("cloud still unreachable", "err", err, "attempts", failures+1, "retry_in", wait)
		}
		if !up {
			failures++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, u.cfg.ReconnectMax)
	}
}

// session connects, logs the sub-devices in and waits until the connection
// is lost or ctx ends; up says whether it got that far.
func (u *uplink) session(ctx context.Context) (up bool, err error) {
	lost := make(chan error, 1)
	dev, err := device.Connect(ctx, device.Config{
		Broker: u.cfg.MQTTAddr, TLS: u.tls, ProductKey: u.gw.ProductKey, DeviceKey: u.gw.DeviceKey, Secret: u.gw.Secret,
		KeepAlive: u.cfg.KeepAlive, OnService: u.onService,
		OnConnectionLost: func(err error) {
			select {
			case lost <- err:
			default:
			}
		},
	})
	if err != nil {
		return false, err
	}
	defer dev.Close()
	logged, err := u.login(ctx, dev)
	if err != nil {
		return false, err
	}
	u.set(dev, logged)
	defer u.set(nil, nil)
	u.m.connects.Inc()
	u.log.Info("logged in to the cloud", "sub_devices", len(logged))
	select {
	case err := <-lost:
		return true, err
	case <-ctx.Done():
		return true, nil
	}
}

// login adds the sub-devices to the gateway's topology and logs them in;
// it returns those logged in. A refused sub-device is logged and left out;
// the others go on.
func (u *uplink) login(ctx context.Context, dev *device.Device) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	defer cancel()
	ts := time.Now().UnixMilli()
	auths := make([]api.SubDeviceAuth, len(u.subs))
	for i, s := range u.subs {
		auths[i] = api.SignSubDevice(s.ProductKey, s.Device, s.Secret, ts)
	}
	if err := dev.AddTopo(ctx, auths); err != nil {
		// The cloud refuses the whole request for one bad entry: add them one by one.
		for _, a := range auths {
			if err := dev.AddTopo(ctx, []api.SubDeviceAuth{a}); err != nil {
				u.log.Warn("thing.topo.add refused", "device", a.ProductKey+"/"+a.DeviceKey, "err", err)
			}
		}
	}
	failed, err := dev.LoginSubDevices(ctx, auths)
	if err != nil {
		return nil, fmt.Errorf("sub-device login: %w", err)
	}
	logged := map[string]bool{}
	for _, s := range u.subs {
		logged[s.ProductKey+"/"+s.Device] = true
	}
	for _, f := range failed {
		delete(logged, f.ProductKey+"/"+f.DeviceKey)
		u.m.loginFailed.Inc()
		u.log.Warn("sub-device login refused; its samples stay queued", "device", f.ProductKey+"/"+f.DeviceKey, "reason", f.Message)
	}
	return logged, nil
}

func (u *uplink) set(dev *device.Device, logged map[string]bool) {
	u.mu.Lock()
	u.dev, u.logged = dev, logged
	u.mu.Unlock()
	u.m.connected.Store(dev != nil)
	u.changed.Notify()
}

func (u *uplink) online() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dev != nil
}

// device returns the session if device (pk, dk) may be published for.
func (u *uplink) device(pk, dk string) *device.Device {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.logged[pk+"/"+dk] {
		return nil
	}
	return u.dev
}

// send publishes a request for device (pk, dk) at QoS 1 and waits for its
// PUBACK and reply. A 4xx reply wraps errRejected: resending cannot help.
func (u *uplink) send(ctx context.Context, pk, dk, topic, method string, params []byte) error {
	dev := u.device(pk, dk)
	if dev == nil {
		return errOffline
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	defer cancel()
	r, err := dev.Request(ctx, topic, api.Request{ID: dev.NewID(), Version: "1.0", Method: method, Params: params})
	return outcome(topic, r, err)
}

// outcome turns a request's reply or error into nil, an error wrapping
// errRejected (a 4xx other than 429: resending cannot help) or another
// error (resending may help).
func outcome(topic string, r api.Reply, err error) error {
	switch {
	case err != nil:
		return err
	case r.Code == api.CodeOK:
		return nil
	case r.Code == api.CodeRateLimited || r.Code >= 500:
		return fmt.Errorf("%s: code %d: %s", topic, r.Code, r.Message)
	}
	return fmt.Errorf("%w: %s: code %d: %s", errRejected, topic, r.Code, r.Message)
}

// live posts new samples as they are queued.
func (u *uplink) live(ctx context.Context) error {
	for {
		pushed, changed := u.q.Pushed(), u.changed.C()
		if !u.online() {
			last, err := u.q.LastID()
			if err != nil {
				return err
			}
			u.mark.Store(last) // everything queued while offline is backlog
		} else {
			items, err := u.q.Items(u.mark.Load(), math.MaxInt64, u.window*u.liveBatch)
			if err != nil {
				return err
			}
			if len(items) > 0 {
				if err := u.post(ctx, items); err != nil || ctx.Err() != nil {
					return err
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-pushed:
		case <-changed:
		}
	}
}

// maxBatchBytes bounds the params of one batch message, well below the
// broker's default payload limit (256 KiB).
const maxBatchBytes = 128 << 10

// post sends items, a window of the queue above mark, in post/batch
// messages, all in flight at once, then moves mark past them: what the
// cloud acknowledged or refused is deleted, what was not sent or not
// answered stays queued as backlog. It returns only queue errors.
func (u *uplink) post(ctx context.Context, items []Item) error {
	defer u.mark.Store(items[len(items)-1].ID)
	dev, logged := u.current()
	var send []Item
	left := false
	for _, it := range items {
		if dev != nil && logged[it.ProductKey+"/"+it.DeviceKey] {
			send = append(send, it)
		} else {
			left = true // not logged in (or offline): backlog
		}
	}
	type flight struct {
		batch []Item
		call  *device.Call
	}
	topic := api.MeasurepointPostBatchTopic(u.gw.ProductKey, u.gw.DeviceKey)
	var flights []flight
	for _, b := range batches(send, u.liveBatch, maxBatchBytes) {
		call, err := dev.Start(topic, api.Request{ID: dev.NewID(), Version: "1.0", Method: "thing.measurepoint.post.batch", Params: postBatchParams(b)})
		if err != nil { // cannot encode: send them alone below
			flights = append(flights, flight{batch: b})
			continue
		}
		flights = append(flights, flight{batch: b, call: call})
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	defer cancel()
	for _, f := range flights {
		err := errRejected
		if f.call != nil {
			r, werr := f.call.Wait(ctx)
			err = outcome(topic, r, werr)
		}
		switch {
		case err == nil:
			u.m.published.WithLabelValues(pathPost).Add(float64(len(f.batch)))
			if err := u.q.Delete(ids(f.batch)...); err != nil {
				return err
			}
		case errors.Is(err, errRejected):
			// The cloud refuses the whole batch for one bad sample: post
			// them one by one so that only the refused ones are dropped.
			u.log.Debug("post/batch refused; posting its samples alone", "samples", len(f.batch), "err", err)
			if err := u.postEach(ctx, f.batch); err != nil {
				return err
			}
		default:
			left = true
			u.log.Debug("live post not acknowledged; its samples become backlog", "samples", len(f.batch), "err", err)
		}
	}
	if left {
		u.backlog.Notify()
	}
	return nil
}

// postEach sends items one per measurepoint/post message, deleting those
// acknowledged or refused; the others stay queued (mark is moved past them
// by post). It returns only queue errors.
func (u *uplink) postEach(ctx context.Context, items []Item) error {
	left := false
	for _, it := range items {
		if ctx.Err() != nil {
			left = true
			break
		}
		err := u.send(ctx, it.ProductKey, it.DeviceKey, api.MeasurepointPostTopic(it.ProductKey, it.DeviceKey), "thing.measurepoint.post", it.Params)
		switch {
		case err == nil:
			u.m.published.WithLabelValues(pathPost).Inc()
		case errors.Is(err, errRejected):
			u.m.rejected.Inc()
			u.log.Warn("sample refused; dropped", "device", it.DeviceKey, "time", it.Time, "err", err)
		default:
			left = true
			continue
		}
		if err := u.q.Delete(it.ID); err != nil {
			return err
		}
	}
	if left {
		u.backlog.Notify()
	}
	return nil
}

// current returns the session (nil while offline) and the sub-devices
// logged in on it; the map is never changed once set, only replaced.
func (u *uplink) current() (*device.Device, map[string]bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dev, u.logged
}

// batches splits items, in order, into runs of at most n items whose
// params total at most size bytes (a run has at least one item).
func batches(items []Item, n, size int) [][]Item {
	var out [][]Item
	start, total := 0, 0
	for i, it := range items {
		if i > start && (i-start == n || total+len(it.Params) > size) {
			out = append(out, items[start:i])
			start, total = i, 0
		}
		total += len(it.Params)
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out
}

// postBatchParams encodes items as thing.measurepoint.post.batch params:
// each item's {"measurepoints":…,"time":…} with its productKey and
// deviceKey in front.
func postBatchParams(items []Item) []byte {
	n := 2
	for _, it := range items {
		n += len(it.Params) + len(it.ProductKey) + len(it.DeviceKey) + 40
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"productKey":`...)
		b = appendJSONString(b, it.ProductKey)
		b = append(b, `,"deviceKey":`...)
		b = appendJSONString(b, it.DeviceKey)
		p := bytes.TrimSpace(it.Params)
		if len(p) > 1 && p[0] == '{' && !bytes.Equal(bytes.TrimSpace(p[1:]), []byte("}")) {
			b = append(b, ',')
			b = append(b, p[1:]...)
		} else {
			b = append(b, '}') // not an object with fields: the cloud refuses it, and postEach sorts it out
		}
	}
	return append(b, ']')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

func ids(items []Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// replay sends the backlog whenever the session is up and there is some.
func (u *uplink) replay(ctx context.Context) error {
	for {
		changed, backlog := u.changed.C(), u.backlog.C()
		if u.online() {
			retry, err := u.replayPass(ctx)
			if err != nil {
				return err
			}
			if retry {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-backlog:
		}
	}
}

// replayPass sends the backlog once through, oldest first, in resume/batch
// messages of one device each, up to MaxInFlight of them on their way at
// once, and deletes each batch once acknowledged. Samples of sub-devices
// not logged in stay queued. retry is set when a send failed; err reports
// queue failures only.
func (u *uplink) replayPass(ctx context.Context) (retry bool, err error) {
	after := int64(0)
	for ctx.Err() == nil && u.online() {
		items, err := u.q.Items(after, u.mark.Load(), u.window*u.batch)
		if err != nil || len(items) == 0 {
			return false, err
		}
		after = items[len(items)-1].ID
		dev, logged := u.current()
		if dev == nil {
			return false, nil
		}
		var runs [][]Item
		for _, run := range byDevice(items, u.batch) {
			if logged[run[0].ProductKey+"/"+run[0].DeviceKey] {
				runs = append(runs, run)
			}
		}
		sent, err := u.resumeAll(ctx, dev, runs)
		if err != nil {
			return false, err
		}
		if !sent {
			return true, nil
		}
	}
	return false, nil
}

// resumeAll sends runs (each of one device) in resume/batch messages, all
// in flight at once, in order, and deletes each run once acknowledged. If
// the cloud refuses a run, its samples are resent alone so that only the
// refused ones are dropped. sent is false if a run was not acknowledged:
// it stays queued, and so do the runs after it that were not (those that
// were are deleted: backfill is stored by sample time, so the order in
// which a retried run arrives does not matter).
func (u *uplink) resumeAll(ctx context.Context, dev *device.Device, runs [][]Item) (sent bool, err error) {
	calls := make([]*device.Call, 0, len(runs))
	sent = true
	for _, run := range runs {
		pk, dk := run[0].ProductKey, run[0].DeviceKey
		call, err := dev.Start(api.MeasurepointResumeBatchTopic(pk, dk), api.Request{ID: dev.NewID(), Version: "1.0",
			Method: "thing.measurepoint.resume.batch", Params: resumeParams(run)})
		if err != nil { // params that are not JSON: stays queued, retried
			u.log.Warn("resume/batch not encoded", "device", dk, "err", err)
			sent = false
			break
		}
		calls = append(calls, call)
	}
	runs = runs[:len(calls)]
	wctx, cancel := context.WithTimeout(ctx, u.cfg.PublishTimeout)
	defer cancel()
	for i, run := range runs {
		r, werr := calls[i].Wait(wctx)
		err := outcome(api.MeasurepointResumeBatchTopic(run[0].ProductKey, run[0].DeviceKey), r, werr)
		switch {
		case err == nil:
			u.m.published.WithLabelValues(pathResume).Add(float64(len(run)))
			if err := u.q.Delete(ids(run)...); err != nil {
				return false, err
			}
		case errors.Is(err, errRejected):
			if ok, err := u.resume(ctx, run); err != nil {
				return false, err
			} else if !ok {
				sent = false
			}
		default:
			u.log.Debug("replay interrupted", "device", run[0].DeviceKey, "err", err)
			sent = false
		}
	}
	return sent, nil
}

// resumeParams is the resume/batch params of run: its samples' params in an array.
func resumeParams(run []Item) []byte {
	params := make([][]byte, len(run))
	for i, it := range run {
		params[i] = it.Params
	}
	return append(append([]byte{'['}, bytes.Join(params, []byte{','})...), ']')
}

// resume sends a run of one device's samples in one resume/batch message
// and deletes them once acknowledged. If the cloud refuses the batch, each
// sample is resent alone so that only the refused ones are dropped.
func (u *uplink) resume(ctx context.Context, run []Item) (sent bool, err error) {
	pk, dk := run[0].ProductKey, run[0].DeviceKey
	err = u.send(ctx, pk, dk, api.MeasurepointResumeBatchTopic(pk, dk), "thing.measurepoint.resume.batch", resumeParams(run))
	switch {
	case err == nil:
		u.m.published.WithLabelValues(pathResume).Add(float64(len(run)))
		return true, u.q.Delete(ids(run)...)
	case errors.Is(err, errRejected) && len(run) > 1:
		for _, it := range run {
			if sent, err := u.resume(ctx, []Item{it}); err != nil || !sent {
				return sent, err
			}
		}
		return true, nil
	case errors.Is(err, errRejected):
		u.m.rejected.Inc()
		u.log.Warn("backfilled sample refused; dropped", "device", dk, "time", run[0].Time, "err", err)
		return true, u.q.Delete(ids(run)...)
	}
	u.log.Debug("replay interrupted", "device", dk, "err", err)
	return false, nil
}

// byDevice splits items into runs of at most n items of one device each,
// keeping each device's items in queue order.
func byDevice(items []Item, n int) [][]Item {
	var runs [][]Item
	open := map[string]int{} // device → index of its open run
	for _, it := range items {
		key := it.ProductKey + "/" + it.DeviceKey
		i, ok := open[key]
		if !ok || len(runs[i]) == n {
			i = len(runs)
			open[key] = i
			runs = append(runs, nil)
		}
		runs[i] = append(runs[i], it)
	}
	return runs
}

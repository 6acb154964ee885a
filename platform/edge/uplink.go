package edge

import (
	"bytes"
	"context"
	"crypto/tls"
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
//   - live posts new samples on measurepoint/post, one at a time in order;
//   - replay sends the backlog on measurepoint/resume/batch, oldest first.
//
// The backlog is every queued item with id <= mark: live moves mark past
// each item it is done with, so an item it could not post (offline, timeout,
// error) stays queued and becomes backlog, and every item queued before a
// start is backlog. Ids above mark belong to live alone, ids at or below it
// to replay alone, so no sample is sent by both.
type uplink struct {
	cfg       CloudConfig
	tls       *tls.Config // nil: plaintext
	gw        Identity
	subs      []Unit
	q         *Queue
	batch     int
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
		log: log.With("component", "uplink"), m: m, onService: onService}
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
	u.log.Info("logged in to the cloud", "gateway", u.gw.DeviceKey, "sub_devices", len(logged))
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
			items, err := u.q.Items(u.mark.Load(), math.MaxInt64, 64)
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

// post sends items on measurepoint/post; it returns only queue errors.
func (u *uplink) post(ctx context.Context, items []Item) error {
	for _, it := range items {
		if ctx.Err() != nil {
			return nil
		}
		err := u.send(ctx, it.ProductKey, it.DeviceKey, api.MeasurepointPostTopic(it.ProductKey, it.DeviceKey), "thing.measurepoint.post", it.Params)
		switch {
		case err == nil:
			u.m.published.WithLabelValues(pathPost).Inc()
		case errors.Is(err, errRejected):
			u.m.rejected.Inc()
			u.log.Warn("sample refused; dropped", "device", it.DeviceKey, "time", it.Time, "err", err)
		default:
			u.mark.Store(it.ID)
			u.backlog.Notify()
			continue
		}
		u.mark.Store(it.ID)
		if err := u.q.Delete(it.ID); err != nil {
			return err
		}
	}
	return nil
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
// messages of one device each, and deletes each batch once acknowledged.
// Samples of sub-devices not logged in stay queued. retry is set when a
// send failed; err reports queue failures only.
func (u *uplink) replayPass(ctx context.Context) (retry bool, err error) {
	after := int64(0)
	for ctx.Err() == nil && u.online() {
		items, err := u.q.Items(after, u.mark.Load(), 8*u.batch)
		if err != nil || len(items) == 0 {
			return false, err
		}
		after = items[len(items)-1].ID
		for _, run := range byDevice(items, u.batch) {
			if u.device(run[0].ProductKey, run[0].DeviceKey) == nil {
				continue
			}
			sent, err := u.resume(ctx, run)
			if err != nil {
				return false, err
			}
			if !sent {
				return true, nil
			}
		}
	}
	return false, nil
}

// resume sends a run of one device's samples in one resume/batch message
// and deletes them once acknowledged. If the cloud refuses the batch, each
// sample is resent alone so that only the refused ones are dropped.
func (u *uplink) resume(ctx context.Context, run []Item) (sent bool, err error) {
	pk, dk := run[0].ProductKey, run[0].DeviceKey
	params := make([][]byte, len(run))
	ids := make([]int64, len(run))
	for i, it := range run {
		params[i], ids[i] = it.Params, it.ID
	}
	body := append(append([]byte{'['}, bytes.Join(params, []byte{','})...), ']')
	err = u.send(ctx, pk, dk, api.MeasurepointResumeBatchTopic(pk, dk), "thing.measurepoint.resume.batch", body)
	switch {
	case err == nil:
		u.m.published.WithLabelValues(pathResume).Add(float64(len(run)))
		return true, u.q.Delete(ids...)
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
		return true, u.q.Delete(ids...)
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

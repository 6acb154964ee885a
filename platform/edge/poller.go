package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/api/regmap"
)

// maxBackoff caps how long a unit that timed out, or a target that refused
// connections, is left alone.
const maxBackoff = 30 * time.Second

// unitState is a unit behind a target and what the poller remembers of it.
type unitState struct {
	cfg  Unit
	plan *plan

	last    map[string]any // last good value of each point
	hb      float64        // last heartbeat value
	hbAt    time.Time      // when the heartbeat last moved
	stale   bool
	down    backoff // after timeouts, the unit is skipped for a while
	failing string  // kind of the current failure, "" when healthy
}

// backoff spaces out retries of something that keeps failing, in clock time.
type backoff struct {
	retryAt time.Time
	wait    time.Duration
}

// fail doubles the wait (1 s to maxBackoff) and sets the next retry after at.
func (b *backoff) fail(at time.Time) {
	b.wait = min(max(2*b.wait, time.Second), maxBackoff)
	b.retryAt = at.Add(b.wait)
}

func (b *backoff) ok() { *b = backoff{} }

// tick is a tick of one of a target's poll intervals.
type tick struct {
	every time.Duration
	at    time.Time
}

// poller polls the units of one Modbus target on one connection, and runs
// service writes on the same connection. One goroutine runs it; an error
// of one unit never stops the others.
type poller struct {
	target     Target
	units      []*unitState
	clock      Clock
	log        *slog.Logger
	m          *metrics
	staleAfter time.Duration
	push       func([]Item) error // queues a poll round's samples at once
	ticks      []<-chan time.Time
	intervals  []time.Duration
	stops      []func()

	down    backoff // after connection failures, the target is not dialled for a while
	downErr error   // the last connection failure

	mu     sync.Mutex // guards client: polls and service writes take turns
	client *mb.ModbusClient
}

// newPoller starts the target's tickers on clock, one per distinct interval
// of its units' poll groups; run consumes them.
func newPoller(t Target, units []*unitState, clock Clock, staleAfter time.Duration, log *slog.Logger, m *metrics,
	push func([]Item) error) *poller {
	p := &poller{target: t, units: units, clock: clock, log: log.With("target", t.Name), m: m, staleAfter: staleAfter, push: push}
	for _, u := range units {
		for _, g := range u.plan.groups {
			if !slices.Contains(p.intervals, g.interval) {
				c, stop := clock.Tick(g.interval)
				p.intervals = append(p.intervals, g.interval)
				p.ticks = append(p.ticks, c)
				p.stops = append(p.stops, stop)
			}
		}
	}
	return p
}

// run polls every group at once, then at every tick, until ctx ends; it
// returns an error only when the queue fails.
func (p *poller) run(ctx context.Context) error {
	ticks := make(chan tick)
	var wg sync.WaitGroup
	for i, c := range p.ticks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.stops[i]()
			for {
				select {
				case at := <-c:
					select {
					case ticks <- tick{p.intervals[i], at}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer p.close()
	if err := p.pollDue(0, p.clock.Now()); err != nil { // at once, so a standby taking over sends data without waiting a period
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case tk := <-ticks:
			if err := p.pollDue(tk.every, tk.at); err != nil {
				return err
			}
		}
	}
}

// pollDue polls the groups of every unit whose interval is every (all of
// them when every is 0) and queues the round's samples in one push. The
// polls are counted once the round is queued, so that a poll counted is a
// sample counted (the edge tests step the clock by the count).
func (p *poller) pollDue(every time.Duration, at time.Time) error {
	var round []Item
	for u, g := range p.due(every) {
		params, err := p.poll(u, g, at)
		if err != nil {
			return err
		}
		if params != nil {
			round = append(round, Item{ProductKey: u.cfg.ProductKey, DeviceKey: u.cfg.Device, Time: at.UnixMilli(), Params: params})
		}
	}
	err := p.push(round)
	for _, g := range p.due(every) {
		p.m.polls.WithLabelValues(p.target.Name, g.name).Inc()
	}
	return err
}

// due yields each unit's groups polled in a round of interval every (0: all of them).
func (p *poller) due(every time.Duration) iter.Seq2[*unitState, *group] {
	return func(yield func(*unitState, *group) bool) {
		for _, u := range p.units {
			for i := range u.plan.groups {
				if g := &u.plan.groups[i]; every == 0 || g.interval == every {
					if !yield(u, g) {
						return
					}
				}
			}
		}
	}
}

// poll reads one poll group of a unit and returns the sample of tick time
// at (nil if it has no point to report). A failed read marks the points it
// covers bad (their last good value with quality 1); a stale heartbeat
// marks every point of the unit bad.
func (p *poller) poll(u *unitState, g *group, at time.Time) ([]byte, error) {
	values := map[string]any{}
	kind, cause := "", error(nil)
	switch {
	case at.Before(p.down.retryAt):
		kind, cause = kindConnection, p.downErr
	case at.Before(u.down.retryAt):
		kind = u.failing
	default:
		start := time.Now()
		for _, b := range g.blocks {
			regs, bits, err := p.read(u.cfg.ID, b)
			if err != nil {
				kind, cause = errorKind(err), err
				p.m.pollErrors.WithLabelValues(p.target.Name, u.cfg.Device, kind).Inc()
				switch kind {
				case kindException:
					continue // the other blocks may still answer
				case kindTimeout:
					u.down.fail(at) // this unit does not answer: leave it alone a while
				case kindConnection:
					p.down.fail(at) // nobody answers: one dial per back-off, not one per unit
					p.downErr = err
				}
				break
			}
			p.down.ok()
			if p.decode(u, b, regs, bits, at, values) && kind == "" {
				kind = kindGarbage
				p.m.pollErrors.WithLabelValues(p.target.Name, u.cfg.Device, kind).Inc()
			}
		}
		p.m.observePoll(p.target.Name, g.name, time.Since(start))
		if kind != kindTimeout {
			u.down.ok()
		}
	}
	if kind == "" && u.stale {
		kind = kindStale
		p.m.pollErrors.WithLabelValues(p.target.Name, u.cfg.Device, kind).Inc()
	}
	p.report(u, kind, cause)

	points := map[string]any{}
	for _, b := range g.blocks {
		for _, pt := range b.points {
			id := pt.reg.Point
			if pt.mp == nil {
				continue
			}
			v, fresh := values[id]
			if fresh {
				u.last[id] = v
			} else {
				last, ok := u.last[id]
				if !ok {
					continue // never read: nothing to report
				}
				v = last
			}
			switch {
			case fresh && !u.stale:
				points[id] = v
			case pt.mp.Quality:
				points[id] = map[string]any{"value": v, "quality": api.QualityBad}
			}
			// A point whose model has no quality flag is left out while bad.
		}
	}
	if len(points) == 0 {
		return nil, nil
	}
	params, err := json.Marshal(struct {
		Measurepoints map[string]any `json:"measurepoints"`
		Time          int64          `json:"time"`
	}{points, at.UnixMilli()})
	if err != nil {
		return nil, fmt.Errorf("encode sample of %s: %w", u.cfg.Device, err)
	}
	return params, nil
}

// decode converts a block's words or bits into values; it updates the
// heartbeat state and reports whether any value was garbage.
func (p *poller) decode(u *unitState, b block, regs []uint16, bits []bool, at time.Time, values map[string]any) (garbage bool) {
	for _, pt := range b.points {
		off := int(pt.reg.Address) - int(b.addr)
		var v float64
		if b.area.Bits() {
			if off >= len(bits) {
				return true
			}
			if bits[off] {
				v = 1
			}
		} else {
			if pt.reg.End()-int(b.addr) > len(regs) {
				return true
			}
			var err error
			if v, err = pt.reg.Decode(regs[off : pt.reg.End()-int(b.addr)]); err != nil {
				garbage = true
				continue
			}
			v = tidy(pt.reg, v)
		}
		if pt.mp == nil { // the heartbeat
			if u.hbAt.IsZero() || v != u.hb {
				u.hb, u.hbAt = v, at
			}
			u.stale = at.Sub(u.hbAt) >= p.staleAfter
			continue
		}
		jv, ok := jsonValue(pt.mp, v)
		if !ok {
			garbage = true
			continue
		}
		values[pt.reg.Point] = jv
	}
	return garbage
}

// tidy removes the binary noise of decoding, so 837.4 is not stored as
// 837.4000000000001: a float32 keeps its shortest decimal form, a scaled
// integer the decimals of its scale and offset.
func tidy(r regmap.Register, v float64) float64 {
	if r.Type == regmap.TypeFloat32 {
		if r.Scale == 1 && r.Offset == 0 {
			v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', -1, 32), 64)
		}
		return v
	}
	p := math.Pow10(max(decimals(r.Scale), decimals(r.Offset)))
	return math.Round(v*p) / p
}

// decimals is the number of decimal places of x.
func decimals(x float64) int {
	s := strconv.FormatFloat(x, 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return len(s) - i - 1
	}
	return 0
}

// report logs a unit's change of health, not every failed poll.
func (p *poller) report(u *unitState, kind string, cause error) {
	if kind == u.failing {
		return
	}
	if kind == "" {
		p.log.Info("unit healthy again", "device", u.cfg.Device, "unit", u.cfg.ID, "was", u.failing)
	} else {
		p.log.Warn("unit failing", "device", u.cfg.Device, "unit", u.cfg.ID, "kind", kind, "err", cause)
	}
	u.failing = kind
}

// read performs one block read on the target's connection, opening it when
// needed and dropping it after anything but an exception response.
func (p *poller) read(unit uint8, b block) (regs []uint16, bits []bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.conn(unit)
	if err != nil {
		return nil, nil, err
	}
	switch b.area {
	case regmap.AreaInput:
		regs, err = c.ReadRegisters(b.addr, b.n, mb.INPUT_REGISTER)
	case regmap.AreaHolding:
		regs, err = c.ReadRegisters(b.addr, b.n, mb.HOLDING_REGISTER)
	case regmap.AreaCoil:
		bits, err = c.ReadCoils(b.addr, b.n)
	case regmap.AreaDiscrete:
		bits, err = c.ReadDiscreteInputs(b.addr, b.n)
	}
	if err != nil && errorKind(err) != kindException {
		p.closeLocked()
	}
	return regs, bits, err
}

// write performs a service write: FC 5 for a coil, FC 6 or 16 for registers.
func (p *poller) write(unit uint8, w write) error {
	words, err := []uint16(nil), error(nil)
	if w.reg.Area == regmap.AreaHolding {
		if words, err = w.reg.Encode(w.value); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.conn(unit)
	if err != nil {
		return err
	}
	switch {
	case w.reg.Area == regmap.AreaCoil:
		err = c.WriteCoil(w.reg.Address, w.value != 0)
	case len(words) == 1:
		err = c.WriteRegister(w.reg.Address, words[0])
	default:
		err = c.WriteRegisters(w.reg.Address, words)
	}
	if err != nil && errorKind(err) != kindException {
		p.closeLocked()
	}
	return err
}

// conn returns the connection addressed to unit, opening it if needed; p.mu is held.
func (p *poller) conn(unit uint8) (*mb.ModbusClient, error) {
	if p.client == nil {
		c, err := mb.NewClient(&mb.ClientConfiguration{
			URL: "tcp://" + p.target.Addr, Timeout: p.target.Timeout,
			Logger: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		})
		if err != nil {
			return nil, err
		}
		if err := c.Open(); err != nil {
			return nil, err
		}
		p.client = c
	}
	return p.client, p.client.SetUnitId(unit)
}

func (p *poller) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

func (p *poller) closeLocked() {
	if p.client != nil {
		_ = p.client.Close()
		p.client = nil
	}
}

// unknownException is how the Modbus client words an exception response
// whose code it has no error for.
const unknownException = "unknown exception code (%d)"

// errorKind classifies a Modbus client error. An exception response, of any
// code, is the device answering: it is an exception, not a failed connection
// that would drop the connection and back off every unit of the target.
func errorKind(err error) string {
	switch {
	case errors.Is(err, mb.ErrRequestTimedOut) || os.IsTimeout(err):
		return kindTimeout
	case exceptionCode(err) != 0:
		return kindException
	case strings.HasPrefix(err.Error(), strings.TrimSuffix(unknownException, "(%d)")): // exception code 0: no such code
		return kindProtocol
	case errors.Is(err, mb.ErrProtocolError), errors.Is(err, mb.ErrBadUnitId), errors.Is(err, mb.ErrBadTransactionId),
		errors.Is(err, mb.ErrShortFrame), errors.Is(err, mb.ErrUnknownProtocolId), errors.Is(err, mb.ErrBadCRC):
		return kindProtocol
	}
	return kindConnection
}

// exceptionCode returns the Modbus exception code of err, or 0. The client
// has errors for the standard codes only; a device may answer with any
// other (07 NAK, vendor codes), which the client reports as text.
func exceptionCode(err error) uint8 {
	var code uint8
	if err != nil {
		if _, e := fmt.Sscanf(err.Error(), unknownException, &code); e == nil {
			return code
		}
	}
	for code, e := range map[uint8]error{
		0x01: mb.ErrIllegalFunction, 0x02: mb.ErrIllegalDataAddress, 0x03: mb.ErrIllegalDataValue,
		0x04: mb.ErrServerDeviceFailure, 0x05: mb.ErrAcknowledge, 0x06: mb.ErrServerDeviceBusy,
		0x08: mb.ErrMemoryParityError, 0x0A: mb.ErrGWPathUnavailable, 0x0B: mb.ErrGWTargetFailedToRespond,
	} {
		if errors.Is(err, e) {
			return code
		}
	}
	return 0
}

package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// heartbeat is what the two edges of a pair tell each other every interval.
type heartbeat struct {
	// Gateway is the identity the pair shares, "pk/dk"; other pairs' heartbeats are ignored.
	Gateway string `json:"gateway"`
	Node    string `json:"node"`
	Active  bool   `json:"active"`
	// Term grows at every takeover; between two actives the newer term wins.
	Term uint64 `json:"term"`
}

// elector runs an edge as one of an active/standby pair.
//
// Each edge sends a UDP heartbeat to its peer every Interval. A standby
// becomes active when it has heard no active peer for Timeout (the peer
// died, hung or is cut off), or at start when both are standby and its node
// name is the lower; it then takes a term above any it has seen. An active
// that hears an active peer of a newer term (or the same term and a lower
// name) steps down at once. A restarted edge hears the active peer within
// one interval and stays standby: there is no failback.
//
// The broker is the fence: one session per device, and a new login of the
// gateway closes the older connection ("session taken over"). So whenever
// two edges believe they are active, only the one that logged in last can
// publish; the other's publishes fail and its samples stay in its own queue.
// Double publishing is bounded to the samples both poll while both believe
// they are active: Timeout + Interval after the old active resumes hearing
// its peer (it then yields to the newer term). While the peer link is cut
// but both reach the broker, they take the session from each other, each
// backing off up to cloud.reconnect_max; heal the link to end it.
type elector struct {
	cfg  HAConfig
	id   string
	log  *slog.Logger
	m    *metrics
	conn *net.UDPConn
	peer *net.UDPAddr

	active  bool
	term    uint64
	started time.Time
	heard   heartbeat // the peer's last heartbeat
	heardAt time.Time
}

func newElector(cfg HAConfig, gateway string, log *slog.Logger, m *metrics) (*elector, error) {
	laddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("ha listen %q: %w", cfg.Listen, err)
	}
	peer, err := net.ResolveUDPAddr("udp", cfg.Peer)
	if err != nil {
		return nil, fmt.Errorf("ha peer %q: %w", cfg.Peer, err)
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("ha listen %q: %w", cfg.Listen, err)
	}
	return &elector{cfg: cfg, id: gateway, log: log.With("part", "ha", "node", cfg.Node), m: m, conn: conn, peer: peer}, nil
}

// run takes part in the election until ctx ends, running work (with a
// context cancelled on stepping down) while active. An error of work ends run.
func (el *elector) run(ctx context.Context, work func(context.Context) error) error {
	defer el.conn.Close()
	heard := make(chan heartbeat, 16)
	go el.receive(heard)
	tick := time.NewTicker(el.cfg.Interval)
	defer tick.Stop()
	el.started = time.Now()
	var cur *job          // the active edge's work, nil while standby
	var done <-chan error // cur.done while active
	stepDown := func() error {
		err := cur.stop()
		el.active, cur, done = false, nil, nil
		el.m.active.Store(false)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			if el.active {
				return stepDown()
			}
			return nil
		case err := <-done:
			el.m.active.Store(false)
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("active edge stopped: %w", err)
			}
			return nil
		case hb := <-heard:
			if hb.Node == el.cfg.Node {
				el.log.Error("heartbeat from a peer with this edge's own node name; check ha.peer and ha.node")
				continue
			}
			el.heard, el.heardAt = hb, time.Now()
		case <-tick.C:
		}
		switch want := el.decide(time.Now()); {
		case want && !el.active:
			el.term = max(el.term, el.heard.Term) + 1
			el.active = true
			el.m.active.Store(true)
			el.log.Info("taking over as active", "term", el.term, "peer", el.heard.Node, "peer_active", el.heard.Active)
			el.send() // tell the peer before logging in, so an old active yields first
			cur = startJob(ctx, work)
			done = cur.done
		case !want && el.active:
			el.log.Info("stepping down to standby", "peer", el.heard.Node, "peer_term", el.heard.Term, "term", el.term)
			if err := stepDown(); err != nil {
				return err
			}
			el.send()
		default:
			el.send()
		}
	}
}

// decide says whether this edge should be active now.
func (el *elector) decide(now time.Time) bool {
	alive := !el.heardAt.IsZero() && now.Sub(el.heardAt) < el.cfg.Timeout
	if el.active {
		newer := el.heard.Term > el.term || el.heard.Term == el.term && el.heard.Node < el.cfg.Node
		return !(alive && el.heard.Active && newer)
	}
	if alive {
		return !el.heard.Active && el.cfg.Node < el.heard.Node
	}
	return now.Sub(el.started) >= el.cfg.Timeout
}

func (el *elector) send() {
	b, _ := json.Marshal(heartbeat{Gateway: el.id, Node: el.cfg.Node, Active: el.active, Term: el.term})
	if _, err := el.conn.WriteToUDP(b, el.peer); err != nil {
		el.log.Debug("heartbeat not sent", "err", err)
	}
}

// receive delivers the peer's heartbeats until the connection is closed.
func (el *elector) receive(out chan<- heartbeat) {
	buf := make([]byte, 1024)
	for {
		n, _, err := el.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		var hb heartbeat
		if json.Unmarshal(buf[:n], &hb) != nil || hb.Gateway != el.id {
			continue
		}
		select {
		case out <- hb:
		default:
		}
	}
}

// job is the work of an active edge.
type job struct {
	cancel context.CancelFunc
	done   chan error
}

func startJob(ctx context.Context, work func(context.Context) error) *job {
	j := &job{done: make(chan error, 1)}
	var wctx context.Context
	wctx, j.cancel = context.WithCancel(ctx)
	go func() { j.done <- work(wctx) }()
	return j
}

// stop cancels the work and waits for it; it returns the work's error.
func (j *job) stop() error {
	j.cancel()
	return <-j.done
}

package scenarios

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// balancer is a TCP load balancer, as devices reach a cluster's ingest
// nodes in production: each new connection goes to the next upstream that
// is up (round robin; or, as failover, always the first that is up), trying
// the others when a dial fails. An upstream is down while its health check
// fails (twice in a row, as HAProxy's "fall 2") or the runner marks it
// down; marking it down also drops its connections. Cut drops every
// connection and refuses new ones until Restore: a link that is cut.
//
// The runner puts one in front of the nodes' MQTT brokers and one in front
// of their HTTP APIs (failover: the registry is eventually consistent
// across nodes, so the runner reads its writes from one node while it is
// up), and one per Modbus gateway between its edges and the MQTT balancer
// (the edge's link to the cloud).
type balancer struct {
	l         net.Listener
	upstreams func() []upstream
	healthy   func(ctx context.Context, name string) bool // nil: no health checks
	failover  bool                                        // the first upstream that is up, not round robin

	mu      sync.Mutex
	cut     bool
	down    map[string]bool // marked down by the runner
	failing map[string]int  // consecutive failed health checks
	conns   map[net.Conn]string
	next    int
	stop    context.CancelFunc
}

// upstream is where a balancer forwards to; Addr is "" while it is unreachable.
type upstream struct{ Name, Addr string }

// healthEvery is how often a balancer checks its upstreams' health;
// healthFall failed checks in a row take an upstream out until one passes.
const (
	healthEvery = 250 * time.Millisecond
	healthFall  = 2
)

// newBalancer listens on a loopback port and forwards to upstreams (asked
// anew on every connection, as addresses may change when a node restarts).
func newBalancer(upstreams func() []upstream, healthy func(ctx context.Context, name string) bool, failover bool) (*balancer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &balancer{l: l, upstreams: upstreams, healthy: healthy, failover: failover, down: map[string]bool{}, failing: map[string]int{},
		conns: map[net.Conn]string{}, stop: stop}
	go b.accept()
	if healthy != nil {
		go b.check(ctx)
	}
	return b, nil
}

// Addr is where clients connect.
func (b *balancer) Addr() string { return b.l.Addr().String() }

func (b *balancer) accept() {
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		go b.serve(c)
	}
}

// serve dials the next upstream that is up and pipes c to it.
func (b *balancer) serve(c net.Conn) {
	for _, u := range b.candidates() {
		up, err := net.DialTimeout("tcp", u.Addr, 2*time.Second)
		if err != nil {
			continue
		}
		b.mu.Lock()
		if b.cut || b.down[u.Name] {
			b.mu.Unlock()
			up.Close()
			break
		}
		b.conns[c], b.conns[up] = u.Name, u.Name
		b.mu.Unlock()
		go b.pipe(c, up)
		go b.pipe(up, c)
		return
	}
	c.Close()
}

// candidates returns the upstreams that are up, starting with the next in turn.
func (b *balancer) candidates() []upstream {
	all := b.upstreams()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return nil
	}
	var out []upstream
	for i := range all {
		u := all[(b.next+i)%len(all)]
		if u.Addr != "" && !b.down[u.Name] && b.failing[u.Name] < healthFall {
			out = append(out, u)
		}
	}
	if !b.failover {
		b.next++
	}
	return out
}

func (b *balancer) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	b.mu.Lock()
	delete(b.conns, dst)
	delete(b.conns, src)
	b.mu.Unlock()
}

// check runs the health checks, of all upstreams at once, until ctx ends.
func (b *balancer) check(ctx context.Context) {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, u := range b.upstreams() {
			wg.Go(func() {
				ok := u.Addr != "" && b.healthy(ctx, u.Name)
				b.mu.Lock()
				if ok {
					b.failing[u.Name] = 0
				} else {
					b.failing[u.Name]++
				}
				b.mu.Unlock()
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dropLocked closes the connections to upstream name ("" for all).
func (b *balancer) dropLocked(name string) {
	for c, n := range b.conns {
		if name == "" || n == name {
			c.Close()
			delete(b.conns, c)
		}
	}
}

// Down stops forwarding to upstream name and drops its connections.
func (b *balancer) Down(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[name] = true
	b.dropLocked(name)
}

// Up forwards to upstream name again.
func (b *balancer) Up(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.down, name)
}

// Cut drops every connection and refuses new ones.
func (b *balancer) Cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cut = true
	b.dropLocked("")
}

// Restore accepts connections again.
func (b *balancer) Restore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cut = false
}

// Close stops the balancer and drops its connections.
func (b *balancer) Close() {
	b.stop()
	b.l.Close()
	b.Cut()
}

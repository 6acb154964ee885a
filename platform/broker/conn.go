package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// guardListener keeps what an unauthenticated client can cost small: it caps
// the open connections in total and per remote address (refusing the excess
// at accept), and wraps every connection in a guardConn.
type guardListener struct {
	net.Listener
	cfg Config
	m   *metrics
	log *slog.Logger

	mu    sync.Mutex
	total int
	perIP map[string]int
}

func newGuardListener(ln net.Listener, cfg Config, m *metrics, log *slog.Logger) *guardListener {
	return &guardListener{Listener: ln, cfg: cfg, m: m, log: log, perIP: map[string]int{}}
}

// Accept returns the next connection within the caps. Connections over a cap
// are closed and counted; a failed accept that is not the listener closing
// (e.g. out of file descriptors) is retried, so the broker keeps serving.
func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			l.log.Warn("accept failed; retrying", "err", err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		ip := remoteIP(c.RemoteAddr())
		if reason := l.admit(ip); reason != "" {
			l.m.connectRejects.WithLabelValues(reason).Inc()
			_ = c.Close()
			continue
		}
		l.m.connections.Inc()
		// mochi replaces the deadline with the keep-alive once CONNECT is read.
		_ = c.SetDeadline(time.Now().Add(l.cfg.ConnectTimeout))
		return &guardConn{Conn: c, l: l, ip: ip, max: l.cfg.MaxConnectPacket}, nil
	}
}

// admit takes a connection slot for ip, or returns why there is none.
func (l *guardListener) admit(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.cfg.MaxConnections > 0 && l.total >= l.cfg.MaxConnections:
		return "too_many_connections"
	case l.cfg.MaxConnectionsPerIP > 0 && l.perIP[ip] >= l.cfg.MaxConnectionsPerIP:
		return "too_many_from_ip"
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *guardListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	l.m.connections.Dec()
}

func remoteIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// errPreLogin is returned by a guardConn's Read for a client that breaks
// the rules before login; the connection is then closed.
var errPreLogin = errors.New("refused before login")

// guardConn is a connection whose client has not logged in yet: reads are
// confined to the first packet, which must be a CONNECT of at most max
// bytes. The packet's fixed header is checked as it passes, before mochi
// decodes it, so an announced length above max is refused before anything
// of that size is allocated. Once the client has logged in, lift removes
// the limits.
type guardConn struct {
	net.Conn
	l      *guardListener
	ip     string
	max    int
	lifted atomic.Bool

	// The fields below are used by the reading goroutine only.
	hdr     int // fixed header bytes seen (type byte and length bytes)
	length  int // remaining length decoded so far
	total   int // the whole packet's size once its header is complete, else 0
	read    int // bytes of the packet handed to the reader
	refused bool

	closeOnce sync.Once
}

// lift ends the pre-login limits (after the hook accepted the login).
func (c *guardConn) lift() { c.lifted.Store(true) }

// SyscallConn gives mochi's idle read the descriptor of a plain TCP
// connection once its client has logged in (it then reads a packet in one
// call, not two); before that every read goes through Read's checks, and a
// TLS connection never offers one.
func (c *guardConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !c.lifted.Load() || !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// Read reads as the connection's state allows.
func (c *guardConn) Read(p []byte) (int, error) {
	if c.lifted.Load() {
		return c.Conn.Read(p)
	}
	if c.refused {
		return 0, errPreLogin
	}
	limit := 5 - c.read // the fixed header is at most 5 bytes
	if c.total > 0 {
		limit = c.total - c.read
	}
	if limit <= 0 {
		return 0, c.refuse("connect_overrun", errors.New("read past the CONNECT packet before login"))
	}
	if len(p) > limit {
		p = p[:limit]
	}
	n, err := c.Conn.Read(p)
	if c.total == 0 && n > 0 {
		if perr := c.header(p[:n]); perr != nil {
			return 0, perr
		}
	}
	c.read += n
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.l.m.connectRejects.WithLabelValues("connect_timeout").Inc()
	}
	return n, err
}

// header decodes the fixed header from b (the next bytes of the stream) and
// checks the packet is a CONNECT within the size limit.
func (c *guardConn) header(b []byte) error {
	for _, x := range b {
		if c.total > 0 {
			return nil
		}
		if c.hdr == 0 {
			if x>>4 != 1 { // CONNECT
				return c.refuse("not_connect", fmt.Errorf("first packet is of type %d, not CONNECT", x>>4))
			}
			c.hdr++
			continue
		}
		c.length |= int(x&0x7f) << (7 * (c.hdr - 1))
		c.hdr++
		if x&0x80 != 0 {
			if c.hdr == 5 {
				return c.refuse("malformed", errors.New("malformed remaining length"))
			}
			continue
		}
		if c.length > c.max {
			return c.refuse("connect_too_large", fmt.Errorf("CONNECT announces %d bytes, more than the %d allowed before login", c.length, c.max))
		}
		c.total = c.hdr + c.length
	}
	return nil
}

func (c *guardConn) refuse(reason string, err error) error {
	c.refused = true
	c.l.m.connectRejects.WithLabelValues(reason).Inc()
	c.l.log.Debug("connection refused before login", "remote", c.ip, "reason", reason, "err", err)
	return fmt.Errorf("%w: %w", errPreLogin, err)
}

// ConnectionState is the TLS state of the wrapped connection (the zero state
// for plain TCP), so that checks of a client certificate see through the guard.
func (c *guardConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// Close closes the connection and frees its slot.
func (c *guardConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.l.release(c.ip) })
	return err
}

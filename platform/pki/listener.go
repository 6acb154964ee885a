package pki

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// NewListener returns a listener that speaks TLS only, with cfg, and gives
// each client handshakeTimeout to complete its handshake: a client that
// connects and stays silent is dropped then instead of holding a
// connection. (net/http bounds handshakes itself; servers reading the
// connection directly, like the MQTT broker, need this.)
func NewListener(inner net.Listener, cfg *tls.Config, handshakeTimeout time.Duration) net.Listener {
	return &listener{Listener: inner, cfg: cfg, timeout: handshakeTimeout}
}

type listener struct {
	net.Listener
	cfg     *tls.Config
	timeout time.Duration
}

// Accept returns the next connection, its handshake still to come (on the first read or write).
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: tls.Server(c, l.cfg), timeout: l.timeout}, nil
}

// Conn is a server-side TLS connection whose handshake is bounded in time.
type Conn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

// handshake runs the handshake once, within the timeout.
func (c *Conn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
	})
	return c.err
}

// Read completes the handshake, then reads.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// Write completes the handshake, then writes.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// connectHeader is the fixed header of a CONNECT announcing n remaining bytes.
func connectHeader(n int) []byte { return fixedHeader(0x10, n) }

// closedByServer reports whether the server closed c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// dialMany opens n connections that each write first, waits for ready and
// checks the heap grew by at most 32 KiB per connection.
func dialMany(t *testing.T, r *rig, n int, first []byte, ready func() bool) []net.Conn {
	t.Helper()
	before := heapInUse()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", r.b.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
		if first != nil {
			_, err = c.Write(first)
			require.NoError(t, err)
		}
	}
	require.Eventually(t, ready, 10*time.Second, 10*time.Millisecond)
	after := heapInUse()
	t.Logf("heap before %d KiB, with %d connections %d KiB", before>>10, n, after>>10)
	require.Less(t, int64(after)-int64(before), int64(n*32<<10), "at most 32 KiB per connection")
	return conns
}

// Many connections that announce a big CONNECT cost the broker no
// allocation of that size and are closed at once; many that send nothing
// are closed at the connect deadline; neither grows the heap by more than
// a small bound per connection.
func TestPreLoginLimits(t *testing.T) {
	r := startRig(t, func(c *Config) { c.ConnectTimeout = 2 * time.Second })
	const n = 1000
	max := r.b.cfg.MaxPayload * 4 // mochi's own packet limit: far above the pre-login limit

	t.Run("big CONNECT headers", func(t *testing.T) {
		conns := dialMany(t, r, n, connectHeader(max-10), func() bool { return r.rejected(true, "connect_too_large") == n })
		for _, c := range conns {
			require.True(t, closedByServer(c, 5*time.Second), "a big CONNECT header closes the connection")
			c.Close()
		}
	})

	t.Run("half-open connections", func(t *testing.T) {
		start := time.Now()
		conns := dialMany(t, r, n, nil, func() bool { return testutil.ToFloat64(r.b.m.connections) >= n })
		for _, c := range conns {
			require.True(t, closedByServer(c, 10*time.Second), "a silent connection is closed at the deadline")
			c.Close()
		}
		require.GreaterOrEqual(t, time.Since(start), r.b.cfg.ConnectTimeout-100*time.Millisecond, "not before the deadline")
		require.Equal(t, float64(n), r.rejected(true, "connect_timeout"))
		require.Eventually(t, func() bool { return testutil.ToFloat64(r.b.m.connections) == 0 }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("first packet not CONNECT", func(t *testing.T) {
		c, err := net.Dial("tcp", r.b.Addr())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte{0x30, 0x05, 0, 1, 'a', 'x', 'y'}) // PUBLISH
		require.NoError(t, err)
		require.True(t, closedByServer(c, 5*time.Second))
		require.Equal(t, 1.0, r.rejected(true, "not_connect"))
	})
}

func TestConnectionCaps(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		reason string
	}{
		{name: "total", mutate: func(c *Config) { c.MaxConnections = 3 }, reason: "too_many_connections"},
		{name: "per address", mutate: func(c *Config) { c.MaxConnectionsPerIP = 3 }, reason: "too_many_from_ip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := startRig(t, func(c *Config) { c.ConnectTimeout = time.Minute; tc.mutate(c) })
			d := r.device(t, "d1")
			var conns []net.Conn
			for range 3 {
				c, err := net.Dial("tcp", r.b.Addr())
				require.NoError(t, err)
				conns = append(conns, c)
			}
			require.Eventually(t, func() bool { return testutil.ToFloat64(r.b.m.connections) == 3 }, 5*time.Second, 10*time.Millisecond)
			extra, err := net.Dial("tcp", r.b.Addr())
			require.NoError(t, err)
			defer extra.Close()
			require.True(t, closedByServer(extra, 5*time.Second), "the connection over the cap is closed")
			require.Equal(t, 1.0, r.rejected(true, tc.reason))
			_, err = r.dial(t, d, "", nil)
			require.Error(t, err, "no login over the cap")

			for _, c := range conns {
				c.Close()
			}
			require.Eventually(t, func() bool { return testutil.ToFloat64(r.b.m.connections) == 0 }, 5*time.Second, 10*time.Millisecond)
			_, err = r.dial(t, d, "", nil)
			require.NoError(t, err, "slots are freed when connections close")
		})
	}
}

// The guard lets a whole CONNECT through (even one split into single
// bytes) and nothing after it until login.
func TestGuardConnReadsOnlyTheConnect(t *testing.T) {
	cases := []struct {
		name    string
		stream  []byte
		reads   int // bytes the reader may see
		reason  string
		refused bool
	}{
		{name: "small connect then more", stream: append(append(connectHeader(12), bytes.Repeat([]byte{1}, 12)...), 0x30, 0x00), reads: 14},
		{name: "too large", stream: connectHeader(9000), refused: true, reason: "connect_too_large"},
		{name: "not a connect", stream: []byte{0x82, 0x01, 0x00}, refused: true, reason: "not_connect"},
		{name: "malformed length", stream: []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x01}, refused: true, reason: "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client, server := net.Pipe()
			m := newMetrics(prometheusRegistry())
			l := &guardListener{cfg: DefaultConfig(), m: m, log: quietTestLogger(), perIP: map[string]int{}}
			g := &guardConn{Conn: server, l: l, max: 8 << 10}
			go func() {
				for _, b := range c.stream {
					if _, err := client.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
			defer client.Close()
			got := 0
			buf := make([]byte, 64)
			var err error
			for got < len(c.stream) {
				var k int
				k, err = g.Read(buf)
				got += k
				if err != nil {
					break
				}
			}
			if c.refused {
				require.ErrorIs(t, err, errPreLogin)
				require.Equal(t, 1.0, testutil.ToFloat64(m.connectRejects.WithLabelValues(c.reason)))
				return
			}
			require.Equal(t, c.reads, got)
			require.ErrorIs(t, err, errPreLogin, "nothing past the CONNECT before login")
			g.lift()
			g.refused = false
		})
	}
}

// The guard passes the TLS state of the connection it wraps through, so a
// device certificate check sees the certificate.
func TestGuardConnKeepsTLSState(t *testing.T) {
	l := &guardListener{cfg: DefaultConfig(), m: newMetrics(prometheusRegistry()), log: quietTestLogger(), perIP: map[string]int{}}
	plain, _ := net.Pipe()
	defer plain.Close()
	require.False(t, (&guardConn{Conn: plain, l: l}).ConnectionState().HandshakeComplete)
	state := tls.ConnectionState{HandshakeComplete: true, ServerName: "gale"}
	got := (&guardConn{Conn: tlsStateConn{Conn: plain, state: state}, l: l}).ConnectionState()
	require.Equal(t, state.ServerName, got.ServerName)
	require.True(t, got.HandshakeComplete)
}

type tlsStateConn struct {
	net.Conn
	state tls.ConnectionState
}

func (c tlsStateConn) ConnectionState() tls.ConnectionState { return c.state }

// The guard gives mochi a TCP connection's descriptor only once its client has
// logged in: before, every read must pass its checks. A connection without a
// descriptor (TLS, a pipe) never offers one.
func TestGuardConnOffersDescriptorAfterLogin(t *testing.T) {
	l := &guardListener{cfg: DefaultConfig(), m: newMetrics(prometheusRegistry()), log: quietTestLogger(), perIP: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()

	g := &guardConn{Conn: server, l: l, max: 8 << 10}
	_, err = g.SyscallConn()
	require.ErrorIs(t, err, errors.ErrUnsupported, "no descriptor before login")
	g.lift()
	raw, err := g.SyscallConn()
	require.NoError(t, err)
	require.NotNil(t, raw)

	pipe, _ := net.Pipe()
	defer pipe.Close()
	p := &guardConn{Conn: pipe, l: l}
	p.lift()
	_, err = p.SyscallConn()
	require.ErrorIs(t, err, errors.ErrUnsupported, "a connection without a descriptor")
}

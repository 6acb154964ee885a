//go:build unix

// [gale fork] The whole file: an idle client's next packet read in one call.

package mqtt

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
)

// rawSource is what a lent read buffer reads from: the connection's
// descriptor directly while readIdleRaw polls it, the connection after.
type rawSource struct {
	conn net.Conn
	fd   int
	raw  bool
}

// Read reads from the descriptor (raw) or the connection.
func (s *rawSource) Read(p []byte) (int, error) {
	if !s.raw {
		return s.conn.Read(p)
	}
	for {
		n, err := syscall.Read(s.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// rawConn returns the connection's descriptor access once it offers one (a
// plain TCP connection does, TLS does not; Gale's pre-login guard offers it
// only after login, so every read before goes through its checks).
func (cl *Client) rawConn() syscall.RawConn {
	if cl.Net.raw != nil {
		return cl.Net.raw
	}
	sc, ok := cl.Net.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	cl.Net.raw, cl.Net.src = raw, rawSource{conn: cl.Net.Conn}
	return raw
}

// readIdleRaw is readIdle on a connection with descriptor access: it waits
// until the connection is readable holding no buffer, and only then takes one
// and fills it in one read, so the packet's first byte and its rest (and
// whatever follows) come in one call rather than two.
func (cl *Client) readIdleRaw(raw syscall.RawConn) (byte, error) {
	src := &cl.Net.src
	var first byte
	var rerr error
	err := raw.Read(func(fd uintptr) bool {
		br := cl.ops.readers.Get().(*bufio.Reader)
		src.fd, src.raw = int(fd), true
		br.Reset(src)
		b, err := br.ReadByte()
		src.raw = false
		if errors.Is(err, syscall.EAGAIN) {
			br.Reset(nil)
			cl.ops.readers.Put(br)
			return false // nothing yet: wait until readable
		}
		cl.Net.bconn = br
		first, rerr = b, err
		return true
	})
	if cl.Net.bconn == nil { // the wait failed (closed, deadline): keep a buffer, as readIdle does
		cl.borrowReader()
	}
	if err != nil {
		return 0, err
	}
	return first, rerr
}

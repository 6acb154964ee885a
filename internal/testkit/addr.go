package testkit

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// FreeAddr returns a loopback address ("tcp" or "udp") no one listens on (yet).
func FreeAddr(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

package scenarios

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer answers every line with its name and returns its address.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := c.Write([]byte(name + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// ask connects through b and returns the upstream that answered, and the connection.
func ask(t *testing.T, b *balancer) (string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = c.Write([]byte("who\n"))
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", c // closed: no upstream
	}
	return line[:len(line)-1], c
}

func TestBalancer(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there: its dial fails
	ups := func() []upstream { return []upstream{{"a", a}, {"dead", deadAddr}, {"b", b}} }

	t.Run("round robin skips what it cannot dial", func(t *testing.T) {
		lb, err := newBalancer(ups, nil, false)
		require.NoError(t, err)
		defer lb.Close()
		seen := map[string]int{}
		for range 6 {
			who, _ := ask(t, lb)
			seen[who]++
		}
		require.Len(t, seen, 2, "%v", seen)
		require.Positive(t, seen["a"])
		require.Positive(t, seen["b"])
	})

	t.Run("failover stays on the first upstream that is up", func(t *testing.T) {
		lb, err := newBalancer(ups, nil, true)
		require.NoError(t, err)
		defer lb.Close()
		for range 3 {
			who, _ := ask(t, lb)
			require.Equal(t, "a", who)
		}
		lb.Down("a")
		who, _ := ask(t, lb)
		require.Equal(t, "b", who)
	})

	t.Run("down drops the upstream's connections; cut drops all and refuses", func(t *testing.T) {
		lb, err := newBalancer(func() []upstream { return []upstream{{"a", a}} }, nil, false)
		require.NoError(t, err)
		defer lb.Close()
		who, c := ask(t, lb)
		require.Equal(t, "a", who)
		lb.Down("a")
		_, err = bufio.NewReader(c).ReadString('\n')
		require.Error(t, err, "the connection was dropped")
		who, _ = ask(t, lb)
		require.Empty(t, who, "and no new one goes there")
		lb.Up("a")
		who, c = ask(t, lb)
		require.Equal(t, "a", who)
		lb.Cut()
		_, err = bufio.NewReader(c).ReadString('\n')
		require.Error(t, err)
		who, _ = ask(t, lb)
		require.Empty(t, who)
		lb.Restore()
		who, _ = ask(t, lb)
		require.Equal(t, "a", who)
	})

	t.Run("a failing health check takes an upstream out", func(t *testing.T) {
		var bHealthy atomic.Bool
		lb, err := newBalancer(func() []upstream { return []upstream{{"a", a}, {"b", b}} },
			func(_ context.Context, name string) bool { return name == "a" || bHealthy.Load() }, false)
		require.NoError(t, err)
		defer lb.Close()
		require.Eventually(t, func() bool {
			lb.mu.Lock()
			defer lb.mu.Unlock()
			return lb.failing["b"] >= healthFall
		}, 2*time.Second, 10*time.Millisecond, "b fails its checks")
		for range 4 {
			who, _ := ask(t, lb)
			require.Equal(t, "a", who)
		}
		bHealthy.Store(true)
		require.Eventually(t, func() bool { who, _ := ask(t, lb); return who == "b" }, 2*time.Second, 10*time.Millisecond)
	})
}

package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/internal/testkit"
	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// The idle-connection benchmark: N devices log in and subscribe to their
// service and reply topics as the device SDK does, then stay silent; the
// broker's RSS, heap and stack per connection are reported. The clients run
// in a child process (this test binary, re-executed), so the broker's
// figures are its own.
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x ./platform/broker/
//	GALE_IDLE_CONNS=10000,50000 GALE_IDLE_HEAPPROFILE=/tmp/idle.pprof go test -run '^$' -bench IdleConnections -benchtime 1x ./platform/broker/
//
// GALE_IDLE_CONNS lists the connection counts (default 10000);
// GALE_IDLE_HEAPPROFILE writes a heap profile of the idle state (for the
// last N); GALE_IDLE_READ_BUFFER, GALE_IDLE_WRITE_BUFFER and
// GALE_IDLE_PENDING override readBufferSize, writeBufferSize and
// maxPendingWrites, to measure one option at a time; GALE_IDLE_NOSUB=1
// leaves the devices unsubscribed.

// idleSecret is the secret of every device of the benchmark.
const idleSecret = "idle-secret"

// idleDevices serves any device of the test product as enabled with
// idleSecret, so that 50,000 devices need no registry rows.
type idleDevices struct{ *registry.Registry }

func (d idleDevices) Device(pk, dk string) (api.Device, bool) {
	if pk != testProduct {
		return api.Device{}, false
	}
	return api.Device{ProductKey: pk, DeviceKey: dk, Secret: idleSecret, Enabled: true, Org: "org"}, true
}

func BenchmarkIdleConnections(b *testing.B) {
	counts := []int{10000}
	if v := os.Getenv("GALE_IDLE_CONNS"); v != "" {
		counts = counts[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			require.NoError(b, err, "GALE_IDLE_CONNS")
			counts = append(counts, n)
		}
	}
	for i, n := range counts {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			profile := ""
			if i == len(counts)-1 {
				profile = os.Getenv("GALE_IDLE_HEAPPROFILE")
			}
			for range b.N {
				idleRun(b, n, profile)
			}
		})
	}
}

// raiseFileLimit lets this process hold n more descriptors.
func raiseFileLimit(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	want := uint64(n + 1024)
	if lim.Cur >= want {
		return nil
	}
	lim.Cur = want
	if lim.Max < want {
		lim.Max = want // needs CAP_SYS_RESOURCE
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w", want, err)
	}
	return nil
}

// idleGCs is how many collections run before a measurement (GALE_IDLE_GCS, default 5).
var idleGCs = func() int {
	if n, err := strconv.Atoi(os.Getenv("GALE_IDLE_GCS")); err == nil {
		return n
	}
	return 5
}()

// idleMem is the process's memory at one moment.
type idleMem struct {
	rss, heap, stack uint64 // bytes
	goroutines       int
}

func measureIdle() idleMem {
	// A GC shrinks a goroutine stack by half when a quarter of it is used;
	// an idle process collects at least every 2 minutes, so several
	// collections show the stacks an idle broker settles at.
	for range idleGCs {
		runtime.GC()
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := testkit.RSS() // 0 where it cannot be read
	return idleMem{rss: rss, heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func idleRun(b *testing.B, n int, profile string) {
	b.StopTimer()
	if err := raiseFileLimit(n + 100); err != nil {
		b.Skipf("%d connections do not fit: %v", n, err)
	}
	r := startIdleRig(b, nil)
	before := measureIdle()

	cmd := exec.Command(os.Args[0], "-test.run", "^TestIdleClientsHelper$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "GALE_IDLE_HELPER_ADDR="+r.b.Addr(), "GALE_IDLE_HELPER_N="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	cmd.Stderr = os.Stderr
	start := time.Now()
	require.NoError(b, cmd.Start())
	defer func() {
		stdin.Close() // the helper exits and its connections close
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if sc.Text() == "idle-ready" {
			ready = true
			break
		}
		b.Log("client helper: " + sc.Text())
	}
	require.True(b, ready, "the client helper did not get its connections up")
	require.Eventually(b, func() bool { return testutil.ToFloat64(r.b.m.sessions) == float64(n) }, time.Minute, 50*time.Millisecond)
	up := time.Since(start)
	time.Sleep(2 * time.Second) // let the connect burst's garbage go
	after := measureIdle()
	require.NoError(b, testkit.WriteHeapProfile(profile))
	per := func(a, c uint64) float64 { return (float64(a) - float64(c)) / float64(n) }
	b.ReportMetric(per(after.rss, before.rss)/1024, "rss-KiB/conn")
	b.ReportMetric(per(after.heap, before.heap), "heap-B/conn")
	b.ReportMetric(per(after.stack, before.stack), "stack-B/conn")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/conn")
	b.ReportMetric(float64(n)/up.Seconds(), "connects/s")
	b.Logf("%d idle connections: RSS %d → %d MiB, heap in use %d → %d MiB, stacks %d → %d MiB, goroutines %d → %d",
		n, before.rss>>20, after.rss>>20, before.heap>>20, after.heap>>20, before.stack>>20, after.stack>>20, before.goroutines, after.goroutines)
}

// startIdleRig starts a broker whose devices are idleDevices (with
// measurepoints P0…P9), with the default configuration changed by mutate
// and the GALE_IDLE_* variables.
func startIdleRig(b *testing.B, mutate func(*Config)) *rig {
	m := api.ThingModel{Services: []api.Service{{ID: "stop"}}}
	for i := range 10 {
		m.Measurepoints = append(m.Measurepoints, api.Measurepoint{ID: fmt.Sprintf("P%d", i), Type: api.TypeFloat})
	}
	reg := testRegistry(b, m)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	for env, v := range map[string]*int{
		"GALE_IDLE_READ_BUFFER":  &cfg.ReadBufferSize,
		"GALE_IDLE_WRITE_BUFFER": &cfg.WriteBufferSize,
		"GALE_IDLE_PENDING":      &cfg.MaxPendingWrites,
	} {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			require.NoError(b, err, env)
			*v = n
		}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b.Logf("readBufferSize %d, writeBufferSize %d, maxPendingWrites %d", cfg.ReadBufferSize, cfg.WriteBufferSize, cfg.MaxPendingWrites)
	prod := &fakeProducer{}
	br, err := New(cfg, idleDevices{reg}, prod, quietTestLogger(), prometheusRegistry())
	require.NoError(b, err)
	require.NoError(b, br.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return &rig{b: br, reg: reg, prod: prod}
}

// TestIdleClientsHelper is the client side of BenchmarkIdleConnections,
// run in a child process: it logs in GALE_IDLE_HELPER_N devices, subscribes
// each as the SDK does, prints "idle-ready" and holds the connections
// silently until its stdin closes. Without the variables it does nothing.
func TestIdleClientsHelper(t *testing.T) {
	addr := os.Getenv("GALE_IDLE_HELPER_ADDR")
	if addr == "" {
		t.Skip("the client side of BenchmarkIdleConnections")
	}
	n, err := strconv.Atoi(os.Getenv("GALE_IDLE_HELPER_N"))
	require.NoError(t, err)
	require.NoError(t, raiseFileLimit(n+100))
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := idleClient(addr, i)
				if err != nil {
					select {
					case errs <- fmt.Errorf("device %d: %w", i, err):
					default:
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	fmt.Println("idle-ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

// idleClientsPerAddr is how many connections one loopback source address
// carries (the ephemeral port range is about 28,000 wide).
const idleClientsPerAddr = 20000

// idleClient logs in device i from 127.0.0.x and subscribes to its topics
// as the device SDK does, with raw MQTT 3.1.1 packets and no goroutine.
func idleClient(addr string, i int) (net.Conn, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i/idleClientsPerAddr))}
	d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second, Control: bindNoPort}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { c.Close(); return nil, err }
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	dk := fmt.Sprintf("idle%d", i)
	cred := api.Sign(dk, testProduct, dk, idleSecret, time.Now().UnixMilli())
	if _, err := c.Write(connectPacket(cred, 600)); err != nil {
		return fail(err)
	}
	ack := make([]byte, 5)
	if _, err := io.ReadFull(c, ack[:4]); err != nil {
		return fail(fmt.Errorf("read CONNACK: %w", err))
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fail(fmt.Errorf("CONNACK %x", ack[:4]))
	}
	if os.Getenv("GALE_IDLE_NOSUB") != "" { // logged in, not subscribed: what the subscriptions cost
		_ = c.SetDeadline(time.Time{})
		return c, nil
	}
	filters := []string{api.DevicePrefix(testProduct, dk) + "#", api.SessionPrefix(testProduct, dk) + "#"}
	if _, err := c.Write(subscribePacket(1, filters, 1)); err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(c, ack); err != nil { // SUBACK: 90 04 id id rc rc... (2 filters: 6 bytes)
		return fail(fmt.Errorf("read SUBACK: %w", err))
	}
	rest := make([]byte, 1)
	if _, err := io.ReadFull(c, rest); err != nil {
		return fail(err)
	}
	if ack[0] != 0x90 || ack[4] > 2 || rest[0] > 2 {
		return fail(fmt.Errorf("SUBACK %x%x", ack, rest))
	}
	_ = c.SetDeadline(time.Time{})
	_ = c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT left behind for the next run
	return c, nil
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT, so that a socket bound to a
// source address takes its port at connect, by the whole 4-tuple, rather
// than a port of its own at bind (which runs out after ~28,000).
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func mqttString(buf *bytes.Buffer, s string) {
	_ = binary.Write(buf, binary.BigEndian, uint16(len(s)))
	buf.WriteString(s)
}

// fixedHeader is an MQTT fixed header: the type and flags byte, then the
// remaining length n.
func fixedHeader(header byte, n int) []byte {
	b := []byte{header}
	for {
		x := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			x |= 0x80
		}
		b = append(b, x)
		if n == 0 {
			return b
		}
	}
}

func mqttPacket(header byte, body []byte) []byte {
	return append(fixedHeader(header, len(body)), body...)
}

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session and cred.
func connectPacket(cred api.Credentials, keepalive uint16) []byte {
	var body bytes.Buffer
	mqttString(&body, "MQTT")
	body.WriteByte(4)    // protocol level 3.1.1
	body.WriteByte(0xC2) // user name, password, clean session
	_ = binary.Write(&body, binary.BigEndian, keepalive)
	mqttString(&body, cred.ClientID)
	mqttString(&body, cred.Username)
	mqttString(&body, cred.Password)
	return mqttPacket(0x10, body.Bytes())
}

// subscribePacket is an MQTT 3.1.1 SUBSCRIBE to filters at qos.
func subscribePacket(id uint16, filters []string, qos byte) []byte {
	var body bytes.Buffer
	_ = binary.Write(&body, binary.BigEndian, id)
	for _, f := range filters {
		mqttString(&body, f)
		body.WriteByte(qos)
	}
	return mqttPacket(0x82, body.Bytes())
}

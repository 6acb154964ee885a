package testkit

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// MQTTProxy forwards MQTT connections to a broker. Cut drops them and
// refuses new ones until Restore; it records what clients publish.
type MQTTProxy struct {
	l        net.Listener
	upstream string

	mu        sync.Mutex
	cut       bool
	conns     map[net.Conn]bool
	published []Published
}

// Published is one PUBLISH a client sent through the proxy.
type Published struct {
	Topic   string
	Payload []byte
}

// NewMQTTProxy listens on a free loopback port and forwards to upstream
// until the test ends.
func NewMQTTProxy(tb testing.TB, upstream string) *MQTTProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	p := &MQTTProxy{l: l, upstream: upstream, conns: map[net.Conn]bool{}}
	go p.accept()
	tb.Cleanup(func() {
		l.Close()
		p.Cut()
	})
	return p
}

// Addr is the address clients dial.
func (p *MQTTProxy) Addr() string { return p.l.Addr().String() }

func (p *MQTTProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() {
			_, _ = io.Copy(c, up)
			c.Close()
		}()
		go p.forward(c, up)
	}
}

// forward copies MQTT packets from client to broker, recording PUBLISHes.
func (p *MQTTProxy) forward(c, up net.Conn) {
	defer up.Close()
	r := bufio.NewReader(c)
	for {
		h, err := r.ReadByte()
		if err != nil {
			return
		}
		frame := []byte{h}
		n, mult := 0, 1
		for range 4 {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			frame = append(frame, b)
			n += int(b&127) * mult
			mult *= 128
			if b&128 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if h>>4 == 3 && len(body) >= 2 { // PUBLISH
			tl := int(binary.BigEndian.Uint16(body))
			rest := body[2+tl:]
			if (h>>1)&3 > 0 {
				rest = rest[2:] // packet id
			}
			p.mu.Lock()
			p.published = append(p.published, Published{Topic: string(body[2 : 2+tl]), Payload: rest})
			p.mu.Unlock()
		}
		if _, err := up.Write(append(frame, body...)); err != nil {
			return
		}
	}
}

// Cut drops every connection and refuses new ones.
func (p *MQTTProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore accepts connections again.
func (p *MQTTProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Published returns what clients published on topic.
func (p *MQTTProxy) Published(topic string) []Published {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Published
	for _, m := range p.published {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

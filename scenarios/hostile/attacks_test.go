package hostile

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/bus"
	"github.com/gale-iot/gale/platform/registry"
)

// Series the attacks are counted under.
func connectRefused(reason string) string {
	return `gale_broker_rejected_connects_total{reason="` + reason + `"}`
}

func messageRefused(reason string) string {
	return `gale_broker_rejected_messages_total{reason="` + reason + `"}`
}

// Failed logins are counted as a bad signature or an unknown device until
// the device or the address is banned, then as the ban.
var loginFailures = []string{
	connectRefused("bad_signature"), connectRefused("unknown_device"), connectRefused("banned_device"), connectRefused("banned_ip"),
}

// attacks is the suite. Each attack comes from a loopback address of its
// own (127.0.0.x), so bans hit only the attacker.
var attacks = []attack{
	{name: "half-open connection (never sends CONNECT)", counts: []string{connectRefused("connect_timeout")}, run: halfOpen},
	{name: "slow CONNECT (a byte every 500 ms)", counts: []string{connectRefused("connect_timeout")}, run: slowConnect},
	{name: "CONNECT announcing 256 MiB", counts: []string{connectRefused("connect_too_large")}, run: bigConnect},
	{name: "first packet not a CONNECT", counts: []string{connectRefused("not_connect")}, run: notConnect},
	{name: "malformed remaining length", counts: []string{connectRefused("malformed")}, run: malformedLength},
	{name: "truncated CONNECT, then close", run: truncatedConnect},
	{name: "password brute force on one device", counts: loginFailures, run: bruteForce},
	{name: "login spray over device keys from one address", counts: loginFailures, run: loginSpray},
	{name: "replayed signed login", counts: []string{connectRefused("replay")}, run: replayLogin},
	{name: "client id longer than the cap", counts: []string{connectRefused("client_id_too_long")}, run: longClientID},
	{name: "session takeover with another device's client id", run: takeover},
	{name: "Will on another device's service topic", counts: []string{connectRefused("will_acl")}, run: foreignWill},
	{name: "retained Will", counts: []string{connectRefused("will_retain")}, run: retainedWill},
	{name: "retained PUBLISH", counts: []string{messageRefused("retain")}, run: retainedPublish},
	{name: "wildcard and foreign subscriptions", counts: []string{messageRefused("acl_subscribe")}, run: wildcardSubscribe},
	{name: "publish on another device's topics / forged service call", counts: []string{messageRefused("acl_publish")}, run: crossPublish},
	{name: "forged command reply (another device's command id)", counts: []string{`gale_command_replies_ignored_total{reason="wrong_device"}`}, run: forgedReply},
	{name: "sub-device with a forged or stale signature", counts: []string{messageRefused("bad_subdevice"), messageRefused("stale_timestamp")}, run: forgedSubDevice},
	{name: "sub-device of another org, correctly signed", counts: []string{messageRefused("subdevice_org")}, run: crossOrgSubDevice},
	{name: "oversize payload after login", counts: []string{messageRefused("too_large")}, run: oversizePayload},
	{name: "disabled device keeps its session / gets commands", counts: []string{connectRefused("session_revoked")}, run: disabledDevice},
	{name: "HTTP without or with a forged token", counts: []string{`gale_http_requests_total{code="401"}`}, run: badTokens},
	{name: "browser Origin header on the query API", run: originHeader},
	{name: "PromQL forms that crashed the engine", run: crashQueries},
	{name: "expensive PromQL", counts: []string{`gale_query_refused_total`, `gale_http_requests_total{handler="/prometheus/",code="400"}`}, run: expensiveQueries},
	{name: "slow HTTP headers (slowloris)", run: slowloris},
	{name: "oversize HTTP body", run: bigBody},
	{name: "forged registry records on Kafka", counts: []string{`gale_registry_changes_rejected_total{reason="bad_mac"}`, `gale_registry_changes_rejected_total{reason="malformed"}`}, run: forgedRecords},
}

// from returns a dialer bound to loopback address 127.0.0.{host}.
func from(host int) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(host))}, Timeout: 5 * time.Second}
}

var lastTS atomic.Int64

// stamp is a login timestamp: now, and distinct for every login of the suite
// (a signature is accepted once).
func stamp() int64 {
	for {
		last, now := lastTS.Load(), time.Now().UnixMilli()
		ts := max(now, last+1)
		if lastTS.CompareAndSwap(last, ts) {
			return ts
		}
	}
}

// connectPacket encodes an MQTT 3.1.1 CONNECT with creds; edit changes it before encoding.
func connectPacket(creds api.Credentials, edit func(*packets.ConnectParams)) []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: creds.ClientID,
		UsernameFlag: true, Username: []byte(creds.Username), PasswordFlag: true, Password: []byte(creds.Password),
	}}
	if edit != nil {
		edit(&pk.Connect)
	}
	var b bytes.Buffer
	if err := pk.ConnectEncode(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// signed returns fresh credentials of device d.
func signed(d api.Device) api.Credentials {
	return api.Sign(d.DeviceKey, d.ProductKey, d.DeviceKey, d.Secret, stamp())
}

// rawConnect sends a CONNECT from 127.0.0.{host} and returns the connection
// and the CONNACK's return code (-1 when the broker closed it without one).
func (e *env) rawConnect(host int, connect []byte) (net.Conn, int, error) {
	c, err := from(host).Dial("tcp", e.mqtt)
	if err != nil {
		return nil, -1, err
	}
	if _, err := c.Write(connect); err != nil {
		return c, -1, nil
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0]>>4 != packets.Connack {
		return c, -1, nil
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, int(ack[3]), nil
}

// closedWithin reports whether the broker closes c within d (reading and
// discarding whatever it sends).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// rawAttempts opens n connections from 127.0.0.{host}, writes what send
// writes on each, and counts those the broker has not closed within d.
func (e *env) rawAttempts(host, n int, d time.Duration, send func(net.Conn)) outcome {
	o := outcome{attempts: n}
	var wg sync.WaitGroup
	var open atomic.Int64
	for range n {
		c, err := from(host).Dial("tcp", e.mqtt)
		if err != nil {
			o.through++
			o.notes = append(o.notes, "dial: "+err.Error())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			send(c)
			if !closedWithin(c, d) {
				open.Add(1)
			}
		}()
	}
	wg.Wait()
	o.through += int(open.Load())
	if open.Load() > 0 {
		o.notes = append(o.notes, fmt.Sprintf("%d connections still open after %s", open.Load(), d))
	}
	return o
}

func halfOpen(_ context.Context, e *env, p party) outcome {
	return e.rawAttempts(p.host, 200, 6*time.Second, func(net.Conn) {})
}

func slowConnect(_ context.Context, e *env, p party) outcome {
	pkt := connectPacket(signed(p.attacker), nil)
	return e.rawAttempts(p.host, 20, 8*time.Second, func(c net.Conn) {
		for i := range pkt {
			if _, err := c.Write(pkt[i : i+1]); err != nil {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

func bigConnect(_ context.Context, e *env, p party) outcome {
	junk := bytes.Repeat([]byte{'x'}, 4096)
	return e.rawAttempts(p.host, 300, 3*time.Second, func(c net.Conn) {
		// Remaining length 268,435,455 (the most MQTT can say), then junk.
		_, _ = c.Write(append([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, junk...))
	})
}

func notConnect(_ context.Context, e *env, p party) outcome {
	return e.rawAttempts(p.host, 50, 3*time.Second, func(c net.Conn) {
		// A QoS 0 PUBLISH before any CONNECT.
		_, _ = c.Write([]byte{0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'})
	})
}

func malformedLength(_ context.Context, e *env, p party) outcome {
	return e.rawAttempts(p.host, 50, 3*time.Second, func(c net.Conn) {
		_, _ = c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	})
}

func truncatedConnect(_ context.Context, e *env, p party) outcome {
	pkt := connectPacket(signed(p.attacker), nil)
	o := e.rawAttempts(p.host, 50, 5*time.Second, func(c net.Conn) {
		_, _ = c.Write(pkt[:len(pkt)/2])
	})
	return o
}

// logins makes n CONNECTs from 127.0.0.{host} with the credentials creds
// returns for attempt i, and counts those accepted.
func (e *env) logins(host, n int, creds func(i int) api.Credentials, edit func(*packets.ConnectParams)) outcome {
	o := outcome{attempts: n}
	for i := range n {
		c, code, err := e.rawConnect(host, connectPacket(creds(i), edit))
		if err != nil {
			o.notes = append(o.notes, err.Error())
			o.through++
			continue
		}
		if code == 0 {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("attempt %d accepted", i))
		}
		c.Close()
	}
	return o
}

func bruteForce(_ context.Context, e *env, p party) outcome {
	d := p.victim
	o := e.logins(p.host, 30, func(i int) api.Credentials {
		return api.Sign(d.DeviceKey, d.ProductKey, d.DeviceKey, fmt.Sprintf("guess-%d", i), stamp())
	}, nil)
	return e.requireBan(o, "device")
}

func loginSpray(_ context.Context, e *env, p party) outcome {
	o := e.logins(p.host, 40, func(i int) api.Credentials {
		return api.Sign("x", "hostile", fmt.Sprintf("nobody-%d", i), "guess", stamp())
	}, nil)
	return e.requireBan(o, "ip")
}

// requireBan marks o as got through when no ban of scope was counted.
func (e *env) requireBan(o outcome, scope string) outcome {
	if e.h.Metric(e.t, `gale_broker_login_bans_total{scope="`+scope+`"}`) < 1 {
		o.through++
		o.notes = append(o.notes, "no "+scope+" ban counted")
	}
	return o
}

func replayLogin(_ context.Context, e *env, p party) outcome {
	creds := signed(p.victim)
	c, code, err := e.rawConnect(p.host, connectPacket(creds, nil))
	if err != nil || code != 0 {
		return outcome{attempts: 1, through: 1, notes: []string{fmt.Sprintf("the first, genuine login was refused (%d, %v)", code, err)}}
	}
	c.Close()
	// A captured CONNECT sent again, within the skew window.
	return e.logins(p.host, 10, func(int) api.Credentials { return creds }, nil)
}

func longClientID(_ context.Context, e *env, p party) outcome {
	d := p.attacker
	return e.logins(p.host, 10, func(int) api.Credentials {
		return api.Sign(strings.Repeat("i", 2000), d.ProductKey, d.DeviceKey, d.Secret, stamp())
	}, nil)
}

// pahoClient connects device d from 127.0.0.{host} with a fresh
// signature; lost is called if the broker drops it.
func (e *env) pahoClient(d api.Device, host int, lost func(error)) (paho.Client, error) {
	return e.pahoConnect(signed(d), host, lost)
}

// pahoConnect connects with creds from 127.0.0.{host}.
func (e *env) pahoConnect(creds api.Credentials, host int, lost func(error)) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker("tcp://" + e.mqtt).SetDialer(from(host)).
		SetClientID(creds.ClientID).SetUsername(creds.Username).SetPassword(creds.Password).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(5 * time.Second)
	if lost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { lost(err) })
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", creds.Username, tok.Error())
	}
	return c, nil
}

// watcher is a device connection that records what it receives on its
// service topics, and whether it was dropped.
type watcher struct {
	client   paho.Client
	received atomic.Int64
	dropped  atomic.Bool
}

func (e *env) watch(d api.Device, host int, creds api.Credentials) (*watcher, error) {
	w := &watcher{}
	c, err := e.pahoConnect(creds, host, func(error) { w.dropped.Store(true) })
	if err != nil {
		return nil, err
	}
	w.client = c
	tok := c.Subscribe(api.DevicePrefix(d.ProductKey, d.DeviceKey)+"thing/service/+", 1, func(paho.Client, paho.Message) { w.received.Add(1) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s: %v", d.DeviceKey, tok.Error())
	}
	return w, nil
}

func takeover(_ context.Context, e *env, p party) outcome {
	v, a, ts := p.victim, p.attacker, stamp()
	w, err := e.watch(v, p.host, api.Sign("shared-id", v.ProductKey, v.DeviceKey, v.Secret, ts))
	if err != nil {
		return setupFailed(err)
	}
	defer w.client.Disconnect(0)
	o := outcome{attempts: 1}
	// The attacker signs, with its own secret, the very client id the victim logged in with.
	if c, err := e.pahoConnect(api.Sign("shared-id", a.ProductKey, a.DeviceKey, a.Secret, ts), p.host, nil); err == nil {
		c.Disconnect(0)
	}
	time.Sleep(500 * time.Millisecond)
	if w.dropped.Load() || !w.client.IsConnectionOpen() {
		o.through = o.attempts
		o.notes = append(o.notes, "the victim "+v.DeviceKey+" lost its session")
	}
	return o
}

// foreignWill sets a Will that calls the victim's stop service, then drops
// the connection without DISCONNECT; the victim must receive nothing.
func foreignWill(_ context.Context, e *env, p party) outcome {
	v := p.victim
	w, err := e.watch(p.victim, p.host, signed(p.victim))
	if err != nil {
		return setupFailed(err)
	}
	defer w.client.Disconnect(0)
	will := func(c *packets.ConnectParams) {
		c.WillFlag, c.WillQos = true, 1
		c.WillTopic = api.ServiceTopic(v.ProductKey, v.DeviceKey, "stop")
		c.WillPayload = []byte(`{"id":"will","method":"thing.service.stop","params":{}}`)
	}
	o := outcome{attempts: 10}
	for range o.attempts {
		c, _, err := e.rawConnect(p.host, connectPacket(signed(p.attacker), will))
		if err == nil {
			c.Close() // without DISCONNECT: the broker would publish the Will
		}
	}
	time.Sleep(time.Second)
	if n := w.received.Load(); n > 0 {
		o.through = int(n)
		o.notes = append(o.notes, fmt.Sprintf("the victim received %d forged service calls", n))
	}
	return o
}

func retainedWill(_ context.Context, e *env, p party) outcome {
	a := p.attacker
	return e.logins(p.host, 10, func(int) api.Credentials { return signed(p.attacker) }, func(c *packets.ConnectParams) {
		c.WillFlag, c.WillQos, c.WillRetain = true, 1, true
		c.WillTopic = api.MeasurepointPostTopic(a.ProductKey, a.DeviceKey)
		c.WillPayload = []byte(`{"id":"1","params":{"measurepoints":{"V":1}}}`)
	})
}

// publishes makes n publishes from fresh attacker sessions (a refused
// QoS 1 publish closes an MQTT 3.1.1 connection).
func (e *env) publishes(p party, n int, retained bool, topic func(i int) string, payload []byte) outcome {
	o := outcome{attempts: n}
	for i := range n {
		c, err := e.pahoClient(p.attacker, p.host, nil)
		if err != nil {
			o.notes = append(o.notes, err.Error())
			continue
		}
		c.Publish(topic(i), 1, retained, payload).WaitTimeout(2 * time.Second)
		c.Disconnect(0)
	}
	return o
}

func retainedPublish(_ context.Context, e *env, p party) outcome {
	a := p.attacker
	return e.publishes(p, 10, true, func(int) string { return api.MeasurepointPostTopic(a.ProductKey, a.DeviceKey) },
		[]byte(`{"id":"1","params":{"measurepoints":{"V":1}}}`))
}

func wildcardSubscribe(_ context.Context, e *env, p party) outcome {
	v := p.victim
	filters := []string{"#", "/sys/#", "/sys/+/+/thing/service/+", api.DevicePrefix(v.ProductKey, v.DeviceKey) + "#", "$SYS/#", "/ext/session/#"}
	c, err := e.pahoClient(p.attacker, p.host, nil)
	if err != nil {
		return setupFailed(err)
	}
	defer c.Disconnect(0)
	o := outcome{attempts: len(filters)}
	for _, f := range filters {
		tok := c.Subscribe(f, 1, nil)
		tok.WaitTimeout(5 * time.Second)
		if code := tok.(*paho.SubscribeToken).Result()[f]; code != 0x80 {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("%s granted (%d)", f, code))
		}
	}
	return o
}

// crossPublish publishes telemetry on the victim's topics, a reply on the
// victim's service reply topic and a service call on the attacker's own
// downlink topic; none may be stored or delivered.
func crossPublish(ctx context.Context, e *env, p party) outcome {
	a, v := p.attacker, p.victim
	topics := []string{
		api.MeasurepointPostTopic(v.ProductKey, v.DeviceKey),
		api.DevicePrefix(v.ProductKey, v.DeviceKey) + "thing/measurepoint/resume",
		api.ServiceTopic(v.ProductKey, v.DeviceKey, "stop") + "_reply",
		api.ServiceTopic(a.ProductKey, a.DeviceKey, "stop"),
		api.MeasurepointPostTopic(a.ProductKey, a.DeviceKey) + "_reply",
		"/sys/../" + v.ProductKey + "/" + v.DeviceKey + "/thing/measurepoint/post",
	}
	o := e.publishes(p, len(topics), false, func(i int) string { return topics[i] },
		[]byte(`{"id":"x","method":"thing.measurepoint.post","params":{"measurepoints":{"V":666}}}`))
	time.Sleep(time.Second)
	if n := e.h.Query(e.t, `count(V{device="`+v.DeviceKey+`"})`, time.Time{}); len(n) > 0 {
		o.through++
		o.notes = append(o.notes, "the victim has samples it never sent")
	}
	return o
}

func forgedReply(ctx context.Context, e *env, p party) outcome {
	v, a := p.victim, p.attacker
	w, err := e.watch(p.victim, p.host, signed(p.victim))
	if err != nil {
		return setupFailed(err)
	}
	defer w.client.Disconnect(0)
	var cmd struct {
		CommandID string `json:"commandId"`
	}
	st := e.h.Do(e.t, http.MethodPost, "/api/v1/devices/"+v.ProductKey+"/"+v.DeviceKey+"/services/stop?async=true", map[string]any{}, &cmd)
	if st/100 != 2 || cmd.CommandID == "" {
		return outcome{attempts: 1, through: 1, notes: []string{fmt.Sprintf("command not created: %d", st)}}
	}
	c, err := e.pahoClient(p.attacker, p.host, nil)
	if err != nil {
		return setupFailed(err)
	}
	defer c.Disconnect(0)
	o := outcome{attempts: 5}
	reply := fmt.Appendf(nil, `{"id":%q,"code":200,"data":{"stopped":true}}`, cmd.CommandID)
	for range o.attempts {
		c.Publish(api.ServiceTopic(a.ProductKey, a.DeviceKey, "stop")+"_reply", 1, false, reply).WaitTimeout(2 * time.Second)
	}
	time.Sleep(500 * time.Millisecond)
	var got api.Command
	e.h.Do(e.t, http.MethodGet, "/api/v1/commands/"+cmd.CommandID, nil, &got)
	if got.RepliedAt != 0 {
		o.through = o.attempts
		o.notes = append(o.notes, fmt.Sprintf("the victim's command was completed by the attacker: %+v", got))
	}
	return o
}

func forgedSubDevice(_ context.Context, e *env, p party) outcome {
	f := e.foreign
	return e.subDeviceRequests(p, []api.SubDeviceAuth{
		api.SignSubDevice(f.ProductKey, f.DeviceKey, "not-the-secret", stamp()),                          // forged
		api.SignSubDevice(f.ProductKey, f.DeviceKey, f.Secret, time.Now().Add(-2*time.Hour).UnixMilli()), // stale (captured)
	})
}

// crossOrgSubDevice is a gateway that knows the secret of another org's
// device (a leaked or shared secret) and signs it correctly, fresh.
func crossOrgSubDevice(_ context.Context, e *env, p party) outcome {
	f := e.foreign
	return e.subDeviceRequests(p, []api.SubDeviceAuth{api.SignSubDevice(f.ProductKey, f.DeviceKey, f.Secret, stamp())})
}

// subDeviceRequests sends each signed entry in a topo/add and a
// combine/login of p's gateway; an attempt gets through if it is accepted.
func (e *env) subDeviceRequests(p party, entries []api.SubDeviceAuth) outcome {
	g := p.gateway
	c, err := e.pahoClient(p.gateway, p.host, nil)
	if err != nil {
		return setupFailed(err)
	}
	defer c.Disconnect(0)
	replies := make(chan api.Reply, 16)
	c.Subscribe(api.DevicePrefix(g.ProductKey, g.DeviceKey)+"#", 1, func(_ paho.Client, m paho.Message) {
		var r api.Reply
		if json.Unmarshal(m.Payload(), &r) == nil {
			replies <- r
		}
	}).WaitTimeout(5 * time.Second)
	c.Subscribe(api.SessionPrefix(g.ProductKey, g.DeviceKey)+"#", 1, func(_ paho.Client, m paho.Message) {
		var r api.Reply
		if json.Unmarshal(m.Payload(), &r) == nil {
			replies <- r
		}
	}).WaitTimeout(5 * time.Second)
	o := outcome{attempts: 2 * len(entries)}
	for i, sub := range entries {
		for j, topic := range []string{api.TopoAddTopic(g.ProductKey, g.DeviceKey), api.SessionPrefix(g.ProductKey, g.DeviceKey) + "combine/login"} {
			var params any = sub
			if j == 0 {
				params = []api.SubDeviceAuth{sub}
			}
			b, _ := json.Marshal(api.Request{ID: fmt.Sprintf("s%d%d", i, j), Method: "x", Params: mustJSON(params)})
			c.Publish(topic, 1, false, b).WaitTimeout(2 * time.Second)
			select {
			case r := <-replies:
				if r.Code == api.CodeOK {
					o.through++
					o.notes = append(o.notes, fmt.Sprintf("%s accepted entry %d", topic, i))
				}
			case <-time.After(3 * time.Second):
				o.notes = append(o.notes, "no reply on "+topic)
			}
		}
	}
	return o
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func oversizePayload(ctx context.Context, e *env, p party) outcome {
	a := p.attacker
	c, err := e.pahoClient(p.attacker, p.host, nil)
	if err != nil {
		return setupFailed(err)
	}
	defer c.Disconnect(0)
	codes := make(chan int, 8)
	post := api.MeasurepointPostTopic(a.ProductKey, a.DeviceKey)
	c.Subscribe(post+"_reply", 1, func(_ paho.Client, m paho.Message) {
		var r api.Reply
		_ = json.Unmarshal(m.Payload(), &r)
		codes <- r.Code
	}).WaitTimeout(5 * time.Second)
	o := outcome{attempts: 5}
	pad := strings.Repeat("x", 300<<10)
	for i := range o.attempts {
		c.Publish(post, 1, false, fmt.Appendf(nil, `{"id":"%d","params":{"measurepoints":{"V":1}},"pad":%q}`, i, pad)).WaitTimeout(5 * time.Second)
		select {
		case code := <-codes:
			if code != api.CodeTooLarge {
				o.through++
				o.notes = append(o.notes, fmt.Sprintf("answered %d", code))
			}
		case <-time.After(3 * time.Second):
			if c.IsConnectionOpen() {
				o.notes = append(o.notes, "no reply")
			}
		}
	}
	return o
}

func disabledDevice(ctx context.Context, e *env, p party) outcome {
	d := p.victim
	w, err := e.watch(p.victim, p.host, signed(p.victim))
	if err != nil {
		return setupFailed(err)
	}
	defer w.client.Disconnect(0)
	o := outcome{attempts: 1}
	path := "/api/v1/devices/" + d.ProductKey + "/" + d.DeviceKey
	if st := e.h.Do(e.t, http.MethodPatch, path, map[string]any{"enabled": false}, nil); st != http.StatusOK {
		return outcome{attempts: 1, through: 1, notes: []string{fmt.Sprintf("disable answered %d", st)}}
	}
	deadline := time.Now().Add(3 * time.Second)
	for w.client.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if w.client.IsConnectionOpen() {
		o.through++
		o.notes = append(o.notes, "the disabled device is still connected after 3 s")
	}
	// It cannot log in again.
	if c, err := e.pahoClient(p.victim, p.host, nil); err == nil {
		c.Disconnect(0)
		o.through++
		o.notes = append(o.notes, "the disabled device logged in again")
	}
	return o
}

// httpGet sends a GET with token (none when empty) and extra headers and returns the status (0 on a transport error).
func (e *env) httpGet(path, token string, header http.Header) int {
	req, err := http.NewRequest(http.MethodGet, e.h.BaseURL+path, nil)
	if err != nil {
		return 0
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func badTokens(_ context.Context, e *env, p party) outcome {
	tokens := []string{"", "not-a-token", e.h.Token + "x", strings.Repeat("A", 4096), "Bearer " + e.h.Token}
	o := outcome{attempts: len(tokens)}
	for _, tok := range tokens {
		if st := e.httpGet("/api/v1/devices", tok, nil); st != http.StatusUnauthorized {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("token %.20q answered %d", tok, st))
		}
	}
	return o
}

func originHeader(_ context.Context, e *env, p party) outcome {
	o := outcome{attempts: 3}
	for _, path := range []string{"/prometheus/api/v1/query?query=up", "/prometheus/api/v1/labels", "/api/v1/devices"} {
		st := e.httpGet(path, e.h.Token, http.Header{"Origin": {"https://evil.example"}})
		if st == 0 || st >= 500 {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("%s with Origin answered %d", path, st))
		}
	}
	return o
}

// crashQueries are PromQL forms that reached engine panics.
func crashQueries(_ context.Context, e *env, p party) outcome {
	qs := []string{`rate(V[5m:])`, `max_over_time(V[1h:])`, `sum(rate(V[5m:]))`, `V[5m:] @ end()`, `label_replace(V, "a", "$1", "__name__", "(.*")`}
	o := outcome{attempts: len(qs)}
	for _, q := range qs {
		st := e.httpGet("/prometheus/api/v1/query?query="+url.QueryEscape(q), e.h.Token, nil)
		if st == 0 || st >= 500 {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("%s answered %d", q, st))
		}
	}
	return o
}

func expensiveQueries(_ context.Context, e *env, p party) outcome {
	now := time.Now()
	qs := []string{
		"/prometheus/api/v1/query_range?" + url.Values{"query": {"V"}, "start": {fmt.Sprint(now.Add(-24 * time.Hour).Unix())}, "end": {fmt.Sprint(now.Unix())}, "step": {"0.001"}}.Encode(),
		"/prometheus/api/v1/query?" + url.Values{"query": {"max_over_time(V[30d:1ms])"}}.Encode(),
		"/prometheus/api/v1/query?" + url.Values{"query": {"count_over_time({__name__=~\".+\"}[30d:1s])"}}.Encode(),
	}
	o := outcome{attempts: len(qs)}
	for _, q := range qs {
		start := time.Now()
		st := e.httpGet(q, e.h.Token, nil)
		if st/100 == 2 || st == 0 {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("%s answered %d after %s", q, st, time.Since(start)))
		}
	}
	return o
}

func slowloris(_ context.Context, e *env, p party) outcome {
	o := outcome{attempts: 20}
	var wg sync.WaitGroup
	var open atomic.Int64
	addr := strings.TrimPrefix(e.h.BaseURL, "http://")
	for range o.attempts {
		c, err := from(p.host).Dial("tcp", addr)
		if err != nil {
			o.through++
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_, _ = c.Write([]byte("GET /api/v1/devices HTTP/1.1\r\nHost: x\r\n"))
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if _, err := bufio.NewReader(c).ReadByte(); err != nil {
					var ne net.Error
					if !(errors.As(err, &ne) && ne.Timeout()) {
						return // closed, or answered
					}
				} else {
					return
				}
			}
			open.Add(1)
		}()
	}
	wg.Wait()
	if n := open.Load(); n > 0 {
		o.through += int(n)
		o.notes = append(o.notes, fmt.Sprintf("%d slow clients still connected after 20 s", n))
	}
	return o
}

func bigBody(_ context.Context, e *env, p party) outcome {
	o := outcome{attempts: 3}
	for range o.attempts {
		body := io.MultiReader(strings.NewReader(`{"productKey":"hostile","deviceKey":"`), strings.NewReader(strings.Repeat("x", 32<<20)), strings.NewReader(`"}`))
		req, _ := http.NewRequest(http.MethodPost, e.h.BaseURL+"/api/v1/devices", body)
		req.Header.Set("Authorization", "Bearer "+e.h.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue // cut off: refused
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusBadRequest {
			o.through++
			o.notes = append(o.notes, fmt.Sprintf("32 MiB body answered %d", resp.StatusCode))
		}
	}
	return o
}

// forgedRecords writes registry changes to gale.registry as anyone who
// reaches the Kafka port could: a token, and a device with a known secret.
func forgedRecords(ctx context.Context, e *env, p party) outcome {
	const token = "forged-admin-token"
	sum := sha256.Sum256([]byte(token))
	changes := []api.RegistryChange{
		{Kind: api.ChangeToken, Key: hex.EncodeToString(sum[:]), TokenName: "forged", Origin: "intruder"},
		{Kind: api.ChangeDevice, Key: "hostile/planted", Origin: "intruder", Device: &api.Device{
			ProductKey: "hostile", DeviceKey: "planted", Org: "test", Site: "test-site", Secret: "known", Enabled: true}},
	}
	// An outsider's client: Gale's own producer, without the cluster key.
	w := bus.NewSyncProducer(e.h.Node.KafkaAddrs(), bus.DefaultConfig())
	defer w.Close()
	// Each change twice: as bare JSON, and in the record format with a MAC
	// made without the cluster key.
	o := outcome{attempts: 2 * len(changes)}
	for _, c := range changes {
		b, _ := json.Marshal(c)
		forged := append(append([]byte{registry.ChangeRecordVersion}, bytes.Repeat([]byte{0xab}, 32)...), b...)
		for _, v := range [][]byte{b, forged} {
			if err := w.Produce(ctx, bus.Message{Topic: api.TopicRegistry, Key: registry.ChangeKey(c), Value: v}); err != nil {
				o.notes = append(o.notes, "produce: "+err.Error())
			}
		}
	}
	time.Sleep(2 * time.Second)
	if st := e.httpGet("/api/v1/devices", token, nil); st != http.StatusUnauthorized {
		o.through++
		o.notes = append(o.notes, fmt.Sprintf("the forged token answered %d", st))
	}
	if c, code, err := e.rawConnect(p.host, connectPacket(api.Sign("planted", "hostile", "planted", "known", stamp()), nil)); err == nil {
		c.Close()
		if code == 0 {
			o.through++
			o.notes = append(o.notes, "the planted device logged in")
		}
	}
	return o
}

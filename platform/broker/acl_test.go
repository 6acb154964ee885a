package broker

import (
	"os/exec"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

func TestMayPublish(t *testing.T) {
	h := newHook(DefaultConfig(), nil, nil, nil, nil, nil)
	gw := &session{pk: "gw", dk: "g1", subs: map[string]string{"s/sub1": "secret"}}
	cases := []struct {
		topic string
		want  bool
	}{
		{"/sys/gw/g1/thing/measurepoint/post", true},
		{"/sys/gw/g1/thing/measurepoint/resume", true},
		{"/sys/gw/g1/thing/measurepoint/resume/batch", true},
		{"/sys/gw/g1/thing/event/alarm/post", true},
		{"/sys/gw/g1/thing/attribute/update", true},
		{"/sys/gw/g1/thing/service/stop_reply", true},
		{"/sys/gw/g1/thing/topo/add", true},
		{"/ext/session/gw/g1/combine/login", true},
		{"/ext/session/gw/g1/combine/login/batch", true},
		{"/ext/session/gw/g1/combine/logout", true},
		// Downlink: service calls and replies to uplink requests are the platform's.
		{"/sys/gw/g1/thing/service/stop", false},
		{"/sys/gw/g1/thing/measurepoint/post_reply", false},
		{"/sys/gw/g1/thing/event/alarm/post_reply", false},
		{"/sys/gw/g1/thing/topo/add_reply", false},
		{"/ext/session/gw/g1/combine/login_reply", false},
		// A logged-in sub-device's uplink, but no downlink and no gateway requests.
		{"/sys/s/sub1/thing/measurepoint/post", true},
		{"/sys/s/sub1/thing/service/stop_reply", true},
		{"/sys/s/sub1/thing/service/stop", false},
		{"/sys/s/sub1/thing/measurepoint/post_reply", false},
		{"/sys/s/sub1/thing/topo/add", false},
		{"/ext/session/s/sub1/combine/login", false},
		// Other devices, unknown topics, wildcards.
		{"/sys/s/sub2/thing/measurepoint/post", false},
		{"/sys/gw/g2/thing/measurepoint/post", false},
		{"/sys/gw/g1/thing/other", false},
		{"/sys/gw/g1/custom/topic", false},
		{"/sys/gw/+/thing/measurepoint/post", false},
		{"#", false},
		{"", false},
	}
	for _, c := range cases {
		t.Run(c.topic, func(t *testing.T) {
			require.Equal(t, c.want, h.mayPublish(gw, c.topic))
		})
	}
}

func TestMaySubscribe(t *testing.T) {
	h := newHook(DefaultConfig(), nil, nil, nil, nil, nil)
	gw := &session{pk: "gw", dk: "g1", subs: map[string]string{"s/sub1": "secret"}}
	for filter, want := range map[string]bool{
		"/sys/gw/g1/#":                  true,
		"/ext/session/gw/g1/#":          true,
		"/sys/s/sub1/thing/service/+":   true,
		"/sys/s/sub2/#":                 false,
		"/sys/+/+/thing/service/stop":   false,
		"#":                             false,
		"$share/g//sys/gw/g1/#":         false,
		"/sys/gw/g2/thing/service/stop": false,
	} {
		t.Run(filter, func(t *testing.T) { require.Equal(t, want, h.maySubscribe(gw, filter)) })
	}
}

// A device must not make the broker publish, through its Will, a service
// call on another device's topic (or any topic it may not publish on).
func TestWillPassesTheACL(t *testing.T) {
	r := startRig(t, nil)
	attacker, victim := r.device(t, "attacker"), r.device(t, "victim")
	v := r.mustDial(t, victim, nil)
	calls := subscribe(t, v, api.DevicePrefix(testProduct, "victim")+"#")
	stop := api.ServiceTopic(testProduct, "victim", "stop")

	cases := []struct {
		name, topic string
		retain      bool
		ok          bool
		reason      string
	}{
		{name: "another device's service call", topic: stop, reason: "will_acl"},
		{name: "own service call", topic: api.ServiceTopic(testProduct, "attacker", "stop"), reason: "will_acl"},
		{name: "retained on own uplink", topic: api.EventPostTopic(testProduct, "attacker", "alarm"), retain: true, reason: "will_retain"},
		{name: "own uplink", topic: api.EventPostTopic(testProduct, "attacker", "alarm"), ok: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := r.rejected(true, c.reason)
			cl, err := r.dial(t, attacker, "", func(o *paho.ClientOptions) {
				o.SetWill(c.topic, `{"id":"1","params":{}}`, 1, c.retain)
			})
			if c.ok {
				require.NoError(t, err)
				cl.Disconnect(0)
				return
			}
			require.Error(t, err)
			require.Equal(t, before+1, r.rejected(true, c.reason))
		})
	}
	select {
	case m := <-calls:
		t.Fatalf("the victim received %s", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// The same with mosquitto_sub, a client nobody here wrote: its Will on
// another device's service topic must never reach that device.
func TestMosquittoWillIsRefused(t *testing.T) {
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Skip("mosquitto_sub not installed: apt-get install mosquitto-clients")
	}
	r := startRig(t, nil)
	attacker, victim := r.device(t, "attacker"), r.device(t, "victim")
	v := r.mustDial(t, victim, nil)
	calls := subscribe(t, v, api.DevicePrefix(testProduct, "victim")+"#")
	_, port, _ := splitHostPort(r.b.Addr())
	cred := api.Sign("attacker", testProduct, "attacker", attacker.Secret, time.Now().UnixMilli())
	out, err := exec.Command(sub, "-h", "127.0.0.1", "-p", port, "-i", cred.ClientID, "-u", cred.Username, "-P", cred.Password,
		"-t", api.DevicePrefix(testProduct, "attacker")+"#", "-W", "1",
		"--will-topic", api.ServiceTopic(testProduct, "victim", "stop"), "--will-payload", `{"id":"x","params":{}}`, "--will-qos", "1").CombinedOutput()
	require.Error(t, err, "mosquitto_sub must be refused: %s", out)
	require.Contains(t, string(out), "not authori")
	require.Equal(t, 1.0, r.rejected(true, "will_acl"))
	select {
	case m := <-calls:
		t.Fatalf("the victim received %s", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// A device cannot publish a service call, neither to another device nor to
// itself, and nothing it publishes is retained.
func TestPublishPassesTheACLAndIsNeverRetained(t *testing.T) {
	r := startRig(t, nil)
	attacker, victim := r.device(t, "attacker"), r.device(t, "victim")
	v := r.mustDial(t, victim, nil)
	calls := subscribe(t, v, api.DevicePrefix(testProduct, "victim")+"#")
	a := r.mustDial(t, attacker, nil)
	replies := subscribe(t, a, api.DevicePrefix(testProduct, "attacker")+"#")

	// QoS 0, so that mochi does not close the connection for the refusals.
	require.NoError(t, publish(a, api.ServiceTopic(testProduct, "victim", "stop"), 0, false, []byte(`{"id":"1"}`)))
	require.NoError(t, publish(a, api.ServiceTopic(testProduct, "attacker", "stop"), 0, false, []byte(`{"id":"2"}`)))
	require.NoError(t, publish(a, api.ReplyTopic(api.MeasurepointPostTopic(testProduct, "victim")), 0, false, []byte(`{"id":"3","code":200}`)))
	require.Eventually(t, func() bool { return r.rejected(false, "acl_publish") == 3 }, 5*time.Second, 10*time.Millisecond)

	post := api.MeasurepointPostTopic(testProduct, "attacker")
	payload := []byte(`{"id":"7","params":{"measurepoints":{"Temp":1}}}`)
	require.NoError(t, publish(a, post, 1, true, payload))
	select {
	case m := <-replies:
		require.Contains(t, string(m), `"code":400`)
		require.Contains(t, string(m), "retained")
	case <-time.After(5 * time.Second):
		t.Fatal("no reply to the retained post")
	}
	require.Equal(t, 1.0, r.rejected(false, "retain"))
	require.Zero(t, r.prod.count(), "a retained post is refused, not ingested")

	// A later subscriber gets nothing retained.
	late := r.mustDial(t, r.device(t, "late"), nil)
	lateCh := subscribe(t, late, api.DevicePrefix(testProduct, "late")+"#")
	_ = lateCh
	require.Empty(t, r.b.server.Topics.Messages("/sys/#"))
	require.Empty(t, r.b.server.Topics.Messages("/ext/#"))
	select {
	case m := <-calls:
		t.Fatalf("the victim received %s", m)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, publish(a, post, 1, false, payload))
	require.Eventually(t, func() bool { return r.prod.count() == 1 }, 5*time.Second, 10*time.Millisecond)
}

// mosquitto_pub's retained QoS 1 post is refused, counted and not ingested.
func TestMosquittoRetainIsRefused(t *testing.T) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub not installed: apt-get install mosquitto-clients")
	}
	r := startRig(t, nil)
	d := r.device(t, "d1")
	_, port, _ := splitHostPort(r.b.Addr())
	cred := api.Sign("d1", testProduct, "d1", d.Secret, time.Now().UnixMilli())
	out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", port, "-i", cred.ClientID, "-u", cred.Username, "-P", cred.Password,
		"-q", "1", "-r", "-t", api.MeasurepointPostTopic(testProduct, "d1"), "-m", `{"id":"1","params":{"measurepoints":{"Temp":1}}}`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, 1.0, r.rejected(false, "retain"))
	require.Zero(t, r.prod.count())
	require.Empty(t, r.b.server.Topics.Messages("/sys/#"))
}

package broker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/gale-iot/gale/platform/api"
)

// A refused message of almost a megabyte does not put its payload into the log.
func TestRefusedPayloadStaysOutOfTheLog(t *testing.T) {
	r := startRig(t, nil)
	d := r.device(t, "d1")
	c := r.mustDial(t, d, nil)
	marker := "PAYLOAD-MARKER-"
	payload := []byte(strings.Repeat(marker, 900<<10/len(marker)))
	// QoS 1 on a topic the ACL refuses: mochi closes the connection and logs the packet.
	_ = publish(c, api.ServiceTopic(testProduct, "d1", "stop"), 1, false, payload)
	require.Eventually(t, func() bool { return !c.IsConnectionOpen() }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), "error processing packet") }, 5*time.Second, 10*time.Millisecond)
	logs := r.logs.String()
	require.NotContains(t, logs, marker+marker)
	require.Less(t, len(logs), 64<<10, "the log stays small")
	require.Contains(t, logs, `"payload_bytes":`, "the packet is summarised")
}

func TestQuietHandler(t *testing.T) {
	long := strings.Repeat("a", 1000)
	cases := []struct {
		name  string
		attr  slog.Attr
		want  string
		avoid string
	}{
		{name: "packet", attr: slog.Any("pk", packets.Packet{TopicName: "/t", Payload: []byte(long), FixedHeader: packets.FixedHeader{Type: packets.Publish}}),
			want: "payload_bytes=1000", avoid: long[:300]},
		{name: "packet pointer", attr: slog.Any("pk", &packets.Packet{Payload: []byte(long)}), want: "payload_bytes=1000", avoid: long[:300]},
		{name: "will", attr: slog.Any("will", mqtt.Will{TopicName: "/w", Payload: []byte(long)}), want: "will.payload_bytes=1000", avoid: long[:300]},
		{name: "long string", attr: slog.String("client", long), want: "…(cut)", avoid: long[:300]},
		{name: "error", attr: slog.Any("err", errors.New(long)), want: "…(cut)", avoid: long[:300]},
		{name: "bytes", attr: slog.Any("raw", []byte(long)), want: "raw_bytes=1000", avoid: long[:300]},
		{name: "group", attr: slog.Group("g", slog.String("s", long)), want: "…(cut)", avoid: long[:300]},
		{name: "short string", attr: slog.String("client", "d1"), want: "client=d1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := newQuietLogger(slog.New(slog.NewTextHandler(&buf, nil)))
			log.Info("m", c.attr)
			log.With(c.attr).Info("with")
			out := buf.String()
			require.Contains(t, out, c.want)
			if c.avoid != "" {
				require.NotContains(t, out, c.avoid)
			}
		})
	}
}

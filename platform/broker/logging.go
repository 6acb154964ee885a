package broker

import (
	"context"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxLogString is the longest string value the broker's logs carry; longer
// ones (client ids, topics, error texts quoting input) are cut.
const maxLogString = 256

// quietHandler keeps client input out of the broker's logs: mochi logs
// whole packets (with their payloads, up to the packet size limit) on some
// errors, and error texts may quote what a client sent. Packets and Wills
// are replaced by a summary (type, topic, sizes), long strings are cut.
type quietHandler struct{ next slog.Handler }

func newQuietLogger(log *slog.Logger) *slog.Logger {
	return slog.New(quietHandler{next: log.Handler()})
}

// Enabled reports whether the next handler logs level.
func (h quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle logs r with its attributes made safe.
func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, cut(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(quiet(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs returns the handler with attrs made safe.
func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	safe := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		safe[i] = quiet(a)
	}
	return quietHandler{next: h.next.WithAttrs(safe)}
}

// WithGroup returns the handler within group name.
func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{next: h.next.WithGroup(name)}
}

func quiet(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, cut(v.String()))
	case slog.KindGroup:
		g := v.Group()
		safe := make([]any, len(g))
		for i, x := range g {
			safe[i] = quiet(x)
		}
		return slog.Group(a.Key, safe...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case packets.Packet:
			return packetSummary(a.Key, &x)
		case *packets.Packet:
			return packetSummary(a.Key, x)
		case mqtt.Will:
			return slog.Group(a.Key, "topic", cut(x.TopicName), "payload_bytes", len(x.Payload), "qos", x.Qos, "retain", x.Retain)
		case error:
			return slog.String(a.Key, cut(x.Error()))
		case []byte:
			return slog.Int(a.Key+"_bytes", len(x))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func packetSummary(key string, pk *packets.Packet) slog.Attr {
	return slog.Group(key, "type", packets.PacketNames[pk.FixedHeader.Type], "topic", cut(pk.TopicName),
		"payload_bytes", len(pk.Payload), "qos", pk.FixedHeader.Qos, "retain", pk.FixedHeader.Retain, "id", pk.PacketID)
}

func cut(s string) string {
	if len(s) <= maxLogString {
		return s
	}
	return s[:maxLogString] + "…(cut)"
}

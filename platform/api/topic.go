package api

import (
	"errors"
	"fmt"
	"strings"
)

// Kafka topic names.
const (
	TopicTelemetry = "gale.telemetry"
	TopicEvents    = "gale.events"
	TopicCommands  = "gale.commands"
	// TopicDeadLetter receives route deliveries that failed past their retry budget.
	TopicDeadLetter = "gale.deadletter"
	// TopicRegistry is the compacted change log of the registry, applied by every node.
	TopicRegistry = "gale.registry"
)

// Topics lists the Kafka topics Gale creates.
func Topics() []string {
	return []string{TopicTelemetry, TopicEvents, TopicCommands, TopicDeadLetter, TopicRegistry}
}

// Kind is what a device topic is for.
type Kind int

// Topic kinds of the device protocol.
const (
	KindUnknown Kind = iota
	KindMeasurepointPost
	KindMeasurepointResume
	KindMeasurepointResumeBatch
	KindEventPost
	KindAttributeUpdate
	KindAttributeQuery
	KindServiceCall
	KindTopoAdd
	KindSubLogin
	KindSubLoginBatch
	KindSubLogout
	// KindMeasurepointPostBatch is a gateway's live samples of several of
	// its sub-devices (and itself) in one message (EnOS
	// thing.measurepoint.post.batch). Last, so that the numbers of the
	// others (in fuzz corpora) stay.
	KindMeasurepointPostBatch
)

var kindSuffix = map[string]Kind{
	"thing/measurepoint/post":         KindMeasurepointPost,
	"thing/measurepoint/post/batch":   KindMeasurepointPostBatch,
	"thing/measurepoint/resume":       KindMeasurepointResume,
	"thing/measurepoint/resume/batch": KindMeasurepointResumeBatch,
	"thing/attribute/update":          KindAttributeUpdate,
	"thing/attribute/query":           KindAttributeQuery,
	"thing/topo/add":                  KindTopoAdd,
}

// ErrBadTopic is returned for topics outside the device protocol.
var ErrBadTopic = errors.New("not a device protocol topic")

// Topic is a parsed device protocol topic.
type Topic struct {
	Kind       Kind
	ProductKey string
	DeviceKey  string
	// Name is the event or service identifier for event and service topics.
	Name string
	// Reply is true for a `_reply` topic.
	Reply bool
}

// ParseTopic parses a device protocol topic such as
// /sys/{pk}/{dk}/thing/measurepoint/post or /ext/session/{pk}/{dk}/combine/login.
func ParseTopic(topic string) (Topic, error) {
	var t Topic
	if s, ok := strings.CutSuffix(topic, "_reply"); ok {
		t.Reply, topic = true, s
	}
	var p5 [5]string
	parts := splitTopic(topic, p5[:])
	if len(parts) < 5 || parts[0] != "" || parts[2] == "" || parts[3] == "" {
		return Topic{}, fmt.Errorf("%w: %q", ErrBadTopic, topic)
	}
	t.ProductKey, t.DeviceKey = parts[2], parts[3]
	rest := parts[4]
	switch parts[1] {
	case "sys":
		if k, ok := kindSuffix[rest]; ok {
			t.Kind = k
			return t, nil
		}
		if name, ok := strings.CutPrefix(rest, "thing/event/"); ok {
			if name, ok = strings.CutSuffix(name, "/post"); ok && name != "" && !strings.Contains(name, "/") {
				t.Kind, t.Name = KindEventPost, name
				return t, nil
			}
		}
		if name, ok := strings.CutPrefix(rest, "thing/service/"); ok && name != "" && !strings.Contains(name, "/") {
			t.Kind, t.Name = KindServiceCall, name
			return t, nil
		}
	case "ext":
		if parts[2] == "session" {
			// /ext/session/{pk}/{dk}/combine/login[/batch]
			var p6 [6]string
			sub := splitTopic(topic, p6[:])
			if len(sub) == 6 && sub[3] != "" && sub[4] != "" {
				t.ProductKey, t.DeviceKey = sub[3], sub[4]
				switch sub[5] {
				case "combine/login":
					t.Kind = KindSubLogin
					return t, nil
				case "combine/login/batch":
					t.Kind = KindSubLoginBatch
					return t, nil
				case "combine/logout":
					t.Kind = KindSubLogout
					return t, nil
				}
			}
		}
	}
	return Topic{}, fmt.Errorf("%w: %q", ErrBadTopic, topic)
}

// splitTopic is strings.SplitN(topic, "/", len(room)) into room, which
// spares the allocation of the parts on every message; it returns the
// parts, a prefix of room.
func splitTopic(topic string, room []string) []string {
	n := 0
	for ; n < len(room)-1; n++ {
		before, after, ok := strings.Cut(topic, "/")
		if !ok {
			break
		}
		room[n], topic = before, after
	}
	room[n] = topic
	return room[:n+1]
}

// DevicePrefix is the topic prefix a device owns: /sys/{pk}/{dk}/.
func DevicePrefix(productKey, deviceKey string) string {
	return "/sys/" + productKey + "/" + deviceKey + "/"
}

// MeasurepointPostTopic is the topic a device posts telemetry on.
func MeasurepointPostTopic(productKey, deviceKey string) string {
	return DevicePrefix(productKey, deviceKey) + "thing/measurepoint/post"
}

// MeasurepointPostBatchTopic is the topic on which gateway (productKey,
// deviceKey) posts live samples of its logged-in sub-devices (and its own)
// in one message; its params are a []SubDeviceMeasurepoints.
func MeasurepointPostBatchTopic(productKey, deviceKey string) string {
	return MeasurepointPostTopic(productKey, deviceKey) + "/batch"
}

// MeasurepointResumeTopic is the topic a device backfills offline data on.
func MeasurepointResumeTopic(productKey, deviceKey string) string {
	return DevicePrefix(productKey, deviceKey) + "thing/measurepoint/resume"
}

// MeasurepointResumeBatchTopic is the topic for backfilling many samples in one message.
func MeasurepointResumeBatchTopic(productKey, deviceKey string) string {
	return MeasurepointResumeTopic(productKey, deviceKey) + "/batch"
}

// EventPostTopic is the topic a device posts event eventID on.
func EventPostTopic(productKey, deviceKey, eventID string) string {
	return DevicePrefix(productKey, deviceKey) + "thing/event/" + eventID + "/post"
}

// ServiceTopic is the downlink topic for invoking serviceID on a device.
func ServiceTopic(productKey, deviceKey, serviceID string) string {
	return DevicePrefix(productKey, deviceKey) + "thing/service/" + serviceID
}

// ReplyTopic is the `_reply` twin of a request topic.
func ReplyTopic(topic string) string { return topic + "_reply" }

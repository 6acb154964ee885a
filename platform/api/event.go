package api

import "encoding/json"

// DeviceEvent is a device's thing/event/{id}/post as carried on gale.events (JSON).
type DeviceEvent struct {
	Type     string          `json:"type"` // always EventTypeDevice
	Org      string          `json:"org"`
	Product  string          `json:"product"`
	Device   string          `json:"device"`
	Site     string          `json:"site,omitempty"`
	Event    string          `json:"event"`
	Severity string          `json:"severity,omitempty"`
	Time     int64           `json:"time"`
	Params   json.RawMessage `json:"params,omitempty"`
}

// EventTypeDevice marks a DeviceEvent on gale.events.
const EventTypeDevice = "device.event"

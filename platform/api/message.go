package api

import "encoding/json"

// Request is the envelope of every device protocol request.
type Request struct {
	ID      string          `json:"id"`
	Version string          `json:"version,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// Reply answers a request on its `_reply` topic.
type Reply struct {
	ID      string `json:"id"`
	Code    int    `json:"code"`
	Message string `json:"message,omitempty"`
	Data    any    `json:"data,omitempty"`
}

// MeasurepointParams are the params of thing.measurepoint.post and .resume.
// A value is a number, a boolean, or an object {"value":…, "quality":…}.
type MeasurepointParams struct {
	Measurepoints map[string]json.RawMessage `json:"measurepoints"`
	// Time is the sample time in Unix milliseconds; zero means the broker's receive time.
	Time int64 `json:"time,omitempty"`
}

// SubDeviceMeasurepoints is one entry of a thing.measurepoint.post.batch:
// the sample of device (ProductKey, DeviceKey) at Time, which is the
// gateway itself or one of the sub-devices logged in through it. Entries
// of one device keep their order.
type SubDeviceMeasurepoints struct {
	ProductKey    string                     `json:"productKey"`
	DeviceKey     string                     `json:"deviceKey"`
	Measurepoints map[string]json.RawMessage `json:"measurepoints"`
	// Time is the sample time in Unix milliseconds; zero means the broker's receive time.
	Time int64 `json:"time,omitempty"`
}

// QualityValue is the object form of a measurepoint value.
type QualityValue struct {
	Value   json.RawMessage `json:"value"`
	Quality *int            `json:"quality,omitempty"`
}

// Quality flags. Zero is good; anything else is a degraded sample.
const (
	QualityGood = 0
	QualityBad  = 1
)

package broker

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/buger/jsonparser"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// batch is the samples of a measurepoint request decoded in a single pass:
// one entry for a post's params object, one per element of a params array
// (post, resume, resume/batch), or one per device of a gateway's
// post/batch. Its points alias the payload, so it lives only as long as
// the payload does: within OnPublish, until releaseBatch.
type batch struct {
	entries []batchEntry
	// samples is room for the samples of the records made from the
	// entries, one record at a time: a record is encoded before the next.
	samples []api.Sample
}

// batchEntry is one entry of a batch: a sample of a device at a time; the
// device's keys are set in a post/batch only.
type batchEntry struct {
	productKey, deviceKey []byte
	post
}

// post is the params of one sample: its points and time.
type post struct {
	points []rawPoint
	time   int64
}

// rawPoint is one member of measurepoints: its id and its JSON value, not parsed yet.
type rawPoint struct{ id, value []byte }

// maxPostPoints bounds the points of an entry of a single-pass decode,
// which replaces a repeated id in place (quadratic in the points); a
// larger entry is decoded in two passes.
const maxPostPoints = 128

// maxPooledEntries bounds the entries of a batch kept for reuse.
const maxPooledEntries = 256

// maxPooledSamples bounds the room for samples of a batch kept for reuse.
const maxPooledSamples = 1024

// batches holds decoded batches for reuse, with their entries' room for
// points, rather than growing them anew for every message.
var batches = sync.Pool{New: func() any { return new(batch) }}

// releaseBatch gives b back to the pool once nothing reads it (the samples
// hold the thing model's ids, not b's).
func releaseBatch(b *batch) {
	if len(b.entries) > maxPooledEntries {
		return
	}
	for i := range b.entries {
		b.entries[i].reset()
	}
	b.entries = b.entries[:0]
	clear(b.samples)
	b.samples = b.samples[:0]
	if cap(b.samples) > maxPooledSamples {
		b.samples = nil
	}
	batches.Put(b)
}

// reset empties en for reuse, keeping its room for points, and lets go of
// the payload it aliased.
func (en *batchEntry) reset() {
	en.productKey, en.deviceKey = nil, nil
	clear(en.points)
	en.points, en.time = en.points[:0], 0
}

// next appends an empty entry to b, reusing the room of an earlier one.
func (b *batch) next() *batchEntry {
	if len(b.entries) < cap(b.entries) {
		b.entries = b.entries[:len(b.entries)+1]
	} else {
		b.entries = append(b.entries, batchEntry{})
	}
	en := &b.entries[len(b.entries)-1]
	en.reset()
	return en
}

// add appends an entry read by the two-pass decode (keys empty but in a post/batch).
func (b *batch) add(productKey, deviceKey string, time int64, points map[string]json.RawMessage) {
	en := b.next()
	en.productKey, en.deviceKey, en.time = []byte(productKey), []byte(deviceKey), time
	for id, v := range points {
		en.points = append(en.points, rawPoint{id: []byte(id), value: v})
	}
}

// errTwoPass ends a single-pass decode that leaves the request to the two-pass one.
var errTwoPass = errors.New("decode in two passes")

// paramsKey finds the params member, to count it.
var paramsKey = []byte(`"params"`)

// decodeBatch decodes a measurepoint request in a single pass, without
// allocating for its points: a post, resume or resume/batch (params an
// object or an array of objects of measurepoints and time), or with keyed
// a gateway's post/batch (params an array of objects that also name their
// device by productKey and deviceKey). It sets req's ID, Version and
// Method and returns the entries. It returns nil for anything else, which
// is then decoded as before (api.Request, then params a second time) with
// the same replies: malformed JSON, params missing, null, empty or of
// another type, an entry that is not an object or has no points, a member
// named with escapes, in another case or not known to the request (the
// struct decode's case folding decides those), a string that is not UTF-8
// (the struct decode replaces its bytes), a time that is not an integer,
// more than maxPostPoints points in an entry, or params given twice (a
// struct decode would merge the two where the RawMessage keeps the last).
func decodeBatch(payload []byte, req *api.Request, keyed bool) *batch {
	if bytes.Count(payload, paramsKey) != 1 || bytes.IndexByte(payload, '\\') >= 0 || !json.Valid(payload) {
		return nil
	}
	b := batches.Get().(*batch)
	var id, version, method string
	err := jsonparser.ObjectEach(payload, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		switch string(key) {
		case "id":
			return jsonString(&id, value, t)
		case "version":
			return jsonString(&version, value, t)
		case "method":
			return jsonString(&method, value, t)
		case "params":
			switch {
			case t == jsonparser.Array:
				return b.decodeEntries(value, keyed)
			case t == jsonparser.Object && !keyed:
				return b.next().decode(value, false)
			}
		}
		return errTwoPass
	})
	if err != nil || len(b.entries) == 0 {
		releaseBatch(b)
		return nil
	}
	req.ID, req.Version, req.Method = id, version, method
	return b
}

// jsonString sets dst to a JSON string value, as a struct decode would
// (null leaves it as it is).
func jsonString(dst *string, value []byte, t jsonparser.ValueType) error {
	switch {
	case t == jsonparser.Null:
		return nil
	case t == jsonparser.String && utf8.Valid(value):
		*dst = string(value)
		return nil
	}
	return errTwoPass
}

// decodeEntries appends the entries of a params array.
func (b *batch) decodeEntries(arr []byte, keyed bool) error {
	var err error
	_, aerr := jsonparser.ArrayEach(arr, func(value []byte, t jsonparser.ValueType, _ int, _ error) {
		if err != nil {
			return
		}
		if t != jsonparser.Object {
			err = errTwoPass
			return
		}
		err = b.next().decode(value, keyed)
	})
	return cmp.Or(err, aerr)
}

// decode decodes an entry's object: its measurepoints and time, and with
// keyed its device's productKey and deviceKey. An entry without points is
// left to the two-pass decode, which words the refusal.
func (en *batchEntry) decode(obj []byte, keyed bool) error {
	err := jsonparser.ObjectEach(obj, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		switch k := string(key); {
		case keyed && k == "productKey":
			return jsonKey(&en.productKey, value, t)
		case keyed && k == "deviceKey":
			return jsonKey(&en.deviceKey, value, t)
		case k == "measurepoints":
			switch t {
			case jsonparser.Null: // a struct decode sets the map to nil
				clear(en.points)
				en.points = en.points[:0]
				return nil
			case jsonparser.Object: // and merges a second object into the first
				return en.decodePoints(value)
			}
		case k == "time":
			switch t {
			case jsonparser.Null:
				return nil
			case jsonparser.Number:
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err == nil {
					en.time = n
					return nil
				}
			}
		}
		return errTwoPass
	})
	if err == nil && len(en.points) == 0 {
		return errTwoPass
	}
	return err
}

// jsonKey sets dst to a JSON string value's bytes.
func jsonKey(dst *[]byte, value []byte, t jsonparser.ValueType) error {
	if t != jsonparser.String || !utf8.Valid(value) {
		return errTwoPass
	}
	*dst = value
	return nil
}

// decodePoints appends the members of a measurepoints object; a repeated
// id keeps its last value, as a map does.
func (p *post) decodePoints(obj []byte) error {
	return jsonparser.ObjectEach(obj, func(key, value []byte, t jsonparser.ValueType, end int) error {
		if !utf8.Valid(key) {
			return errTwoPass
		}
		if t == jsonparser.String { // the value with its quotes, as a RawMessage holds it
			value = obj[end-len(value)-2 : end]
		}
		if i := slices.IndexFunc(p.points, func(pt rawPoint) bool { return bytes.Equal(pt.id, key) }); i >= 0 {
			p.points[i].value = value
			return nil
		}
		if len(p.points) == maxPostPoints {
			return errTwoPass
		}
		p.points = append(p.points, rawPoint{id: key, value: value})
		return nil
	})
}

// validateEntries validates the entries of a post, resume or resume/batch
// decoded in one pass against model and the time window into rec, as
// validateSamples does the same params decoded in two.
func validateEntries(rec *api.Record, entries []batchEntry, model *registry.Model, win window) (int, string, error) {
	n := len(rec.Samples)
	for i := range entries {
		n += len(entries[i].points)
	}
	rec.Samples = slices.Grow(rec.Samples, n-len(rec.Samples))
	for i := range entries {
		if code, reason, err := validatePost(rec, &entries[i].post, model, win); err != nil {
			return code, reason, err
		}
	}
	return 0, "", nil
}

// validatePost validates the params of one sample against model and the
// time window into rec. The samples take their ids from the thing model,
// not from the payload, so they outlive it. A sample with several bad
// points gets the refusal of the smallest id, whatever order its points
// are read in.
func validatePost(rec *api.Record, p *post, model *registry.Model, win window) (int, string, error) {
	if len(p.points) == 0 {
		return api.CodeBadRequest, "no_points", errors.New("params.measurepoints is empty")
	}
	t := p.time
	if t == 0 {
		t = rec.Received
	}
	if err := win.check(t); err != nil {
		return api.CodeInvalidValue, "bad_time", err
	}
	rec.Samples = slices.Grow(rec.Samples, len(p.points))
	var bad pointRefusal
	for _, pt := range p.points {
		id, ok := model.PointID(pt.id)
		if !ok {
			id = string(pt.id) // unknown to the model: refused by pointSample
		}
		smp, code, reason, err := pointSample(id, pt.value, t, model)
		if err != nil {
			bad.keep(id, code, reason, err)
			continue
		}
		rec.Samples = append(rec.Samples, smp)
	}
	if bad.err != nil {
		return bad.code, bad.reason, bad.err
	}
	return 0, "", nil
}

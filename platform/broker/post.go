package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"iter"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/buger/jsonparser"

	"github.com/gale-iot/gale/platform/api"
	"github.com/gale-iot/gale/platform/registry"
)

// post is a measurepoint post whose params is one object, decoded in a
// single pass. Its points alias the payload, so it lives only as long as
// the payload does: within OnPublish, until releasePost.
type post struct {
	points []rawPoint
	time   int64
}

// rawPoint is one member of params.measurepoints: its id and its JSON value, not parsed yet.
type rawPoint struct{ id, value []byte }

// maxPostPoints bounds the points of a single-pass decode, which replaces
// a repeated id in place (quadratic in the points); a larger post is
// decoded in two passes.
const maxPostPoints = 128

// posts holds decoded posts for reuse: a post's points are cleared and
// reused once validated, rather than grown anew for every message.
var posts = sync.Pool{New: func() any { return &post{points: make([]rawPoint, 0, 32)} }}

// releasePost gives p back to the pool once nothing reads it (the samples
// hold the thing model's ids, not p's).
func releasePost(p *post) {
	if cap(p.points) > maxPostPoints {
		return
	}
	clear(p.points)
	p.points, p.time = p.points[:0], 0
	posts.Put(p)
}

// errTwoPass ends a single-pass decode that leaves the request to the two-pass one.
var errTwoPass = errors.New("decode in two passes")

// paramsKey finds the params member, to count it.
var paramsKey = []byte(`"params"`)

// decodePost decodes a measurepoint request whose params is one object in a
// single pass (the common form), without allocating for its points: it sets
// req's ID, Version and Method and returns the params. It returns nil for
// anything else, which is then decoded as before (api.Request, then params
// a second time) with the same replies: malformed JSON, params missing,
// null, empty or an array, a member named with escapes, in another case or
// not known to the request (the struct decode's case folding decides
// those), a string that is not UTF-8 (the struct decode replaces its
// bytes), a time that is not an integer, more than maxPostPoints points, or
// params given twice (a struct decode would merge the two objects'
// measurepoints where the RawMessage keeps the last).
func decodePost(payload []byte, req *api.Request) *post {
	if bytes.Count(payload, paramsKey) != 1 || bytes.IndexByte(payload, '\\') >= 0 || !json.Valid(payload) {
		return nil
	}
	p := posts.Get().(*post)
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
			switch t {
			case jsonparser.Null:
				return nil
			case jsonparser.Object:
				return p.decodeParams(value)
			}
		}
		return errTwoPass
	})
	if err != nil || len(p.points) == 0 {
		releasePost(p)
		return nil
	}
	req.ID, req.Version, req.Method = id, version, method
	return p
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

// decodeParams decodes the params object: its measurepoints and time.
func (p *post) decodeParams(obj []byte) error {
	return jsonparser.ObjectEach(obj, func(key, value []byte, t jsonparser.ValueType, _ int) error {
		switch string(key) {
		case "measurepoints":
			switch t {
			case jsonparser.Null: // a struct decode sets the map to nil
				clear(p.points)
				p.points = p.points[:0]
				return nil
			case jsonparser.Object: // and merges a second object into the first
				return p.decodePoints(value)
			}
		case "time":
			switch t {
			case jsonparser.Null:
				return nil
			case jsonparser.Number:
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err == nil {
					p.time = n
					return nil
				}
			}
		}
		return errTwoPass
	})
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

// validatePost validates a post decoded in one pass against model and the
// time window into rec, as validateSamples does the same params decoded in
// two. The samples take their ids from the thing model, not from the
// payload, so they outlive it.
func validatePost(rec *api.Record, p *post, model *registry.Model, win window) (int, string, error) {
	t := p.time
	if t == 0 {
		t = rec.Received
	}
	if err := win.check(t); err != nil {
		return api.CodeInvalidValue, "bad_time", err
	}
	rec.Samples = slices.Grow(rec.Samples, len(p.points))
	return appendSamples(rec, t, model, p.all(model))
}

// all yields p's points with model's own string of each id (a string of
// the payload's bytes for an id the model does not have, refused then).
func (p *post) all(model *registry.Model) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for _, pt := range p.points {
			id, ok := model.PointID(pt.id)
			if !ok {
				id = string(pt.id)
			}
			if !yield(id, pt.value) {
				return
			}
		}
	}
}

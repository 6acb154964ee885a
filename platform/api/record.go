package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// RecordVersion is the version byte leading every encoded Record.
const RecordVersion = 1

// RecordKind says how a telemetry record reached the platform.
type RecordKind uint8

// Record kinds. Resumed (backfilled) samples are stored but never evaluated by streaming rules.
const (
	RecordPost RecordKind = iota + 1
	RecordResume
)

// Record is one validated device message on gale.telemetry: the device's
// identity from the registry and its samples, decoded once at the broker.
type Record struct {
	Kind      RecordKind
	Org       string
	Product   string
	Device    string
	Site      string
	MessageID string
	// Received is the broker's receive time in Unix milliseconds.
	Received int64
	Samples  []Sample
}

// Sample is one measurepoint value at a time.
type Sample struct {
	// Point is the thing model's measurepoint identifier, e.g. "WTUR.W".
	Point string
	// Time is the sample time in Unix milliseconds.
	Time  int64
	Value float64
	// Quality is the device's quality flag (0 good); HasQuality says the device sent one.
	Quality    uint8
	HasQuality bool
}

// ErrBadRecord is returned when bytes do not decode as a Record.
var ErrBadRecord = errors.New("bad telemetry record")

// AppendRecord appends the binary encoding of r to buf. Sample times are
// stored as deltas from Received, so a record of one timestamp stays small.
func AppendRecord(buf []byte, r *Record) []byte {
	buf = append(buf, RecordVersion, byte(r.Kind))
	for _, s := range [...]string{r.Org, r.Product, r.Device, r.Site, r.MessageID} {
		buf = appendString(buf, s)
	}
	buf = binary.AppendVarint(buf, r.Received)
	buf = binary.AppendUvarint(buf, uint64(len(r.Samples)))
	for i := range r.Samples {
		s := &r.Samples[i]
		buf = appendString(buf, s.Point)
		buf = binary.AppendVarint(buf, s.Time-r.Received)
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(s.Value))
		q := s.Quality << 1
		if s.HasQuality {
			q |= 1
		}
		buf = append(buf, q)
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// DecodeRecord decodes data into r, reusing r's sample slice, and r's
// strings where they are equal: a consumer decoding record after record of
// the same org, site, product and points allocates for what changed only.
func DecodeRecord(data []byte, r *Record) error {
	d := decoder{b: data}
	if v := d.byte(); v != RecordVersion {
		return fmt.Errorf("%w: version %d", ErrBadRecord, v)
	}
	r.Kind = RecordKind(d.byte())
	r.Org, r.Product, r.Device = d.string(r.Org), d.string(r.Product), d.string(r.Device)
	r.Site, r.MessageID = d.string(r.Site), d.string(r.MessageID)
	r.Received = d.varint()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = ErrBadRecord
	}
	prev := r.Samples[:cap(r.Samples)] // the last record's points, to reuse
	r.Samples = r.Samples[:0]
	for i := uint64(0); i < n && d.err == nil; i++ {
		var s Sample
		if i < uint64(len(prev)) {
			s.Point = prev[i].Point
		}
		s.Point = d.string(s.Point)
		s.Time = r.Received + d.varint()
		s.Value = math.Float64frombits(d.uint64())
		q := d.byte()
		s.Quality, s.HasQuality = q>>1, q&1 == 1
		r.Samples = append(r.Samples, s)
	}
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrBadRecord, d.err)
	}
	if r.Kind != RecordPost && r.Kind != RecordResume {
		return fmt.Errorf("%w: kind %d", ErrBadRecord, r.Kind)
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint) }

// readVarint reads one varint with read (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errShort
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// string reads a string; it returns old when they are equal, without a copy.
func (d *decoder) string(old string) string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := old
	if string(d.b[:n]) != old {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}

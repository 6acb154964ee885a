package loadgen

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latency kinds the recorder keeps histograms of.
const (
	latConnect   = iota // connect call to CONNACK
	latPuback           // scheduled time to PUBACK (QoS 1)
	latE2E              // scheduled time to queryable in the TSDB (probes)
	latSendLag          // scheduled time to handed to the MQTT client
	latReconnect        // connection lost (or given up on) to connected again
	latAckGap           // between two consecutive acknowledgements of one device
	numLat
)

// latNames are the report's names of the latency kinds.
var latNames = [numLat]string{"connect", "puback", "e2e", "send_lag", "reconnect", "ack_gap"}

// Histogram bounds: microseconds from 1 µs to 10 minutes.
const (
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histDigits  = 3
	slotDigits  = 2
	slotSeconds = 1
)

// recorder collects the counters, HDR histograms and per-second timeline
// of a run (or of one step of a step search). Safe for concurrent use.
type recorder struct {
	start time.Time
	// from, to bound the window in which offered and achieved rates are counted.
	from, to time.Duration

	offered, sent, acked, failed atomic.Int64

	mu                   sync.Mutex
	hist                 [numLat]*hdr.Histogram
	slots                []*slot
	errors               map[string]int64
	offeredIn, ackedIn   int64
	lastAck, lastOffered time.Time
}

// slot is one second of the timeline.
type slot struct {
	offered, sent, acked, errors int64
	puback, e2e                  *hdr.Histogram
}

func newRecorder(start time.Time, from, to time.Duration) *recorder {
	r := &recorder{errors: map[string]int64{}}
	r.begin(start, from, to)
	for i := range r.hist {
		r.hist[i] = hdr.New(1, histMax, histDigits)
	}
	return r
}

func micros(d time.Duration) int64 { return min(max(d.Microseconds(), 1), histMax) }

// begin restarts the timeline at start and sets the rate window [from, to) after it.
func (r *recorder) begin(start time.Time, from, to time.Duration) {
	r.mu.Lock()
	r.start, r.from, r.to, r.slots = start, from, to, nil
	r.mu.Unlock()
}

// slotAt returns the timeline slot of time t; callers hold mu.
func (r *recorder) slotAt(t time.Time) *slot {
	i := max(int(t.Sub(r.start)/(slotSeconds*time.Second)), 0)
	for len(r.slots) <= i {
		r.slots = append(r.slots, &slot{})
	}
	return r.slots[i]
}

func (r *recorder) inWindow(t time.Time) bool {
	d := t.Sub(r.start)
	return d >= r.from && d < r.to
}

// offer counts a message that fell due at due.
func (r *recorder) offer(due time.Time) {
	r.offered.Add(1)
	r.mu.Lock()
	r.slotAt(due).offered++
	if r.inWindow(due) {
		r.offeredIn++
	}
	r.lastOffered = due
	r.mu.Unlock()
}

// send records that a message due at due was handed to the client at at.
func (r *recorder) send(due, at time.Time) {
	r.sent.Add(1)
	r.mu.Lock()
	r.slotAt(at).sent++
	_ = r.hist[latSendLag].RecordValue(micros(at.Sub(due)))
	r.mu.Unlock()
}

// ack records that a message due at due was acknowledged at at (written,
// for QoS 0: then there is no PUBACK latency).
func (r *recorder) ack(due, at time.Time, puback bool) {
	r.acked.Add(1)
	r.mu.Lock()
	s := r.slotAt(at)
	s.acked++
	if r.inWindow(at) {
		r.ackedIn++
	}
	if puback {
		v := micros(at.Sub(due))
		_ = r.hist[latPuback].RecordValue(v)
		if s.puback == nil {
			s.puback = hdr.New(1, histMax, slotDigits)
		}
		_ = s.puback.RecordValue(v)
	}
	r.lastAck = at
	r.mu.Unlock()
}

// fail counts an error of kind at at; message says whether a message failed with it.
func (r *recorder) fail(kind string, at time.Time, message bool) {
	if message {
		r.failed.Add(1)
	}
	r.mu.Lock()
	r.errors[kind]++
	r.slotAt(at).errors++
	r.mu.Unlock()
}

// connect records one connect latency.
func (r *recorder) connect(d time.Duration) {
	r.mu.Lock()
	_ = r.hist[latConnect].RecordValue(micros(d))
	r.mu.Unlock()
}

// observe records d in the histogram of kind (reconnect, ack_gap).
func (r *recorder) observe(kind int, d time.Duration) {
	r.mu.Lock()
	_ = r.hist[kind].RecordValue(micros(d))
	r.mu.Unlock()
}

// e2e records that a probe due at due was seen queryable at seen.
func (r *recorder) e2e(due, seen time.Time) {
	r.mu.Lock()
	v := micros(seen.Sub(due))
	_ = r.hist[latE2E].RecordValue(v)
	s := r.slotAt(seen)
	if s.e2e == nil {
		s.e2e = hdr.New(1, histMax, slotDigits)
	}
	_ = s.e2e.RecordValue(v)
	r.mu.Unlock()
}

// quantile returns kind's q-quantile so far (0 without samples).
func (r *recorder) quantile(kind int, q float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.hist[kind].ValueAtQuantile(q)) * time.Microsecond
}

// errorCount returns the errors counted so far.
func (r *recorder) errorCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, v := range r.errors {
		n += v
	}
	return n
}

// Latency summarises one latency histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func summarise(h *hdr.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

// TimelinePoint is one second of the run.
type TimelinePoint struct {
	// T is the second's start, in seconds since the timetable started.
	T       float64 `json:"t"`
	Offered int64   `json:"offered"`
	Sent    int64   `json:"sent"`
	Acked   int64   `json:"acked"`
	Errors  int64   `json:"errors"`
	// PUBACK and end-to-end latency of the messages acknowledged (seen) in this second, ms.
	PubackP50 float64 `json:"puback_p50_ms,omitempty"`
	PubackP99 float64 `json:"puback_p99_ms,omitempty"`
	PubackMax float64 `json:"puback_max_ms,omitempty"`
	E2EP99    float64 `json:"e2e_p99_ms,omitempty"`
}

// snapshot is what the report reads from a recorder.
type snapshot struct {
	latency                            map[string]Latency
	errors                             map[string]int64
	timeline                           []TimelinePoint
	offered, sent, acked, failed       int64
	offeredRate, achievedRate, windowS float64
	lastAck, lastOffered               time.Time
}

func (r *recorder) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{
		latency: map[string]Latency{}, errors: maps.Clone(r.errors),
		offered: r.offered.Load(), sent: r.sent.Load(), acked: r.acked.Load(), failed: r.failed.Load(),
		lastAck: r.lastAck, lastOffered: r.lastOffered,
	}
	for i, h := range r.hist {
		if h.TotalCount() > 0 {
			s.latency[latNames[i]] = summarise(h)
		}
	}
	if w := (r.to - r.from).Seconds(); w > 0 {
		s.windowS = w
		s.offeredRate, s.achievedRate = float64(r.offeredIn)/w, float64(r.ackedIn)/w
	}
	for i, sl := range r.slots {
		p := TimelinePoint{T: float64(i * slotSeconds), Offered: sl.offered, Sent: sl.sent, Acked: sl.acked, Errors: sl.errors}
		if sl.puback != nil {
			p.PubackP50 = float64(sl.puback.ValueAtQuantile(50)) / 1000
			p.PubackP99 = float64(sl.puback.ValueAtQuantile(99)) / 1000
			p.PubackMax = float64(sl.puback.Max()) / 1000
		}
		if sl.e2e != nil {
			p.E2EP99 = float64(sl.e2e.ValueAtQuantile(99)) / 1000
		}
		s.timeline = append(s.timeline, p)
	}
	return s
}

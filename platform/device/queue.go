package device

import (
	"encoding/json"

	"github.com/gale-iot/gale/platform/api"
)

// entry is an undelivered sample or event of device (pk, dk). Its params are
// encoded once, at the post, and sent as they are.
type entry struct {
	seq    uint64
	pk, dk string
	// event is the event identifier; empty for a measurepoint sample.
	event  string
	params json.RawMessage
}

// liveTopic is where the entry is posted live.
func (e *entry) liveTopic() string {
	if e.event != "" {
		return api.EventPostTopic(e.pk, e.dk, e.event)
	}
	return api.MeasurepointPostTopic(e.pk, e.dk)
}

// liveMethod is the method of the live post.
func (e *entry) liveMethod() string {
	if e.event != "" {
		return "thing.event." + e.event + ".post"
	}
	return "thing.measurepoint.post"
}

// batchable reports whether e and o go in one resume/batch message.
func (e *entry) batchable(o *entry) bool {
	return e.event == "" && o.event == "" && e.pk == o.pk && e.dk == o.dk
}

// queue is a bounded FIFO of entries that drops its oldest entry when full.
// Entries are numbered, so a replayed batch is removed by number even if the
// queue dropped entries while the batch was in flight. It grows on demand,
// so an idle device's queue costs nothing. Not safe for concurrent use.
type queue struct {
	max     int
	items   []entry
	next    uint64 // number of the next pushed entry
	dropped uint64
}

// push appends e, dropping the oldest entry when the queue is full.
func (q *queue) push(e entry) {
	if len(q.items) >= q.max {
		q.items[0] = entry{}
		q.items = q.items[1:]
		q.dropped++
	}
	e.seq = q.next
	q.next++
	q.items = append(q.items, e)
}

// batch returns the entries at the head that go in one message: one event,
// or up to n consecutive samples of one device.
func (q *queue) batch(n int) []entry {
	if len(q.items) == 0 {
		return nil
	}
	k := 1
	for k < len(q.items) && k < n && q.items[0].batchable(&q.items[k]) {
		k++
	}
	return q.items[:k:k]
}

// popThrough removes the head entries numbered up to seq and returns how many it removed.
func (q *queue) popThrough(seq uint64) int {
	n := 0
	for n < len(q.items) && q.items[n].seq <= seq {
		q.items[n] = entry{}
		n++
	}
	q.items = q.items[n:]
	if len(q.items) == 0 {
		q.items = nil // release the backing array
	}
	return n
}

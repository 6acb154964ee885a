package device

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func sample(dk string, i int) entry {
	return entry{pk: "p", dk: dk, params: json.RawMessage(strconv.Itoa(i))}
}

func values(es []entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.dk+":"+string(e.params))
	}
	return out
}

func TestQueueDropsOldestWhenFull(t *testing.T) {
	cases := []struct {
		name        string
		max, pushed int
		wantDropped uint64
		wantHead    string
	}{
		{name: "below capacity", max: 5, pushed: 3, wantDropped: 0, wantHead: "d:0"},
		{name: "at capacity", max: 5, pushed: 5, wantDropped: 0, wantHead: "d:0"},
		{name: "over capacity", max: 5, pushed: 12, wantDropped: 7, wantHead: "d:7"},
		{name: "capacity one", max: 1, pushed: 4, wantDropped: 3, wantHead: "d:3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := queue{max: c.max}
			for i := range c.pushed {
				q.push(sample("d", i))
			}
			require.Equal(t, c.wantDropped, q.dropped)
			require.Len(t, q.items, min(c.max, c.pushed))
			require.Equal(t, c.wantHead, values(q.batch(1))[0])
			// the newest are kept, in order
			want := []string{}
			for i := c.pushed - len(q.items); i < c.pushed; i++ {
				want = append(want, "d:"+strconv.Itoa(i))
			}
			require.Equal(t, want, values(q.items))
		})
	}
}

func TestQueueBatches(t *testing.T) {
	q := queue{max: 100}
	for i := range 5 {
		q.push(sample("a", i))
	}
	q.push(entry{pk: "p", dk: "a", event: "fault", params: json.RawMessage(`{}`)})
	q.push(sample("a", 5))
	q.push(sample("b", 6))

	require.Equal(t, []string{"a:0", "a:1", "a:2"}, values(q.batch(3)), "at most n samples")
	require.Equal(t, 3, q.popThrough(q.batch(3)[2].seq))
	require.Equal(t, []string{"a:3", "a:4"}, values(q.batch(10)), "a batch stops at an event")
	q.popThrough(q.batch(10)[1].seq)
	ev := q.batch(10)
	require.Len(t, ev, 1, "an event goes alone")
	require.Equal(t, "fault", ev[0].event)
	q.popThrough(ev[0].seq)
	require.Equal(t, []string{"a:5"}, values(q.batch(10)), "a batch is one device's")
	q.popThrough(q.batch(10)[0].seq)
	require.Equal(t, []string{"b:6"}, values(q.batch(10)))
	q.popThrough(q.batch(10)[0].seq)
	require.Nil(t, q.batch(10))
	require.Nil(t, q.items, "an empty queue releases its memory")
}

func TestQueuePopThroughAfterDrops(t *testing.T) {
	// A batch in flight while the full queue drops entries: only what is
	// still queued of the batch is removed, never newer entries.
	q := queue{max: 4}
	for i := range 4 {
		q.push(sample("d", i))
	}
	b := q.batch(3) // 0, 1, 2
	last := b[len(b)-1].seq
	q.push(sample("d", 4)) // drops 0
	q.push(sample("d", 5)) // drops 1
	require.Equal(t, 1, q.popThrough(last), "only entry 2 of the batch was left")
	require.Equal(t, []string{"d:3", "d:4", "d:5"}, values(q.items))
	require.Equal(t, uint64(2), q.dropped)
}

func TestResumeMessage(t *testing.T) {
	q := queue{max: 10}
	q.push(entry{pk: "p", dk: "d", params: json.RawMessage(`{"measurepoints":{"x":1},"time":1}`)})
	q.push(entry{pk: "p", dk: "d", params: json.RawMessage(`{"measurepoints":{"x":2},"time":2}`)})
	topic, payload := resumeMessage(q.batch(10), "9")
	require.Equal(t, "/sys/p/d/thing/measurepoint/resume/batch", topic)
	require.JSONEq(t, `{"id":"9","version":"1.0","method":"thing.measurepoint.resume.batch",
		"params":[{"measurepoints":{"x":1},"time":1},{"measurepoints":{"x":2},"time":2}]}`, string(payload))

	ev := []entry{{pk: "p", dk: "d", event: "fault", params: json.RawMessage(`{"value":{"code":1},"time":3}`)}}
	topic, payload = resumeMessage(ev, "10")
	require.Equal(t, "/sys/p/d/thing/event/fault/post", topic)
	require.JSONEq(t, `{"id":"10","version":"1.0","method":"thing.event.fault.post","params":{"value":{"code":1},"time":3}}`, string(payload))
}

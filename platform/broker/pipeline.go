package broker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gale-iot/gale/platform/bus"
)

// errProduceTimeout fails a request Kafka did not acknowledge within the produce timeout.
var errProduceTimeout = errors.New("kafka did not acknowledge within the produce timeout")

// pending is a device request handed to Kafka, waiting for its acknowledgement.
type pending struct {
	// msgs are the Kafka messages of the request: one, or one per entry of
	// a post/batch. The request is answered once Kafka answered them all.
	msgs     []bus.Message
	packetID uint16
	qos      byte
	topic    string // the request topic, answered on its _reply topic
	id       string // the request id
	kind     string // post, resume or event
	samples  int
	start    time.Time
	deadline time.Time

	// left counts the messages Kafka has not answered; firstErr is the
	// first failure among them. Both are guarded by pipeline.mu.
	left     int
	firstErr error
	// done and err are guarded by pipeline.mu.
	done bool
	err  error
}

// pipeline holds one connection's requests that wait for Kafka, in the
// order their PUBLISHes arrived, so that their PUBACKs and replies go out in
// that order (MQTT 3.1.1 §4.6) however Kafka's acknowledgements interleave.
// It bounds the requests in flight: the connection's read loop waits in
// acquire while max are, which is the back-pressure that keeps a device
// from flooding memory. It holds no goroutine while idle: the drain that
// writes acknowledgements runs only while some are ready.
type pipeline struct {
	max int
	// broken is set once an acknowledgement failed on an MQTT 3.1.1
	// connection, which then closes: nothing after it is acknowledged.
	broken atomic.Bool

	mu       sync.Mutex
	cond     sync.Cond
	queue    []*pending
	inflight int  // requests acquired and not yet finished (queued or being written)
	draining bool // a drain goroutine runs
	timer    *time.Timer
	// onTimeout runs when the head request's deadline passes.
	onTimeout func()
}

func newPipeline(max int) *pipeline {
	p := &pipeline{max: max}
	p.cond.L = &p.mu
	return p
}

// acquire waits until fewer than max requests are in flight and takes a
// place; it reports false if the pipeline broke meanwhile.
func (p *pipeline) acquire() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inflight >= p.max && !p.broken.Load() {
		p.cond.Wait()
	}
	if p.broken.Load() {
		return false
	}
	p.inflight++
	return true
}

// release gives back the place of a finished request.
func (p *pipeline) release() {
	p.mu.Lock()
	p.inflight--
	p.mu.Unlock()
	p.cond.Broadcast()
}

// settle waits until every request in flight is finished: a request
// answered at once (a refusal, a command reply) must not be acknowledged
// ahead of those before it.
func (p *pipeline) settle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inflight > 0 {
		p.cond.Wait()
	}
}

// push appends e, whose place was acquired, to the queue.
func (p *pipeline) push(e *pending) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, e)
	if len(p.queue) == 1 {
		p.arm(e.deadline)
	}
}

// arm sets the timer to the head's deadline; p.mu is held.
func (p *pipeline) arm(deadline time.Time) {
	d := time.Until(deadline)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
		return
	}
	p.timer.Reset(d)
}

// expire fails the head request if Kafka has not answered it by its deadline.
func (p *pipeline) expire() {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.mu.Unlock()
		return
	}
	head := p.queue[0]
	if !head.done {
		if time.Now().Before(head.deadline) { // the timer was re-armed late for a new head
			p.arm(head.deadline)
			p.mu.Unlock()
			return
		}
		head.done, head.err = true, errProduceTimeout
	}
	start := p.startDrain()
	p.mu.Unlock()
	if start {
		p.onTimeout()
	}
}

// complete records Kafka's answer for e; it reports whether the caller
// must start a drain (the head is ready and no drain runs). Answers after
// a timeout are ignored.
func (p *pipeline) complete(e *pending, err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.done {
		return false
	}
	e.done, e.err = true, err
	return p.startDrain()
}

// completeOne records Kafka's answer for one of e's messages, and completes
// e with the first failure once all are answered (see complete).
func (p *pipeline) completeOne(e *pending, err error) bool {
	p.mu.Lock()
	if err != nil && e.firstErr == nil {
		e.firstErr = err
	}
	e.left--
	last := e.left <= 0
	err = e.firstErr
	p.mu.Unlock()
	if !last {
		return false
	}
	return p.complete(e, err)
}

// startDrain marks a drain as running if one is needed; p.mu is held.
func (p *pipeline) startDrain() bool {
	if p.draining || len(p.queue) == 0 || !p.queue[0].done {
		return false
	}
	p.draining = true
	return true
}

// take removes the answered requests at the head of the queue, in order.
// It returns none, and ends the drain, when the head still waits.
func (p *pipeline) take() []*pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.queue) && p.queue[n].done {
		n++
	}
	if n == 0 {
		p.draining = false
		return nil
	}
	ready := make([]*pending, n)
	copy(ready, p.queue)
	clear(p.queue[:n])
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
		if p.timer != nil {
			p.timer.Stop()
		}
	} else {
		p.arm(p.queue[0].deadline)
	}
	return ready
}

package engine

import (
	"container/heap"
	"github.com/meshplug/meshplug/filters/abi"
	"time"
)

// Delayed is a stream waiting in a DelayQueue.
type Delayed struct {
	Due   time.Time
	ID    uint32 // the stream's context id
	index int    // position in the heap; -1 when not queued
}

// Queued reports whether d is in a queue.
func (d *Delayed) Queued() bool { return d.index >= 0 }

// DelayQueue is a VM's delayed streams ordered by due time (a binary min-heap): adding
// and removing a stream cost O(log n), finding the due ones O(k log n) for k due.
// The glue arms the plugin's tick for the earliest due time (see TickFor).
type DelayQueue struct{ h delayHeap }

// NewDelayed returns an entry for stream id due at due, not yet queued.
func NewDelayed(id uint32, due time.Time) *Delayed { return &Delayed{ID: id, Due: due, index: -1} }

// Push queues d.
func (q *DelayQueue) Push(d *Delayed) { heap.Push(&q.h, d) }

// Remove takes d out of the queue (a stream reset or finished during its delay). It
// is a no-op if d is not queued.
func (q *DelayQueue) Remove(d *Delayed) {
	if d.index >= 0 {
		heap.Remove(&q.h, d.index)
	}
}

// PopDue removes and appends to dst every entry due at or before now, earliest first.
func (q *DelayQueue) PopDue(now time.Time, dst []*Delayed) []*Delayed {
	for len(q.h) > 0 && !q.h[0].Due.After(now) {
		dst = append(dst, heap.Pop(&q.h).(*Delayed))
	}
	return dst
}

// Next returns the earliest due time (ok false when the queue is empty).
func (q *DelayQueue) Next() (due time.Time, ok bool) {
	if len(q.h) == 0 {
		return time.Time{}, false
	}
	return q.h[0].Due, true
}

// Len is the number of queued streams.
func (q *DelayQueue) Len() int { return len(q.h) }

type delayHeap []*Delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].Due.Equal(h[j].Due) {
		return h[i].ID < h[j].ID
	}
	return h[i].Due.Before(h[j].Due)
}
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *delayHeap) Push(x any) {
	d := x.(*Delayed)
	d.index = len(*h)
	*h = append(*h, d)
}
func (h *delayHeap) Pop() any {
	old := *h
	n := len(old)
	d := old[n-1]
	old[n-1] = nil
	d.index = -1
	*h = old[:n-1]
	return d
}

// MaxTick is the longest tick period proxy_set_tick_period_milliseconds can express
// (abi.MaxTickPeriodMillis ms, about 49.7 days).
const MaxTick = abi.MaxTickPeriodMillis * time.Millisecond

// TickFor is the tick period that makes the next tick fire at or just after due:
// the time from now to due rounded up to whole milliseconds (the unit of
// proxy_set_tick_period_milliseconds), at least 1 ms, at most MaxTick: a stream due
// later is not due at that tick, which arms the next one (a delay of 2^32 ms or more
// must not be cut to 32 bits).
func TickFor(due, now time.Time) time.Duration {
	d := due.Sub(now)
	switch {
	case d <= time.Millisecond:
		return time.Millisecond
	case d >= MaxTick:
		return MaxTick
	}
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

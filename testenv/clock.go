package testenv

import (
	"sort"
	"sync"
	"time"
)

// Clock is the host's source of wall-clock time: proxy_get_current_time_nanoseconds,
// the request.time property, WASI's realtime clock and the tick schedule all read it.
//
// Caveat: WASI's monotonic clock always follows real time (the Go runtime inside the
// guest relies on it advancing), and callout timeouts are measured in real time.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// FakeClock is a Clock that only moves when Advance is called. Ticks scheduled through
// it fire from Advance, on the caller's goroutine, in time order.
//
// Caveat: Advance takes worker locks to run proxy_on_tick; do not call it from inside an
// Upstream function or any other code that already runs under a worker.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []*fakeTimer
}

type fakeTimer struct {
	due    time.Time
	period time.Duration
	seq    uint64
	fn     func()
	dead   bool
}

// NewFakeClock returns a FakeClock that reads start until advanced.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the fake current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d, firing every due tick and timer in order of due
// time (ties in scheduling order); each runs with the clock set to its due time. A
// periodic tick that is due several times within d fires several times.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.timers {
			if t.dead || t.due.After(target) {
				continue
			}
			if next == nil || t.due.Before(next.due) || (t.due.Equal(next.due) && t.seq < next.seq) {
				next = t
			}
		}
		if next == nil {
			c.now = target
			c.compact()
			c.mu.Unlock()
			return
		}
		c.now = next.due
		if next.period > 0 {
			next.due = next.due.Add(next.period)
			c.seq++
			next.seq = c.seq
		} else {
			next.dead = true
		}
		fn := next.fn
		c.mu.Unlock()
		fn()
	}
}

func (c *FakeClock) compact() {
	live := c.timers[:0]
	for _, t := range c.timers {
		if !t.dead {
			live = append(live, t)
		}
	}
	c.timers = live
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].seq < c.timers[j].seq })
}

// schedule registers fn to run at now+after, then every period if period > 0. The
// returned function cancels it.
func (c *FakeClock) schedule(after, period time.Duration, fn func()) (cancel func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{due: c.now.Add(after), period: period, seq: c.seq, fn: fn}
	c.timers = append(c.timers, t)
	return func() {
		c.mu.Lock()
		t.dead = true
		c.mu.Unlock()
	}
}

// AfterFunc runs fn once, from Advance, when the clock reaches now+d. The returned
// function cancels it.
func (c *FakeClock) AfterFunc(d time.Duration, fn func()) (cancel func()) {
	return c.schedule(d, 0, fn)
}

// every runs fn each period on clock c: through the fake scheduler for a *FakeClock,
// from a time.Ticker goroutine otherwise.
func every(c Clock, period time.Duration, fn func()) (cancel func()) {
	if fc, ok := c.(*FakeClock); ok {
		return fc.schedule(period, period, fn)
	}
	t := time.NewTicker(period)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				fn()
			case <-stop:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.Stop()
			close(stop)
		})
	}
}

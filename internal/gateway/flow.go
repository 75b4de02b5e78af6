package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// window is the flow control of one direction of a stream: the bytes read from one
// side and not yet written to the other (held by a filter, queued in the host,
// waiting for a slow peer) may not exceed the buffer limit. The reader waits before
// each read while they do, as Envoy's codec stops reading from a socket once the
// buffers behind it are above their high watermark (per_connection_buffer_limit_bytes)
// and resumes below it. So a client that does not read a large response, or an
// upstream that does not read an upload, costs at most the limit (plus one read)
// per stream.
type window struct {
	mu      sync.Mutex
	cond    sync.Cond
	pending int64
	limit   int64
	closed  bool
}

func newWindow(limit int) *window {
	w := &window{limit: int64(limit)}
	w.cond.L = &w.mu
	return w
}

// wait blocks while the window is full; false once it is closed (the stream ended:
// stop reading).
func (w *window) wait() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.pending >= w.limit && !w.closed {
		w.cond.Wait()
	}
	return !w.closed
}

// add counts n bytes read.
func (w *window) add(n int) {
	w.mu.Lock()
	w.pending += int64(n)
	w.mu.Unlock()
}

// sub counts n bytes written out.
func (w *window) sub(n int) {
	w.mu.Lock()
	w.pending -= int64(n)
	if w.pending < w.limit {
		w.cond.Broadcast()
	}
	w.mu.Unlock()
}

// close wakes the reader for good.
func (w *window) close() {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
}

// idleTimer is Envoy's stream_idle_timeout: it fires when nothing moved on the stream
// (a request or response frame read or written, either side) for d. Envoy then
// answers 408 if the request had not ended, 504 if it had and no response started,
// and resets the stream otherwise (ActiveStream::onIdleTimeout).
//
// It is armed until it fires or stop ends it, whichever comes first; mu orders the
// two. Its callback (onFire) runs on the timer's goroutine without mu held, and stop
// waits for a callback in flight: once stop returns, onFire is not running and never
// runs again, so the handler that calls stop before it returns knows that nothing
// touches its ResponseWriter afterwards. onFire must therefore never wait for the
// handler (see streamIdle).
type idleTimer struct {
	d      time.Duration
	onFire func()
	start  time.Time    // the monotonic clock's origin of last
	last   atomic.Int64 // nanoseconds from start to the last activity
	fired  chan struct{}

	mu      sync.Mutex
	done    sync.Cond // signalled when a callback in flight returns
	t       *time.Timer
	hasShot bool // fired closed: the stream timed out
	ended   bool // stop was called: never fire
	running bool // onFire is in flight
}

func newIdleTimer(d time.Duration, onFire func()) *idleTimer {
	it := &idleTimer{d: d, onFire: onFire, start: time.Now(), fired: make(chan struct{})}
	it.done.L = &it.mu
	if d <= 0 {
		return it
	}
	it.mu.Lock() // the callback cannot see it.t unset
	it.t = time.AfterFunc(d, it.expire)
	it.mu.Unlock()
	return it
}

// expire runs when the timer goes off: it re-arms it for the rest of d if there
// was activity since, else fires.
func (it *idleTimer) expire() {
	it.mu.Lock()
	if it.ended || it.hasShot {
		it.mu.Unlock()
		return
	}
	if since := time.Duration(time.Since(it.start).Nanoseconds() - it.last.Load()); since < it.d {
		it.t.Reset(it.d - since)
		it.mu.Unlock()
		return
	}
	it.hasShot, it.running = true, true
	close(it.fired)
	it.mu.Unlock()

	defer func() {
		it.mu.Lock()
		it.running = false
		it.done.Broadcast()
		it.mu.Unlock()
	}()
	it.onFire()
}

// touch records activity.
func (it *idleTimer) touch() { it.last.Store(time.Since(it.start).Nanoseconds()) }

// stop ends the timer for good, waits for a callback in flight and says whether
// the timer fired.
func (it *idleTimer) stop() (fired bool) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.ended = true
	if it.t != nil {
		it.t.Stop()
	}
	for it.running {
		it.done.Wait()
	}
	return it.hasShot
}

// routeTimeout is the route's timeout (Envoy's default 15 s): it starts when the
// upstream got the whole request (Envoy: when the downstream request ended) and
// covers the whole response; when it fires the upstream request is cancelled.
type routeTimeout struct {
	d        time.Duration
	cancel   context.CancelFunc
	once     sync.Once
	t        *time.Timer
	mu       sync.Mutex
	timedOut atomic.Bool
}

func (rt *routeTimeout) start() {
	rt.once.Do(func() {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		rt.t = time.AfterFunc(rt.d, func() {
			rt.timedOut.Store(true)
			rt.cancel()
		})
	})
}

func (rt *routeTimeout) stop() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.t != nil {
		rt.t.Stop()
	}
}

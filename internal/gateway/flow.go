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
type idleTimer struct {
	d     time.Duration
	last  atomic.Int64 // unix nanoseconds of the last activity
	t     *time.Timer
	fired chan struct{}
	once  sync.Once
}

func newIdleTimer(d time.Duration, onFire func()) *idleTimer {
	it := &idleTimer{d: d, fired: make(chan struct{})}
	it.touch()
	if d <= 0 {
		return it
	}
	it.t = time.AfterFunc(d, func() { it.check(onFire) })
	return it
}

func (it *idleTimer) check(onFire func()) {
	since := time.Duration(time.Now().UnixNano() - it.last.Load())
	if since < it.d {
		it.t.Reset(it.d - since)
		return
	}
	it.once.Do(func() {
		close(it.fired)
		onFire()
	})
}

// touch records activity.
func (it *idleTimer) touch() { it.last.Store(time.Now().UnixNano()) }

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
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

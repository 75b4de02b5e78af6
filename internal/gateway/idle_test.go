package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/gateway/gatewaytest"
)

// The contract of the stream idle timer that the handler's end relies on: once
// stop returns, the callback is not running and never runs again, whether it was
// in flight when stop was called or the timer was about to be re-armed.
func TestIdleTimerStop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		d     time.Duration
		pause time.Duration // how long the callback takes (paces it, asserts nothing)
		busy  bool          // activity right up to stop: the timer keeps re-arming
		runs  int
	}{
		{name: "callback in flight", d: time.Microsecond, pause: 2 * time.Millisecond, runs: 20},
		{name: "re-armed by activity", d: 100 * time.Microsecond, busy: true, runs: 1000},
		{name: "stopped as it fires", d: 50 * time.Microsecond, runs: 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var late, fired atomic.Int64
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < tc.runs; i += 4 {
						var ended atomic.Bool
						started := make(chan struct{})
						var once sync.Once
						it := newIdleTimer(tc.d, func() {
							once.Do(func() { close(started) })
							fired.Add(1)
							time.Sleep(tc.pause)
							if ended.Load() {
								late.Add(1)
							}
						})
						switch {
						case tc.pause > 0:
							<-started
						case tc.busy:
							for range i % 16 {
								it.touch()
								time.Sleep(10 * time.Microsecond)
							}
						default:
							time.Sleep(time.Duration(i%100) * time.Microsecond)
						}
						it.stop()
						ended.Store(true)
						// Room for a callback the timer would wrongly still run.
						time.Sleep(3 * tc.d)
					}
				}()
			}
			wg.Wait()
			time.Sleep(10 * time.Millisecond) // a last wrongly re-armed timer fires
			assert.Zero(t, late.Load(), "callbacks that ran after stop returned (of %d)", fired.Load())
			if tc.pause > 0 {
				assert.Equal(t, int64(tc.runs), fired.Load(), "each timer fired once")
			}
		})
	}
}

// deadlineWriter is a ResponseWriter whose deadlines, set through an
// http.ResponseController, are counted, and that says when one was set after the
// handler returned (HTTP/2's writer panics then; HTTP/1.1's would cut the next
// request on the connection). Setting a deadline takes a while, as it may when it
// waits for the connection's serve loop.
type deadlineWriter struct {
	*httptest.ResponseRecorder
	ended       atomic.Bool
	calls, late *atomic.Int64
}

func (w *deadlineWriter) deadline() error {
	w.calls.Add(1)
	time.Sleep(time.Millisecond)
	if w.ended.Load() {
		w.late.Add(1)
	}
	return nil
}

func (w *deadlineWriter) SetReadDeadline(time.Time) error  { return w.deadline() }
func (w *deadlineWriter) SetWriteDeadline(time.Time) error { return w.deadline() }
func (w *deadlineWriter) EnableFullDuplex() error          { return nil }

// The stream idle timeout never touches a stream whose handler has returned: many
// streams whose upstream answers around the moment the timer fires, or never, so
// that the handler ends while the timer's callback runs (504, the upstream gave
// nothing) or just as it re-arms (the response just went out).
func TestStreamIdleNeverOutlivesHandler(t *testing.T) {
	const idle = 5 * time.Millisecond
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		delay, err := time.ParseDuration(r.URL.Query().Get("delay"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(delay):
			_, _ = w.Write([]byte("ok"))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(up.Close)
	sum := sha256.Sum256([]byte("k"))
	p, err := v1alpha1.Decode(fmt.Appendf(nil, `
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: idle, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: idle}]
  auth:
    api_keys:
      from_headers: [x-api-key]
      keys: [{consumer: tester, sha256: %s}]
    default_rule: {public: true}
`, hex.EncodeToString(sum[:])))
	require.NoError(t, err)
	g, err := New(context.Background(), Config{
		Policy: p, WasmDir: gatewaytest.WasmDir(t), Workers: 2, StreamIdleTimeout: idle,
		UpstreamTimeout: time.Hour, Upstreams: []Upstream{{Name: "v1", Address: up.Listener.Addr().String()}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Shutdown(context.Background()) })

	const clients, perClient = 8, 40
	var calls, late atomic.Int64
	statuses := make([]map[int]int, clients)
	var wg sync.WaitGroup
	for c := range clients {
		statuses[c] = map[int]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				// Every fourth never answers within the idle timeout; the others
				// answer within ±20% of it.
				delay := idle * time.Duration(80+(c*perClient+i)*40/(clients*perClient)) / 100
				if i%4 == 0 {
					delay = time.Hour
				}
				r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/p?delay=%s", delay), nil)
				r.RemoteAddr = net.JoinHostPort("127.0.0.1", "4000")
				w := &deadlineWriter{ResponseRecorder: httptest.NewRecorder(), calls: &calls, late: &late}
				func() {
					defer func() { _ = recover() }() // the handler resets a stream with ErrAbortHandler
					g.ServeHTTP(w, r)
				}()
				w.ended.Store(true)
				statuses[c][w.Code]++
			}
		}()
	}
	wg.Wait()
	time.Sleep(4 * idle) // a wrongly re-armed timer fires
	total := map[int]int{}
	for _, s := range statuses {
		for code, n := range s {
			total[code] += n
		}
	}
	t.Logf("statuses %v, deadlines set %d", total, calls.Load())
	assert.Zero(t, late.Load(), "deadlines set on a stream whose handler had returned (of %d)", calls.Load())
	assert.Positive(t, calls.Load(), "the idle timeout fired")
	assert.GreaterOrEqual(t, total[http.StatusGatewayTimeout], clients*perClient/4, "each stream the upstream never answers gets 504")
	for code := range total {
		assert.Contains(t, []int{http.StatusOK, http.StatusGatewayTimeout}, code)
	}
}

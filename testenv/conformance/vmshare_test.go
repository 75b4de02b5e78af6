package conformance

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

// TestVMSharing: plugins with the same vm_id, vm configuration and module share one VM
// per worker (cpp-host's VM key), each with its own root context; a different vm_id
// gets its own VM.
func TestVMSharing(t *testing.T) {
	wasm := guest(t)
	for _, tc := range []struct {
		name      string
		vmIDs     [2]string
		vmStarts  float64 // OnVMStart calls in plugin 0's VM: one per root context
		plugins   float64
		contextID float64 // plugin 0's stream context: after both roots when shared
	}{
		{name: "same vm_id shares", vmIDs: [2]string{"shared", "shared"}, vmStarts: 2, plugins: 2, contextID: 3},
		{name: "other vm_id does not", vmIDs: [2]string{"one", "two"}, vmStarts: 1, plugins: 1, contextID: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{Workers: 2},
				testenv.Plugin{Name: "first", VMID: tc.vmIDs[0], Wasm: wasm, Config: []byte(`{}`)},
				testenv.Plugin{Name: "second", VMID: tc.vmIDs[1], Wasm: wasm, Config: []byte(`{"tick_ms":0}`)})
			for w := range 2 {
				resp := do(t, h, testenv.Request{Worker: w, Path: "/op/config", Headers: [][2]string{{"x-op", "config"}}})
				r := decode(t, resp.Body)
				assert.Equal(t, tc.vmStarts, r["vm_starts"])
				assert.Equal(t, tc.plugins, r["plugins"])
				assert.Equal(t, float64(1), r["root_id"])
				assert.Equal(t, tc.contextID, r["context_id"])
				assert.Equal(t, "{}", r["plugin_config"])
			}
			// Both plugins run their own stream contexts in the shared VM.
			resp := do(t, h, testenv.Request{Path: "/plain"})
			assert.Equal(t, 200, resp.Status)
		})
	}
}

// TestReconfigure: Host.Reconfigure delivers a new configuration like an xDS update: a
// new root context in the live VM for new streams, the old one drained (a stream paused
// on a callout finishes on it, then it gets proxy_on_done); a refused configuration
// leaves the old one.
func TestReconfigure(t *testing.T) {
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate
		_, _ = w.Write([]byte("late"))
	}))
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(func() { release(); srv.Close() })
	h := start(t, setup{vmID: "re", config: `{"tick_ms":0}`, opts: testenv.Options{Workers: 2,
		Clusters: map[string]string{"backend": strings.TrimPrefix(srv.URL, "http://")}}})
	before := report(t, h, "config")
	require.Equal(t, `{"tick_ms":0}`, before["plugin_config"])

	s := h.Start(testenv.Request{Worker: 0, Path: "/paused", Headers: [][2]string{
		{"x-op", "http-call"}, {"x-cluster", "backend"}, {"x-call-path", "/"}, {"x-resume", "1"}}})
	require.False(t, s.Done())

	require.NoError(t, h.Reconfigure(context.Background(), 0, []byte(`{}`)))
	for w := range 2 {
		after := decode(t, do(t, h, testenv.Request{Worker: w, Path: "/op/config", Headers: [][2]string{{"x-op", "config"}}}).Body)
		assert.Equal(t, "{}", after["plugin_config"])
		assert.NotEqual(t, before["root_id"], after["root_id"], "a new root context")
		assert.Equal(t, float64(2), after["plugins"], "same VM: its second root context")
	}
	done, _, _ := h.SharedData("re", "plugins_done")
	assert.Equal(t, `{"tick_ms":0};`, string(done), "worker 1's old root had no streams: deleted at once; worker 0's drains")

	release()
	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	require.NotNil(t, resp.Upstream, "the paused stream finished on its old root context")
	v, _ := resp.Upstream.Headers.Get("x-call-body")
	assert.Equal(t, "late", v)
	done, _, _ = h.SharedData("re", "plugins_done")
	assert.Equal(t, `{"tick_ms":0};{"tick_ms":0};`, string(done))

	err = h.Reconfigure(context.Background(), 0, []byte(`{"fail_configure":true}`))
	assert.ErrorContains(t, err, "proxy_on_configure")
	after := report(t, h, "config")
	assert.Equal(t, "{}", after["plugin_config"], "a refused configuration leaves the old one")
}

func decode(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var r map[string]any
	require.NoError(t, json.Unmarshal(body, &r), string(body))
	return r
}

// TestTicksPerRootContext: ticks belong to the root context that set them (Envoy's
// Wasm::setTimerPeriod / tickHandler key them by root context id): after Reconfigure,
// the old root context switching its tick off when it is done must not stop the new
// one's.
func TestTicksPerRootContext(t *testing.T) {
	clock := testenv.NewFakeClock(time.Unix(1_700_000_000, 0))
	h := start(t, setup{vmID: "ticks", config: `{"tick_ms":1000,"stop_tick_on_done":true}`,
		opts: testenv.Options{Clock: clock}})
	clock.Advance(2 * time.Second)
	n, _ := h.Metric("conformance.ticks")
	require.Equal(t, int64(2), n)

	// The old root context has no streams: it is done at once and stops its tick.
	require.NoError(t, h.Reconfigure(context.Background(), 0, []byte(`{"tick_ms":1000}`)))
	done, _, _ := h.SharedData("ticks", "plugins_done")
	require.Equal(t, `{"tick_ms":1000,"stop_tick_on_done":true};`, string(done))
	clock.Advance(3 * time.Second)
	n, _ = h.Metric("conformance.ticks")
	assert.Equal(t, int64(5), n, "the new root context ticks on")

	// The new root context switching its own tick off does stop it.
	require.NoError(t, h.Reconfigure(context.Background(), 0, []byte(`{"tick_ms":0}`)))
	clock.Advance(3 * time.Second)
	n, _ = h.Metric("conformance.ticks")
	assert.Equal(t, int64(5), n, "the old root (tick_ms 1000) is gone, the newest sets none")
}

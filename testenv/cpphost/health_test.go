package cpphost

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthRequests is how many requests the timer guest must survive on a healthy host:
// 64 KiB of garbage each, a few hundred garbage collections with the poller on.
const healthRequests = 20000

// TestRuntimeHealth backs docs/compatibility.md's table: a Go module whose runtime
// poller is on (testdata/timerguest starts a Go timer) under garbage-collection load,
// on the host library of each Envoy era.
func TestRuntimeHealth(t *testing.T) {
	wasm := BuildGuest(t, "testdata/timerguest")
	sc := Scenario{
		Plugins: []Plugin{{Name: "timerguest", RootID: "timerguest", VMID: "timerguest", Wasm: wasm, Config: "{}"}},
		Steps:   []Step{{Request: &Request{Path: "/"}, Repeat: healthRequests}},
	}
	for _, tc := range []struct {
		host    string
		loads   bool
		loadErr string // the error Envoy would log for a refused module
		dies    bool   // the VM fails before healthRequests
	}{
		{host: Host52a0291, loads: true},
		{host: Host3930b7b, loads: true, dies: true},
		{host: Host63cb9c1, loadErr: "Failed to load Wasm module due to a missing import: wasi_snapshot_preview1.sched_yield"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			got := RunCppHost(t, tc.host, sc)
			require.Equal(t, tc.loads, got.Loaded(), "loads: %+v", got.Loads)
			if !tc.loads {
				assert.Contains(t, got.Loads[0].Errors, tc.loadErr)
				// Only the first missing import is reported (cpp-host's WAMR link step
				// stops there).
				assert.NotContains(t, got.Loads[0].Errors, "poll_oneoff")
				return
			}
			require.Len(t, got.Results, 1)
			st := got.Results[0].Repeat
			require.NotNil(t, st)
			require.Equal(t, healthRequests, st.Count)
			if !tc.dies {
				assert.Equal(t, -1, st.FirstFailure, "statuses %v", st.Statuses)
				assert.Equal(t, map[string]int{"200": healthRequests}, st.Statuses)
				assert.False(t, got.VMFailed)
				return
			}
			require.GreaterOrEqual(t, st.FirstFailure, 1, "the VM died (statuses %v); logs: %v", st.Statuses, got.Logs)
			assert.True(t, got.VMFailed)
			assert.Equal(t, healthRequests-st.FirstFailure, st.Statuses["503"], "every request after the failure gets Envoy's fail-closed 503")
			var logged, trapped bool
			for _, l := range got.Logs {
				logged = logged || strings.Contains(l.Message, "poll_oneoff failed")
				// The runtime's throw ends in a trap (unreachable), not proc_exit.
				trapped = trapped || strings.Contains(l.Message, "proxy_on_request_headers failed: Exception: unreachable")
			}
			assert.True(t, logged, "the runtime's poll_oneoff message is logged; logs: %v", got.Logs)
			assert.True(t, trapped, "the VM trapped; logs: %v", got.Logs)
			t.Logf("%s: the VM died at request %d of %d", tc.host, st.FirstFailure, healthRequests)
		})
	}
}

package cpphost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/internal/wasmcompat"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// compatModule returns the path of path's module rewritten by wasmcompat.Rewrite, what
// `meshplug compat` and `make build` write.
func compatModule(t testing.TB, path string) string {
	t.Helper()
	in, err := os.ReadFile(path)
	require.NoError(t, err)
	rewritten, res, err := wasmcompat.Rewrite(in)
	require.NoError(t, err, "rewriting %s", path)
	require.False(t, res.Already, "%s was rewritten before", path)
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	require.NoError(t, os.WriteFile(out, rewritten, 0o644))
	return out
}

// CompatScenario is sc with every plugin's module rewritten by wasmcompat.
func CompatScenario(t testing.TB, sc Scenario) Scenario {
	t.Helper()
	out := sc
	out.Plugins = append([]Plugin(nil), sc.Plugins...)
	for i := range out.Plugins {
		out.Plugins[i].Wasm = compatModule(t, sc.Plugins[i].Wasm)
	}
	return out
}

// TestRuntimeHealthCompat: the timer guest rewritten by wasmcompat survives
// healthRequests requests with garbage collections and its poller on, on every era
// (TestRuntimeHealth shows the untouched module dying on 3930b7b and refused on 63cb9c1).
func TestRuntimeHealthCompat(t *testing.T) {
	raw := BuildGuest(t, "testdata/timerguest")
	wasm := compatModule(t, raw)
	sc := Scenario{
		Plugins: []Plugin{{Name: "timerguest", RootID: "timerguest", VMID: "timerguest", Wasm: wasm, Config: "{}"}},
		Steps:   []Step{{Request: &Request{Path: "/"}, Repeat: healthRequests}},
	}
	for _, host := range Hosts {
		t.Run("compat/"+host, func(t *testing.T) {
			got := RunCppHost(t, host, sc)
			require.True(t, got.Loaded(), "loads: %+v", got.Loads)
			require.Len(t, got.Results, 1)
			st := got.Results[0].Repeat
			require.NotNil(t, st)
			assert.Equal(t, healthRequests, st.Count)
			assert.Equal(t, -1, st.FirstFailure, "statuses %v", st.Statuses)
			assert.Equal(t, map[string]int{"200": healthRequests}, st.Statuses)
			assert.False(t, got.VMFailed)
			for _, l := range got.Logs {
				assert.NotContains(t, l.Message, "poll_oneoff", "logs: %v", got.Logs)
				assert.False(t, strings.Contains(l.Message, "fatal error"), "log: %s", l.Message)
			}
		})
	}
}

package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBindingModuleChecks builds a module that links the guest binding
// (filters/proxywasm) and checks its imports and exports against this host.
func TestBindingModuleChecks(t *testing.T) {
	wasm, err := BuildGuest("testdata/bindingcheck")
	require.NoError(t, err, "the guest binding must build")
	_, err = compile(context.Background(), "bindingcheck", wasm)
	require.NoError(t, err)
}

// TestBindingWithoutVMContext runs the same module, which never calls SetVMContext:
// the binding must say so loudly at start, and the module passes requests through.
func TestBindingWithoutVMContext(t *testing.T) {
	h := NewForTest(t, Options{}, Plugin{Wasm: MustBuildGuest(t, "testdata/bindingcheck")})
	resp := h.MustDo(t, Request{Path: "/"})
	assert.Equal(t, 200, resp.Status)
	assert.NotNil(t, resp.Upstream)
	var critical []string
	var workers []int
	for _, l := range h.Logs() {
		if l.Level == abi.LogCritical {
			critical = append(critical, l.Message)
			workers = append(workers, l.Worker)
		}
	}
	// The configuration canary's VM (worker -1, as Envoy's createWasm) and worker 0's.
	require.Equal(t, []int{-1, 0}, workers, "one critical line per VM")
	assert.True(t, strings.Contains(critical[0], "no VMContext registered") &&
		strings.Contains(critical[0], "SetVMContext"), critical[0])
}

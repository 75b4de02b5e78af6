package proxywasm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Register keeps one filter per root id, with its policy; RootIDs lists them sorted.
// (Dispatch by root id runs in the compiled bundle: filters/meshplug's tests.)
func TestRegister(t *testing.T) {
	saved := rootRegistry
	t.Cleanup(func() { rootRegistry = saved })
	rootRegistry = nil

	Register("ratelimit", DefaultVMContext{}, FailOpen)
	Register("auth", DefaultVMContext{}, FailClosed)
	assert.Equal(t, []string{"auth", "ratelimit"}, RootIDs())
	assert.Equal(t, FailClosed, rootRegistry["auth"].Policy)
	assert.Equal(t, FailOpen, rootRegistry["ratelimit"].Policy)

	cases := []struct {
		name   string
		rootID string
		vm     VMContext
		panics string
	}{
		{"twice", "auth", DefaultVMContext{}, "proxywasm: root id auth registered twice"},
		{"nil context", "fault", nil, "proxywasm: Register(fault): nil VMContext"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.PanicsWithValue(t, c.panics, func() { Register(c.rootID, c.vm, FailOpen) })
		})
	}
	assert.Equal(t, []string{"auth", "ratelimit"}, RootIDs(), "a refused registration leaves the others")
}

// Register with root id "" sets the module's default filter and its policy (what a
// one-filter module's glue does), and adds no root id.
func TestRegisterDefault(t *testing.T) {
	savedRegistry, savedVM, savedPolicy := rootRegistry, vmContext, failurePolicy
	t.Cleanup(func() { rootRegistry, vmContext, failurePolicy = savedRegistry, savedVM, savedPolicy })
	rootRegistry, vmContext, failurePolicy = nil, nil, FailOpen

	vm := &DefaultVMContext{}
	Register("", vm, FailClosed)
	assert.Same(t, vm, vmContext)
	assert.Equal(t, FailClosed, failurePolicy)
	assert.Empty(t, RootIDs())
	require.PanicsWithValue(t, "proxywasm: Register(): nil VMContext", func() { Register("", nil, FailOpen) })
}

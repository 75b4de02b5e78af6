package main

import (
	"testing"

	"github.com/meshplug/meshplug/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHeaderRewrite drives the compiled headerrewrite.wasm through testenv.
func TestHeaderRewrite(t *testing.T) {
	h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Wasm: testenv.MustBuildGuest(t, ".")})
	resp := h.MustDo(t, testenv.Request{Path: "/", Headers: [][2]string{
		{"X-Internal-User", "admin"}, {"x-internal-user", "root"}, {"x-hello", "client"}, {"x-other", "kept"},
	}})
	require.NotNil(t, resp.Upstream, "the request must reach the upstream")
	up := resp.Upstream.Headers
	assert.Empty(t, up.Values("x-internal-user"), "every client copy is removed")
	assert.Equal(t, []string{"world"}, up.Values("x-hello"), "replaced, not added")
	v, ok := up.Get("x-other")
	assert.True(t, ok)
	assert.Equal(t, "kept", v)
	v, _ = resp.Headers.Get("x-filtered-by")
	assert.Equal(t, "headerrewrite", v)
	assert.Equal(t, 200, resp.Status)
}

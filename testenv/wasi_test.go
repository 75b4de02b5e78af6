package testenv

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWASIFullSet: testenv loads a module importing every WASI call proxy-wasm-cpp-host
// provides since #533 (testdata/wasiguest) and answers each as cpp-host 52a0291's
// src/exports.cc does. testenv/cpphost's TestWASIGuest runs the same guest on the host
// library and compares.
func TestWASIFullSet(t *testing.T) {
	h := NewForTest(t, Options{}, Plugin{Wasm: MustBuildGuest(t, "testdata/wasiguest")})
	resp := h.MustDo(t, Request{Path: "/"})
	require.Equal(t, 200, resp.Status)
	got, ok := resp.Headers.Get("x-wasi")
	require.True(t, ok)
	results := map[string]string{}
	for _, f := range strings.Fields(got) {
		name, val, _ := strings.Cut(f, "=")
		results[name] = val
	}
	for name, want := range map[string]string{
		"clock_res_get.0": "0/1", "clock_res_get.2": "58", // 1 ns; CPU-time clocks ENOTSUP
		"fd_advise": "0", "fd_allocate.1": "0", "fd_allocate.5": "8", "fd_datasync": "0",
		"fd_fdstat_set_rights": "8", "fd_filestat_get": "8", "fd_filestat_set_size": "0",
		"fd_filestat_set_times": "8", "fd_pread": "52", "fd_pwrite": "0/7", "fd_readdir": "20/0",
		"fd_renumber": "58", "fd_sync": "8", "fd_tell": "0/0", "fd_tell.4": "8",
		"path_create_directory": "58", "path_filestat_get": "58", "path_filestat_set_times": "58",
		"path_link": "58", "path_open": "44", "path_readlink": "58/0", "path_remove_directory": "58",
		"path_rename": "58", "path_symlink": "58", "path_unlink_file": "58",
		"sock_accept": "58/0", "sock_recv": "58/0/0", "sock_send": "58/0", "sock_shutdown": "58",
	} {
		assert.Equal(t, want, results[name], name)
	}
	var logged bool
	for _, l := range h.Logs() {
		logged = logged || l.Message == "pwrite" // fd_pwrite to stderr is a log line
	}
	assert.True(t, logged, "logs: %v", h.Logs())
}

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/wasmcompat"
	"github.com/meshplug/meshplug/testenv"
)

func TestCompat(t *testing.T) {
	raw := testenv.MustBuildGuest(t, "../../examples/requireheader")
	dir := t.TempDir()
	in := filepath.Join(dir, "requireheader.wasm")
	require.NoError(t, os.WriteFile(in, raw, 0o644))
	out := filepath.Join(dir, "out.wasm")

	code, stdout, stderr := runCLI(t, "", "compat", in, "-o", out)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "replaced sched_yield, poll_oneoff, fd_fdstat_set_flags, fd_fdstat_get")
	rewritten, err := os.ReadFile(out)
	require.NoError(t, err)
	require.NoError(t, wasmcompat.Validate(rewritten))
	names, err := wasmcompat.Replaced(rewritten)
	require.NoError(t, err)
	assert.Equal(t, []string{"sched_yield", "poll_oneoff", "fd_fdstat_set_flags", "fd_fdstat_get"}, names)
	// The rewritten module behaves as the untouched one on testenv.
	for _, wasm := range [][]byte{raw, rewritten} {
		h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Name: "requireheader", Wasm: wasm})
		assert.Equal(t, 200, h.MustDo(t, testenv.Request{Path: "/", Headers: [][2]string{{"x-tenant", "acme"}}}).Status)
		assert.Equal(t, 400, h.MustDo(t, testenv.Request{Path: "/"}).Status)
	}

	t.Run("already rewritten", func(t *testing.T) {
		again := filepath.Join(dir, "again.wasm")
		code, stdout, stderr := runCLI(t, "", "compat", out, "-o", again)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "already rewritten (sched_yield, poll_oneoff, fd_fdstat_set_flags, fd_fdstat_get)")
		b, err := os.ReadFile(again)
		require.NoError(t, err)
		assert.Equal(t, rewritten, b)
	})

	t.Run("in place, raw copies kept", func(t *testing.T) {
		build := t.TempDir()
		a, b := filepath.Join(build, "a.wasm"), filepath.Join(build, "b.wasm")
		require.NoError(t, os.WriteFile(a, raw, 0o644))
		require.NoError(t, os.WriteFile(b, rewritten, 0o644))
		rawDir := filepath.Join(build, "raw")
		code, stdout, stderr := runCLI(t, "", "compat", "-i", "--raw-dir", rawDir, a, b)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, b+": already rewritten")
		gotA, err := os.ReadFile(a)
		require.NoError(t, err)
		assert.Equal(t, rewritten, gotA)
		keptA, err := os.ReadFile(filepath.Join(rawDir, "a.wasm"))
		require.NoError(t, err)
		assert.Equal(t, raw, keptA, "the untouched module is kept")
		assert.NoFileExists(t, filepath.Join(rawDir, "b.wasm"), "nothing to keep for a module rewritten before")
	})

	t.Run("imports only newer hosts have", func(t *testing.T) {
		in := filepath.Join(dir, "wasiguest.wasm")
		require.NoError(t, os.WriteFile(in, testenv.MustBuildGuest(t, "../../testenv/testdata/wasiguest"), 0o644))
		out := filepath.Join(dir, "wasiguest.compat.wasm")
		code, stdout, stderr := runCLI(t, "", "compat", in, "-o", out)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, out+": warning: still imports ")
		assert.Contains(t, stdout, "fd_tell")
		assert.Contains(t, stdout, "which Envoy provides only since 1.39")
	})

	notGo := filepath.Join(dir, "notgo.wasm")
	require.NoError(t, os.WriteFile(notGo, []byte("\x00asm\x01\x00\x00\x00"), 0o644))
	text := filepath.Join(dir, "text.wat")
	require.NoError(t, os.WriteFile(text, []byte("(module)"), 0o644))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not Go", []string{"compat", notGo, "-o", filepath.Join(dir, "x.wasm")}, notGo + `: not a Go wasip1 module: it has no "go:buildid" custom section`},
		{"not wasm", []string{"compat", text, "-o", filepath.Join(dir, "x.wasm")}, "not a WebAssembly binary module"},
		{"missing", []string{"compat", filepath.Join(dir, "nope.wasm"), "-o", filepath.Join(dir, "x.wasm")}, "no such file"},
		{"no output", []string{"compat", in}, "name the output with -o OUT.wasm"},
		{"two inputs", []string{"compat", in, in, "-o", filepath.Join(dir, "x.wasm")}, "-o takes exactly one input module, got 2"},
		{"both modes", []string{"compat", "-i", in, "-o", filepath.Join(dir, "x.wasm")}, "use either -o or -i"},
		{"raw-dir without -i", []string{"compat", in, "-o", filepath.Join(dir, "x.wasm"), "--raw-dir", dir}, "--raw-dir goes with -i"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr, tc.want)
			assert.NoFileExists(t, filepath.Join(dir, "x.wasm"), "nothing written")
		})
	}
}

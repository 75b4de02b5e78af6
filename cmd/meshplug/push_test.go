package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

// TestPush pushes two modules to a real registry and pulls each back by the printed
// reference: same bytes, and the printed sha256 is the manifest digest.
func TestPush(t *testing.T) {
	addr := ocitest.Registry(t)
	dir := t.TempDir()
	mods := map[string][]byte{"auth": []byte("\x00asm auth"), "fault": []byte("\x00asm fault")}
	for f, b := range mods {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f+".wasm"), b, 0o644))
	}
	code, out, errs := runCLI(t, "", "push", "--wasm-dir", dir, "--repository", addr+"/mp", "--tag", "v1", "--plain-http")
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	for _, l := range lines {
		var f, url, sum string
		_, err := fmt.Sscanf(l, "%s %s sha256=%s", &f, &url, &sum)
		require.NoError(t, err, l)
		assert.Equal(t, "oci://"+addr+"/mp/"+f+":v1", url)
		repo, err := remote.NewRepository(addr + "/mp/" + f)
		require.NoError(t, err)
		repo.PlainHTTP = true
		got, desc, err := wasmoci.Pull(context.Background(), repo, "v1")
		require.NoError(t, err)
		want, have := sha256.Sum256(mods[f]), sha256.Sum256(got)
		assert.Equal(t, hex.EncodeToString(want[:]), hex.EncodeToString(have[:]), f)
		assert.Equal(t, desc.Digest.Encoded(), sum, f)
	}

	code, _, errs = runCLI(t, "", "push", "--wasm-dir", t.TempDir(), "--repository", addr+"/mp")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no filter modules")
}

func TestControllerFlags(t *testing.T) {
	code, _, errs := runCLI(t, "", "controller", "--wasm-dir", t.TempDir())
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, `required flag(s) "module-base-url" not set`)
	code, _, errs = runCLI(t, "", "controller", "--wasm-dir", "/nonexistent", "--module-base-url", "http://x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no filter modules (<filter>.wasm) in /nonexistent")
}

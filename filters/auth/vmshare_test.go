//go:build !wasip1

package main

// auth in the two VM layouts Envoy uses: plugins sharing one VM (same vm_id and
// module: several root contexts in one VM), and a live configuration update
// (testenv's Host.Reconfigure: a new root context in the running VM).

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/testenv"
)

// keyConfig requires API key key on paths under prefix and lets other paths through.
func keyConfig(t testing.TB, prefix, key string) []byte {
	return mustJSON(t, corpConfig(map[string]any{
		"api_keys":     map[string]any{"keys": []any{map[string]any{"consumer": "ci", "sha256": config.HashSecret("", key)}}},
		"rules":        []any{map[string]any{"match": map[string]any{"prefix": prefix}, "requires": []any{"api_keys"}}},
		"default_rule": map[string]any{"public": true},
	}))
}

func keyReq(w int, path, key string) testenv.Request {
	return testenv.Request{Worker: w, Path: path, Headers: [][2]string{{"x-api-key", key}}}
}

func TestSharedVM(t *testing.T) {
	wasm := authWasm(t)
	h := testenv.NewForTest(t, testenv.Options{Workers: 2},
		testenv.Plugin{Name: "auth-a", VMID: "auth", Wasm: wasm, Config: keyConfig(t, "/a", "key-a")},
		testenv.Plugin{Name: "auth-b", VMID: "auth", Wasm: wasm, Config: keyConfig(t, "/b", "key-b")})
	for w := range 2 {
		assert.Equal(t, 200, do(t, h, keyReq(w, "/a", "key-a")).Status)
		assert.Equal(t, 401, do(t, h, keyReq(w, "/a", "key-b")).Status)
		assert.Equal(t, 200, do(t, h, keyReq(w, "/b", "key-b")).Status)
		assert.Equal(t, 401, do(t, h, keyReq(w, "/b", "key-a")).Status)
	}
}

func TestReconfigure(t *testing.T) {
	h := testenv.NewForTest(t, testenv.Options{Workers: 2},
		testenv.Plugin{Name: "auth", VMID: "auth", Wasm: authWasm(t), Config: keyConfig(t, "/", "key-a")})
	for w := range 2 {
		require.Equal(t, 200, do(t, h, keyReq(w, "/x", "key-a")).Status)
	}
	require.NoError(t, h.Reconfigure(context.Background(), 0, keyConfig(t, "/", "key-b")))
	for w := range 2 {
		assert.Equal(t, 401, do(t, h, keyReq(w, "/x", "key-a")).Status, "old key after the update")
		assert.Equal(t, 200, do(t, h, keyReq(w, "/x", "key-b")).Status, "new key after the update")
	}
	assert.Error(t, h.Reconfigure(context.Background(), 0, []byte(`{"nope":1}`)), "auth refuses a bad configuration")
	assert.Equal(t, 200, do(t, h, keyReq(0, "/x", "key-b")).Status, "the refused update left the last good configuration")
}

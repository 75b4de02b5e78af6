package istiocheck

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/registry/remote"

	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"

	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

// TestAgentFetchesPushedModule: Istio's agent (pkg/wasm's cache, what istio-agent runs
// for every remote Wasm module) loads the image meshplug push pushed with the sha256
// render writes, by tag and by pinned digest; with the module's own sha256 (what
// render wrote for oci:// before issue 20) it refuses the module.
func TestAgentFetchesPushedModule(t *testing.T) {
	addr := ocitest.Registry(t)
	module := []byte("\x00asm\x01\x00\x00\x00 meshplug auth")
	img, err := wasmoci.Pack(module)
	require.NoError(t, err)
	repo, err := remote.NewRepository(addr + "/meshplug/auth")
	require.NoError(t, err)
	repo.PlainHTTP = true
	require.NoError(t, wasmoci.Push(context.Background(), repo, img, "v1"))

	fileSum := sha256.Sum256(module)
	for name, c := range map[string]struct {
		url, sha256 string // sha256 "" = the one NewModule renders
		err         string
	}{
		"tag":                      {url: "oci://" + addr + "/meshplug/auth:v1"},
		"pinned digest":            {url: "oci://" + addr + "/meshplug/auth@" + img.Manifest.Digest.String()},
		"tag, module's own sha256": {url: "oci://" + addr + "/meshplug/auth:v1", sha256: hex.EncodeToString(fileSum[:]), err: "does not match"},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := envoyfilters.NewModule(c.url, module)
			require.NoError(t, err)
			if c.sha256 != "" {
				m.SHA256 = c.sha256
			}
			cache := wasm.NewLocalFileCache(t.TempDir(), wasm.Options{InsecureRegistries: sets.New(addr), HTTPRequestTimeout: 10 * time.Second, HTTPRequestMaxRetries: 1})
			t.Cleanup(cache.Cleanup)
			path, err := cache.Get(m.URL, wasm.GetOptions{Checksum: m.SHA256, ResourceName: "shop.orders-auth", RequestTimeout: time.Minute})
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			assert.FileExists(t, path)
		})
	}
}

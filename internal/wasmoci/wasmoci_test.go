package wasmoci_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

var module = []byte("\x00asm\x01\x00\x00\x00 a module")

func TestPackDeterministicCompat(t *testing.T) {
	a, err := wasmoci.Pack(module)
	require.NoError(t, err)
	b, err := wasmoci.Pack(module)
	require.NoError(t, err)
	assert.Equal(t, a.Manifest.Digest, b.Manifest.Digest, "packing is deterministic")

	ctx := context.Background()
	store := memory.New()
	require.NoError(t, wasmoci.Push(ctx, store, a, "v1"))
	mb, err := content.FetchAll(ctx, store, a.Manifest)
	require.NoError(t, err)
	var man ocispec.Manifest
	require.NoError(t, json.Unmarshal(mb, &man))
	assert.Equal(t, ocispec.MediaTypeImageManifest, man.MediaType)
	assert.Equal(t, "compat", man.Annotations["module.wasm.image/variant"])
	require.Len(t, man.Layers, 1)
	assert.Equal(t, "application/vnd.oci.image.layer.v1.tar+gzip", man.Layers[0].MediaType)
	got, desc, err := wasmoci.Pull(ctx, store, "v1")
	require.NoError(t, err)
	assert.Equal(t, module, got)
	assert.Equal(t, a.Manifest.Digest, desc.Digest)
}

// TestRegistryRoundTrip pushes to a real registry (docker-registry on loopback) and
// pulls back: the module is byte-identical (sha256 compared), and the manifest digest
// the registry reports (Docker-Content-Digest, what Istio's agent checks a WasmPlugin's
// sha256 against) is the pushed one.
func TestRegistryRoundTrip(t *testing.T) {
	addr := ocitest.Registry(t)
	ctx := context.Background()
	repo, err := remote.NewRepository(addr + "/meshplug/auth")
	require.NoError(t, err)
	repo.PlainHTTP = true
	img, err := wasmoci.Pack(module)
	require.NoError(t, err)
	require.NoError(t, wasmoci.Push(ctx, repo, img, "v1"))
	require.NoError(t, wasmoci.Push(ctx, repo, img, "v1"), "pushing again is a no-op")

	got, desc, err := wasmoci.Pull(ctx, repo, "v1")
	require.NoError(t, err)
	want := sha256.Sum256(module)
	have := sha256.Sum256(got)
	assert.Equal(t, hex.EncodeToString(want[:]), hex.EncodeToString(have[:]))
	assert.Equal(t, img.Manifest.Digest, desc.Digest)

	req, err := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/meshplug/auth/manifests/v1", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, img.Manifest.Digest.String(), resp.Header.Get("Docker-Content-Digest"))
}

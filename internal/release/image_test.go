package release

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

// testModules stand in for the filters' .wasm: the image only carries them as files.
var testModules = map[string][]byte{"auth": []byte("\x00asm auth"), "fault": []byte("\x00asm fault")}

// buildTestImage builds meshplug for this machine's architecture with a test version
// into dir and makes the image of it, as make image does.
func buildTestImage(t *testing.T, dir, version, commit string, created time.Time) (v1.Image, []byte) {
	t.Helper()
	bin := filepath.Join(dir, "meshplug")
	require.NoError(t, BuildBinary(context.Background(), BinaryOptions{Dir: "../..", Out: bin, Arch: runtime.GOARCH, Version: version, Commit: commit}))
	b, err := os.ReadFile(bin)
	require.NoError(t, err)
	ca, err := DefaultCACerts()
	require.NoError(t, err)
	img, err := Image(ImageOptions{Binary: b, Modules: testModules, CACerts: ca, Arch: runtime.GOARCH, Version: version, Commit: commit, Created: created})
	require.NoError(t, err)
	return img, b
}

// TestImage builds the image, writes it as an OCI layout, pushes it to a real
// registry and checks what the registry serves: manifest and config media types, the
// user, entrypoint and labels, the files of the layers, and that the binary in the
// layer runs `version` and reports the version and commit it was built with.
func TestImage(t *testing.T) {
	addr := ocitest.Registry(t)
	const version, commit = "v1.2.3-test", "0123456789abcdef0123456789abcdef01234567-dirty"
	created := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	img, bin := buildTestImage(t, dir, version, commit, created)
	want, err := WriteLayout(filepath.Join(dir, "oci"), img, version)
	require.NoError(t, err)
	fromLayout, err := ReadLayout(filepath.Join(dir, "oci"))
	require.NoError(t, err)

	ref, err := PushImage(context.Background(), fromLayout, addr+"/meshplug:"+version, true, authn.NewMultiKeychain())
	require.NoError(t, err)
	assert.Equal(t, addr+"/meshplug@"+want.String(), ref)

	r, err := name.ParseReference(addr+"/meshplug:"+version, name.Insecure)
	require.NoError(t, err)
	desc, err := remote.Get(r)
	require.NoError(t, err)
	assert.Equal(t, want, desc.Digest, "the registry serves the layout's manifest")
	assert.Equal(t, types.OCIManifestSchema1, desc.MediaType)
	got, err := desc.Image()
	require.NoError(t, err)
	man, err := got.Manifest()
	require.NoError(t, err)
	assert.Equal(t, types.OCIConfigJSON, man.Config.MediaType)
	require.Len(t, man.Layers, 3)
	for _, l := range man.Layers {
		assert.Equal(t, types.OCILayer, l.MediaType)
	}
	assert.Equal(t, map[string]string{
		LabelSource: SourceURL, LabelRevision: commit, LabelVersion: version,
		LabelCreated: "2026-12-06T12:00:00Z", LabelTitle: "meshplug",
	}, man.Annotations)

	cf, err := got.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux", cf.OS)
	assert.Equal(t, runtime.GOARCH, cf.Architecture)
	assert.Equal(t, "65532:65532", cf.Config.User)
	assert.Equal(t, []string{BinaryPath}, cf.Config.Entrypoint)
	assert.Equal(t, man.Annotations, cf.Config.Labels)
	assert.True(t, cf.Created.Equal(created), cf.Created)

	files := extract(t, got)
	assert.Equal(t, bin, files[BinaryPath[1:]].data, "the binary")
	assert.Equal(t, int64(0o755), files[BinaryPath[1:]].mode)
	ca, err := DefaultCACerts()
	require.NoError(t, err)
	assert.Equal(t, ca, files["etc/ssl/certs/ca-certificates.crt"].data)
	assert.Contains(t, string(files["etc/passwd"].data), "nonroot:x:65532:65532:")
	assert.Contains(t, string(files["etc/group"].data), "nonroot:x:65532:")
	assert.Equal(t, 65532, files["home/nonroot"].uid)
	for f, b := range testModules {
		assert.Equal(t, b, files["modules/"+f+".wasm"].data, f)
	}
	for n, f := range files {
		assert.True(t, f.mtime.Equal(created), "%s: mtime %v", n, f.mtime)
	}

	// The binary from the layer runs and says what it is.
	exe := filepath.Join(t.TempDir(), "meshplug")
	require.NoError(t, os.WriteFile(exe, files[BinaryPath[1:]].data, 0o755))
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(exe, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Regexp(t, `^meshplug `+strings.ReplaceAll(version, ".", `\.`)+` commit `+commit+` go1\.\S+ linux/`+runtime.GOARCH+"\n$", string(out))
	}
	file, err := exec.Command("go", "version", "-m", exe).CombinedOutput()
	require.NoError(t, err, "%s", file)
	assert.Contains(t, string(file), "CGO_ENABLED=0", "a static binary")
	assert.Contains(t, string(file), "-trimpath=true")
}

// TestImageReproducible builds the binary and the image twice from the same inputs:
// same digest. Changing one input (the version) changes it.
func TestImageReproducible(t *testing.T) {
	created := time.Unix(1_700_000_000, 0)
	a, _ := buildTestImage(t, t.TempDir(), "v0.0.1", "abc", created)
	b, _ := buildTestImage(t, t.TempDir(), "v0.0.1", "abc", created)
	da, err := a.Digest()
	require.NoError(t, err)
	db, err := b.Digest()
	require.NoError(t, err)
	assert.Equal(t, da, db)

	c, _ := buildTestImage(t, t.TempDir(), "v0.0.2", "abc", created)
	dc, err := c.Digest()
	require.NoError(t, err)
	assert.NotEqual(t, da, dc)
}

type tarFile struct {
	data  []byte
	mode  int64
	uid   int
	mtime time.Time
}

// extract reads the image's flattened filesystem.
func extract(t *testing.T, img v1.Image) map[string]tarFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]tarFile{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = tarFile{data: b, mode: h.Mode, uid: h.Uid, mtime: h.ModTime}
	}
}

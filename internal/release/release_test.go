package release

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"oras.land/oras-go/v2/content/oci"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/controller"
	"github.com/meshplug/meshplug/internal/regauth"
	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

// TestWrite writes a release (with a stand-in binary: TestImage covers the real one)
// and reads every part back: the image layout, each module's Istio Wasm image (pulled
// from its layout as Istio's agent reads it, with the digest the controller computes
// for --module-oci-repository), digests.txt, the kustomize tree pinned by digest and
// the Helm values.
func TestWrite(t *testing.T) {
	img, err := Image(ImageOptions{Binary: []byte("#!/bin/false"), Modules: testModules, CACerts: []byte("pem"),
		Arch: "amd64", Version: "v0.4.0", Commit: "abc", Created: time.Unix(1_700_000_000, 0)})
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "release")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "stale"), 0o755))
	r, err := Write(context.Background(), Options{Dir: dir, Repo: "../..", Image: img, Modules: testModules,
		Version: "v0.4.0", Commit: "abc", ImageRepo: "registry.example/mp", ModuleRepo: "registry.example/modules"})
	require.NoError(t, err)
	assert.NoDirExists(t, filepath.Join(dir, "stale"), "the directory is replaced")

	d, err := img.Digest()
	require.NoError(t, err)
	assert.Equal(t, d, r.ImageDigest)
	fromLayout, err := ReadLayout(filepath.Join(dir, "image"))
	require.NoError(t, err)
	ld, err := fromLayout.Digest()
	require.NoError(t, err)
	assert.Equal(t, d, ld)

	var ms []controller.Module
	for f, b := range testModules {
		ms = append(ms, controller.NewModule(f, b))
	}
	opts, err := controller.NewModules(ms...).OCIRenderOptions("registry.example/modules")
	require.NoError(t, err)
	want := "image registry.example/mp:v0.4.0@" + d.String() + "\n"
	for _, f := range []string{"auth", "fault"} {
		store, err := oci.New(filepath.Join(dir, "modules", f))
		require.NoError(t, err)
		got, desc, err := wasmoci.Pull(context.Background(), store, "v0.4.0")
		require.NoError(t, err, f)
		assert.Equal(t, testModules[f], got, f)
		assert.Equal(t, opts.Modules[f].SHA256, desc.Digest.Encoded(), "%s: the controller points at this image", f)
		assert.Equal(t, "oci://registry.example/modules/"+f+":v0.4.0@"+desc.Digest.String(), r.ModuleRefs[f])
		want += "module/" + f + " " + r.ModuleRefs[f] + "\n"
	}
	digests, err := os.ReadFile(filepath.Join(dir, "digests.txt"))
	require.NoError(t, err)
	assert.Equal(t, want, string(digests))

	var kust struct {
		Resources []string `json:"resources"`
		Images    []struct {
			Name, NewName, Digest string
		} `json:"images"`
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	kb, err := os.ReadFile(filepath.Join(dir, "kustomize", "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(kb, &kust))
	assert.Equal(t, "Kustomization", kust.Kind)
	require.Len(t, kust.Images, 1)
	assert.Equal(t, DeployImage, kust.Images[0].Name)
	assert.Equal(t, "registry.example/mp", kust.Images[0].NewName)
	assert.Equal(t, d.String(), kust.Images[0].Digest)
	require.NotEmpty(t, kust.Resources)
	for _, res := range kust.Resources {
		a, err := os.ReadFile(filepath.Join("../../deploy", res))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dir, "kustomize", res))
		require.NoError(t, err)
		assert.Equal(t, string(a), string(b), res)
	}
	dep, err := os.ReadFile(filepath.Join(dir, "kustomize", "controller", "deployment.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(dep), "image: "+DeployImage+":", "the name the images transformer replaces")

	var values struct {
		Image struct{ Repository, Tag, Digest string } `json:"image"`
	}
	vb, err := os.ReadFile(filepath.Join(dir, "helm-values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(vb, &values))
	assert.Equal(t, "registry.example/mp", values.Image.Repository)
	assert.Equal(t, "v0.4.0", values.Image.Tag)
	assert.Equal(t, d.String(), values.Image.Digest)
	assert.True(t, strings.HasPrefix(string(vb), "# meshplug v0.4.0 (commit abc)"))
}

// TestPushImageCredentials pushes the image to a registry that requires
// authentication with the credentials of a docker config file (regauth.Keychain, as
// `hack/release push` does); without them the registry's 401 is reported.
func TestPushImageCredentials(t *testing.T) {
	const user, secret = "releaser", "image-secret-42"
	addr := ocitest.RegistryWithAuth(t, user, secret)
	img, err := Image(ImageOptions{Binary: []byte("bin"), Modules: testModules, CACerts: []byte("pem"),
		Arch: "amd64", Version: "v0.4.0", Commit: "abc"})
	require.NoError(t, err)
	d, err := img.Digest()
	require.NoError(t, err)
	for _, tc := range []struct {
		name, config string
		err          string
	}{
		{"no credentials", `{}`, "401"},
		{"wrong password", `{"auths":{"` + addr + `":{"username":"` + user + `","password":"nope"}}}`, "401"},
		{"docker config", `{"auths":{"` + addr + `":{"username":"` + user + `","password":"` + secret + `"}}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "config.json")
			require.NoError(t, os.WriteFile(f, []byte(tc.config), 0o600))
			store, err := regauth.Store(regauth.Options{ConfigPath: f})
			require.NoError(t, err)
			ref, err := PushImage(context.Background(), img, addr+"/meshplug:v0.4.0", true, regauth.Keychain(store))
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.NotContains(t, err.Error(), secret)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, addr+"/meshplug@"+d.String(), ref)
		})
	}
}

package controller

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/wasmoci"
)

func TestModuleHandler(t *testing.T) {
	m := NewModules(NewModule("auth", []byte("auth bytes")))
	a, ok := m.Get("auth")
	require.True(t, ok)
	// echo -n "auth bytes" | sha256sum
	require.Equal(t, "a46ca807195a573514729df6f5c8b8c9b7cf5fb16a3d74665f5319644159b4c4", a.SHA256)
	srv := httptest.NewServer(m)
	defer srv.Close()
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"module", "GET", "/modules/" + a.SHA256 + ".wasm", 200, "auth bytes"},
		{"head", "HEAD", "/modules/" + a.SHA256 + ".wasm", 200, ""},
		{"unknown sum", "GET", "/modules/" + a.SHA256[:63] + "0.wasm", 404, "404 page not found\n"},
		{"no suffix", "GET", "/modules/" + a.SHA256, 404, "404 page not found\n"},
		{"by name", "GET", "/modules/auth.wasm", 404, "404 page not found\n"},
		{"post", "POST", "/modules/" + a.SHA256 + ".wasm", 405, "method not allowed\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b := make([]byte, 100)
			n, _ := resp.Body.Read(b)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, string(b[:n]))
			if tc.status == 200 {
				assert.Equal(t, "application/wasm", resp.Header.Get("Content-Type"))
				assert.Equal(t, `"`+a.SHA256+`"`, resp.Header.Get("ETag"))
			}
		})
	}
	// A conditional request with the ETag is answered 304.
	req, _ := http.NewRequest("GET", srv.URL+"/modules/"+a.SHA256+".wasm", nil)
	req.Header.Set("If-None-Match", `"`+a.SHA256+`"`)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
}

func TestLoadModules(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadModules(dir)
	assert.ErrorContains(t, err, "no filter modules (meshplug.wasm or <filter>.wasm) in "+dir)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "fault.wasm"), []byte("f"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.wasm"), []byte("o"), 0o644))
	m, err := LoadModules(dir)
	require.NoError(t, err)
	f, ok := m.Get("fault")
	require.True(t, ok)
	// echo -n f | sha256sum
	assert.Equal(t, "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111", f.SHA256)
	_, ok = m.Get("auth")
	assert.False(t, ok, "absent modules are left out")
	_, ok = m.Get("other")
	assert.False(t, ok, "only the filters of v1alpha1.Sections are loaded")
	o := m.RenderOptions("http://mods.example:8082/")
	assert.Nil(t, o.Bundle, "no bundle loaded: per-filter modules")
	assert.Equal(t, "http://mods.example:8082/modules/"+f.SHA256+".wasm", o.Modules["fault"].URL)
	assert.Equal(t, f.SHA256, o.Modules["fault"].SHA256)

	// The OCI image meshplug push makes of the same bytes.
	img, err := wasmoci.Pack([]byte("f"))
	require.NoError(t, err)
	for _, repo := range []string{"ghcr.io/acme/mp", "oci://ghcr.io/acme/mp/", "127.0.0.1:5000/mp"} {
		o, err = m.OCIRenderOptions(repo)
		require.NoError(t, err, repo)
		want := strings.TrimSuffix(strings.TrimPrefix(repo, "oci://"), "/")
		assert.Equal(t, "oci://"+want+"/fault@"+img.Manifest.Digest.String(), o.Modules["fault"].URL, repo)
		assert.Equal(t, img.Manifest.Digest.Encoded(), o.Modules["fault"].SHA256, repo)
		assert.Nil(t, o.Bundle, repo)
		assert.NotEqual(t, f.SHA256, o.Modules["fault"].SHA256, "the manifest's digest, not the module's")
	}
	for _, bad := range []string{"", "oci://", "ghcr.io/acme/mp:v1", "ghcr.io/acme/mp@sha256:00", "Ghcr.io/x y"} {
		_, err = m.OCIRenderOptions(bad)
		assert.ErrorContains(t, err, "module OCI repository", bad)
	}
}

// With meshplug.wasm in the directory, every filter runs from it unless PerFilter.
func TestLoadModulesBundle(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meshplug.wasm"), []byte("b"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "auth.wasm"), []byte("a"), 0o644))
	m, err := LoadModules(dir)
	require.NoError(t, err)
	b, ok := m.Get(Bundle)
	require.True(t, ok)
	img, err := wasmoci.Pack([]byte("b"))
	require.NoError(t, err)
	cases := []struct {
		perFilter bool
		http, oci *envoyfilters.Module // the bundle the options select, nil for none
	}{
		{false, &envoyfilters.Module{URL: "http://m/modules/" + b.SHA256 + ".wasm", SHA256: b.SHA256},
			&envoyfilters.Module{URL: "oci://ghcr.io/acme/mp/meshplug@" + img.Manifest.Digest.String(), SHA256: img.Manifest.Digest.Encoded()}},
		{true, nil, nil},
	}
	for _, c := range cases {
		m.PerFilter = c.perFilter
		o := m.RenderOptions("http://m")
		assert.Equal(t, c.http, o.Bundle, "per-filter %v", c.perFilter)
		assert.NotContains(t, o.Modules, Bundle)
		assert.Contains(t, o.Modules, "auth")
		o, err = m.OCIRenderOptions("ghcr.io/acme/mp")
		require.NoError(t, err)
		assert.Equal(t, c.oci, o.Bundle, "per-filter %v", c.perFilter)
		assert.NotContains(t, o.Modules, Bundle)
	}
	// The module server serves the bundle too.
	srv := httptest.NewServer(m)
	defer srv.Close()
	resp, err := http.Get(srv.URL + ModulePath + b.SHA256 + ".wasm")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "b", string(body))
}

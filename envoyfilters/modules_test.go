package envoyfilters_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/wasmoci"
)

// TestNewModule: the sha256 Istio's agent checks is the module's for http(s) and the
// image manifest's for oci; urls pinning another image are refused, by NewModule and
// by every renderer.
func TestNewModule(t *testing.T) {
	wasm := []byte("\x00asm\x01\x00\x00\x00 auth")
	img, err := wasmoci.Pack(wasm)
	require.NoError(t, err)
	manifest := img.Manifest.Digest.Encoded()
	other := digest("another module")
	for name, c := range map[string]struct {
		url, want, err string
	}{
		"https":               {url: "https://m.example/auth.wasm", want: digest(string(wasm))},
		"http":                {url: "http://meshplug.system.svc:8082/modules/x.wasm", want: digest(string(wasm))},
		"oci tag":             {url: "oci://ghcr.io/acme/auth:v1", want: manifest},
		"oci no tag":          {url: "oci://ghcr.io/acme/auth", want: manifest},
		"oci pinned":          {url: "oci://ghcr.io/acme/auth@sha256:" + manifest, want: manifest},
		"oci tag and pinned":  {url: "oci://ghcr.io/acme/auth:v1@sha256:" + manifest, want: manifest},
		"oci pinned to other": {url: "oci://ghcr.io/acme/auth@sha256:" + other, err: "pins image sha256:" + other},
		"oci pinned to file":  {url: "oci://ghcr.io/acme/auth@sha256:" + digest(string(wasm)), err: "the image meshplug push makes of this module is sha256:" + manifest},
		"no scheme":           {url: "ghcr.io/acme/auth:v1", err: "must start with oci://, https:// or http://"},
		"file":                {url: "file:///etc/wasm/auth.wasm", err: "must start with"},
	} {
		m, err := envoyfilters.NewModule(c.url, wasm)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, name)
			continue
		}
		require.NoError(t, err, name)
		assert.Equal(t, c.want, m.SHA256, name)
		assert.Equal(t, c.url, m.URL, name)
	}
	assert.NotEqual(t, digest(string(wasm)), manifest)

	// A Module built by hand that pins one image and names another sha256 is refused by
	// the renderers.
	p := byName(t, "orders")
	for _, render := range []func(envoyfilters.Options) error{
		func(o envoyfilters.Options) error { _, err := envoyfilters.WasmPlugins(p, o); return err },
		func(o envoyfilters.Options) error { _, err := envoyfilters.EnvoyFilters(p, o); return err },
	} {
		o := envoyfilters.Options{Modules: map[string]envoyfilters.Module{}}
		for f, m := range options.Modules {
			o.Modules[f] = m
		}
		require.NoError(t, render(o))
		o.Modules["auth"] = envoyfilters.Module{URL: "oci://ghcr.io/acme/auth@sha256:" + manifest, SHA256: other}
		assert.ErrorContains(t, render(o), `url "oci://ghcr.io/acme/auth@sha256:`+manifest+`" pins image sha256:`+manifest+" but sha256 is "+other)
	}
}

package envoyfilters_test

import (
	"encoding/json"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/crdschema"
	"github.com/meshplug/meshplug/internal/envoyvalidate"
)

var bundle = envoyfilters.Module{URL: "oci://ghcr.io/meshplug/meshplug:v0.1.0", SHA256: digest("meshplug.wasm")}

// module is what a rendered plugin runs: its module, root id and VM.
type module struct{ url, sha, rootID, vmID string }

// The module selection of the Istio renderings: with Options.Bundle every section runs
// from meshplug.wasm (one URL and digest; Istio's pluginName, Envoy's root_id, selects
// the filter; the EnvoyFilter's vm_id is shared); without it each from its own module.
func TestRenderModuleSelection(t *testing.T) {
	set := istioCRDs(t)
	p := byName(t, "public-gateway")
	cases := []struct {
		name string
		opts envoyfilters.Options
		want func(filter string) module
	}{
		{"bundle", envoyfilters.Options{Bundle: &bundle, Modules: options.Modules}, func(f string) module {
			return module{bundle.URL, bundle.SHA256, f, envoyfilters.BundleVMID}
		}},
		{"per-filter", options, func(f string) module {
			m := options.Modules[f]
			return module{m.URL, m.SHA256, f, "meshplug." + f}
		}},
	}
	for _, c := range cases {
		t.Run(c.name+"/WasmPlugin", func(t *testing.T) {
			ws, err := envoyfilters.WasmPlugins(p, c.opts)
			require.NoError(t, err)
			require.Len(t, ws, sectionCount(p))
			for _, w := range ws {
				out, err := envoyfilters.MarshalYAML(w)
				require.NoError(t, err)
				require.NoError(t, set.ValidateYAML(out))
				f := w.Labels[envoyfilters.LabelFilter]
				want := c.want(f)
				// Istio sets no vm_id: plugins with the same module share the VM.
				assert.Equal(t, module{want.url, want.sha, want.rootID, ""}, module{w.Spec.Url, w.Spec.Sha256, w.Spec.PluginName, ""}, f)
			}
		})
		t.Run(c.name+"/EnvoyFilter", func(t *testing.T) {
			es, err := envoyfilters.EnvoyFilters(p, c.opts)
			require.NoError(t, err)
			require.Len(t, es, sectionCount(p))
			for _, e := range es {
				out, err := envoyfilters.MarshalYAML(e)
				require.NoError(t, err)
				for _, doc := range crdschema.SplitYAML(out) {
					require.NoError(t, set.ValidateYAML(doc))
				}
				var patch struct {
					Spec struct {
						ConfigPatches []struct {
							Patch struct{ Value json.RawMessage }
						} `json:"configPatches"`
					}
				}
				require.NoError(t, yaml.Unmarshal(out, &patch))
				var ext corev3.TypedExtensionConfig
				require.NoError(t, envoyvalidate.UnmarshalYAML(patch.Spec.ConfigPatches[0].Patch.Value, &ext))
				var wasm wasmfilterv3.Wasm
				require.NoError(t, ext.GetTypedConfig().UnmarshalTo(&wasm))
				vm := wasm.GetConfig().GetVmConfig()
				f := e.Labels[envoyfilters.LabelFilter]
				got := module{vm.GetCode().GetRemote().GetHttpUri().GetUri(), vm.GetCode().GetRemote().GetSha256(), wasm.GetConfig().GetRootId(), vm.GetVmId()}
				assert.Equal(t, c.want(f), got, f)
			}
		})
	}
}

func TestEnvoyBootstrapPerFilterModules(t *testing.T) {
	p := byName(t, "public-gateway")
	for _, perFilter := range []bool{false, true} {
		bs, err := envoyfilters.EnvoyBootstrap(p, envoyfilters.EnvoyOptions{PerFilterModules: perFilter})
		require.NoError(t, err)
		y, err := envoyfilters.MarshalEnvoyYAML(bs)
		require.NoError(t, err)
		_, err = envoyvalidate.BootstrapYAML(y)
		require.NoError(t, err)
		got := map[string]module{}
		for _, f := range strings.Split(string(y), "root_id: ")[1:] {
			// root_id, then vm_config's code filename and vm_id, in the YAML's key order.
			var m module
			m.rootID, _, _ = strings.Cut(f, "\n")
			_, after, _ := strings.Cut(f, "filename: ")
			m.url, _, _ = strings.Cut(after, "\n")
			_, after, _ = strings.Cut(f, "vm_id: ")
			m.vmID, _, _ = strings.Cut(after, "\n")
			got[m.rootID] = m
		}
		want := map[string]module{}
		for _, sec := range v1alpha1.Sections {
			if sec.Spec(&p.Spec) == nil {
				continue
			}
			f := sec.Filter
			want[f] = module{"/etc/envoy/wasm/meshplug.wasm", "", f, "meshplug"}
			if perFilter {
				want[f] = module{"/etc/envoy/wasm/" + f + ".wasm", "", f, "meshplug." + f}
			}
		}
		require.NotEmpty(t, want)
		assert.Equal(t, want, got, "per-filter modules: %v", perFilter)
	}
}

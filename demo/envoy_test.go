package demo

import (
	"os"
	"path"
	"testing"

	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/envoyvalidate"
)

// envoy.yaml is what the renderer makes of policy.yaml (stale → fail; UPDATE=1
// rewrites it), valid for Envoy down into every Any, and everything it references
// exists: each module is a filter that `make build` writes into the folder
// docker-compose.yaml mounts at the module directory, each cluster a route or a filter
// names is defined.
func TestEnvoyYAML(t *testing.T) {
	want, err := EnvoyYAML()
	require.NoError(t, err)
	if os.Getenv("UPDATE") != "" {
		require.NoError(t, os.WriteFile("envoy.yaml", want, 0o644))
	}
	got, err := os.ReadFile("envoy.yaml")
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "demo/envoy.yaml is stale: run UPDATE=1 go test ./demo -run TestEnvoyYAML")

	b, err := envoyvalidate.BootstrapYAML(got)
	require.NoError(t, err)
	clusters := map[string]bool{}
	for _, c := range b.StaticResources.Clusters {
		clusters[c.Name] = true
	}
	filters := map[string]bool{envoyfilters.BundleModule: true}
	for _, s := range v1alpha1.Sections {
		filters[s.Filter+".wasm"] = true
	}
	require.Len(t, b.StaticResources.Listeners, 1)
	var hcm hcmv3.HttpConnectionManager
	require.NoError(t, b.StaticResources.Listeners[0].FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm))
	var modules []string
	for _, f := range hcm.HttpFilters {
		var w wasmv3.Wasm
		if f.GetTypedConfig().UnmarshalTo(&w) != nil {
			continue
		}
		file := w.GetConfig().GetVmConfig().GetCode().GetLocal().GetFilename()
		assert.Equal(t, EnvoyOptions.ModuleDir, path.Dir(file), f.Name)
		assert.True(t, filters[path.Base(file)], "%s loads %s, which no filter builds", f.Name, file)
		modules = append(modules, path.Base(file)+" "+w.GetConfig().GetRootId()+" "+w.GetConfig().GetVmConfig().GetVmId())
	}
	// The bundle: one module and one VM, each filter selected by its root id.
	assert.Equal(t, []string{"meshplug.wasm auth meshplug", "meshplug.wasm ratelimit meshplug", "meshplug.wasm routehint meshplug", "meshplug.wasm fault meshplug"}, modules)
	var routed []string
	for _, vh := range hcm.GetRouteConfig().VirtualHosts {
		for _, r := range vh.Routes {
			c := r.GetRoute().GetCluster()
			assert.True(t, clusters[c], "route %q: cluster %q is not defined", r.Name, c)
			routed = append(routed, c)
		}
	}
	assert.Equal(t, []string{"upstream-v2", "upstream"}, routed, "the canary target routes to v2 first")
	p, err := v1alpha1.Decode(Policy)
	require.NoError(t, err)
	pcs, err := envoyfilters.PluginConfigs(p)
	require.NoError(t, err)
	for _, pc := range pcs {
		for _, c := range pc.Section.Callouts(pc.Spec) {
			assert.True(t, clusters[c.Cluster], "spec.%s.%s: cluster %q is not defined", pc.Section.Field, c.Path, c.Cluster)
		}
	}

	// docker-compose.yaml mounts this envoy.yaml and the build folder where the
	// modules are expected, with a pinned image.
	var compose struct {
		Services map[string]struct {
			Image   string   `json:"image"`
			Volumes []string `json:"volumes"`
			Command []string `json:"command"`
		} `json:"services"`
	}
	cy, err := os.ReadFile("docker-compose.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(cy, &compose))
	envoy := compose.Services["envoy"]
	assert.Regexp(t, `^envoyproxy/envoy:v1\.(39|[4-9][0-9])\.[0-9]+$`, envoy.Image, "a pinned release that carries Envoy PR #45756 (docs/compatibility.md)")
	assert.Contains(t, envoy.Volumes, "./envoy.yaml:/etc/envoy/envoy.yaml:ro")
	assert.Contains(t, envoy.Volumes, "../build:"+EnvoyOptions.ModuleDir+":ro")
	assert.Contains(t, compose.Services, "demo")
	assert.Contains(t, compose.Services["demo"].Command, "--demo-backends-only")
}

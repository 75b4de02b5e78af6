package envoyfilters_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/crdschema"
	"github.com/meshplug/meshplug/internal/envoyvalidate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const exampleFile = "../deploy/examples/trafficpolicy.yaml"

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// options are the rendering inputs of the golden files: each filter's image as meshplug
// push makes it of a module whose bytes are "<filter>.wasm" (the CLI's TestRender
// writes those files).
var options = envoyfilters.Options{Modules: map[string]envoyfilters.Module{
	"auth":      mustModule("oci://ghcr.io/meshplug/auth:v0.1.0", "auth.wasm"),
	"ratelimit": mustModule("oci://ghcr.io/meshplug/ratelimit:v0.1.0", "ratelimit.wasm"),
	"routehint": mustModule("oci://ghcr.io/meshplug/routehint:v0.1.0", "routehint.wasm"),
	"fault":     mustModule("oci://ghcr.io/meshplug/fault:v0.1.0", "fault.wasm"),
}}

func mustModule(url, wasm string) envoyfilters.Module {
	m, err := envoyfilters.NewModule(url, []byte(wasm))
	if err != nil {
		panic(err)
	}
	return m
}

func examples(t *testing.T) []*v1alpha1.TrafficPolicy {
	t.Helper()
	b, err := os.ReadFile(exampleFile)
	require.NoError(t, err)
	var out []*v1alpha1.TrafficPolicy
	for _, doc := range crdschema.SplitYAML(b) {
		p, err := v1alpha1.Decode(doc)
		require.NoError(t, err)
		out = append(out, p)
	}
	require.Len(t, out, 3)
	return out
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./envoyfilters -update")
	assert.Equal(t, string(want), string(got), "%s differs: review and run go test ./envoyfilters -update", path)
}

// istioCRDs are Istio's own CRDs with their OpenAPI schemas and CEL rules, from the
// istio.io/api module this repository requires.
func istioCRDs(t *testing.T) *crdschema.Set {
	t.Helper()
	set, err := loadIstioCRDs()
	require.NoError(t, err)
	require.True(t, set.Has("extensions.istio.io/v1alpha1", "WasmPlugin"))
	require.True(t, set.Has("networking.istio.io/v1alpha3", "EnvoyFilter"))
	return set
}

var loadIstioCRDs = sync.OnceValues(func() (*crdschema.Set, error) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		return nil, err
	}
	return crdschema.Load(filepath.Join(strings.TrimSpace(string(dir)), "kubernetes", "customresourcedefinitions.gen.yaml"))
})

func sectionCount(p *v1alpha1.TrafficPolicy) int {
	n := 0
	for _, s := range v1alpha1.Sections {
		if s.Spec(&p.Spec) != nil {
			n++
		}
	}
	return n
}

func byName(t *testing.T, name string) *v1alpha1.TrafficPolicy {
	t.Helper()
	for _, p := range examples(t) {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no example policy %q", name)
	return nil
}

// sectionByFilter finds the section of a rendered object by its filter label.
func sectionByFilter(t *testing.T, filter string) v1alpha1.Section {
	for _, s := range v1alpha1.Sections {
		if s.Filter == filter {
			return s
		}
	}
	t.Fatalf("no section for filter %q", filter)
	return v1alpha1.Section{}
}

func TestWasmPlugins(t *testing.T) {
	set := istioCRDs(t)
	for _, p := range examples(t) {
		t.Run(p.Name, func(t *testing.T) {
			objs, err := envoyfilters.WasmPlugins(p, options)
			require.NoError(t, err)
			require.Len(t, objs, sectionCount(p))
			var all []any
			for _, o := range objs {
				all = append(all, o)
			}
			out, err := envoyfilters.MarshalYAML(all...)
			require.NoError(t, err)
			golden(t, p.Name+".wasmplugin.yaml", out)

			for _, doc := range crdschema.SplitYAML(out) {
				require.NoError(t, set.ValidateYAML(doc), "Istio's WasmPlugin schema:\n%s", doc)
				var w struct {
					Metadata struct{ Labels map[string]string }
					Spec     struct {
						PluginConfig json.RawMessage `json:"pluginConfig"`
						FailStrategy string          `json:"failStrategy"`
						Phase        string
						Match        []map[string]any
					}
				}
				require.NoError(t, yaml.Unmarshal(doc, &w))
				sec := sectionByFilter(t, w.Metadata.Labels[envoyfilters.LabelFilter])
				// Round trip: the filter's own parser accepts the rendered configuration,
				// and it says what the policy says.
				assert.NoError(t, sec.Parse(w.Spec.PluginConfig))
				want, err := json.Marshal(sec.Spec(&p.Spec))
				require.NoError(t, err)
				assert.JSONEq(t, string(want), string(w.Spec.PluginConfig))
				assert.Equal(t, sec.Phase, w.Spec.Phase)
				if p.Spec.Selector != nil {
					assert.Equal(t, []map[string]any{{"mode": sec.Mode}}, w.Spec.Match)
				} else {
					assert.Empty(t, w.Spec.Match)
				}
				assert.Equal(t, map[bool]string{false: "FAIL_CLOSE", true: "FAIL_OPEN"}[sec.FailOpen], w.Spec.FailStrategy)
			}
		})
	}
}

func TestEnvoyFilters(t *testing.T) {
	set := istioCRDs(t)
	for _, p := range examples(t) {
		t.Run(p.Name, func(t *testing.T) {
			objs, err := envoyfilters.EnvoyFilters(p, options)
			require.NoError(t, err)
			var all []any
			// Where each filter goes and in which order the patches apply: auth and
			// ratelimit first in the chain (applied ratelimit then auth, so auth is
			// first), routehint and fault before the router (in chain order); never a
			// relative patch at priority 0 (istioctl analyze IST0151).
			want := map[string]struct {
				op       networkingapi.EnvoyFilter_Patch_Operation
				priority int32
			}{
				"auth":      {networkingapi.EnvoyFilter_Patch_INSERT_FIRST, 4},
				"ratelimit": {networkingapi.EnvoyFilter_Patch_INSERT_FIRST, 3},
				"routehint": {networkingapi.EnvoyFilter_Patch_INSERT_BEFORE, 7},
				"fault":     {networkingapi.EnvoyFilter_Patch_INSERT_BEFORE, 8},
			}
			for _, o := range objs {
				all = append(all, o)
				w := want[o.Labels[envoyfilters.LabelFilter]]
				assert.Equal(t, w.op, o.Spec.ConfigPatches[1].Patch.Operation, o.Name)
				assert.Equal(t, w.priority, o.Spec.Priority, o.Name)
				assert.Equal(t, "IST0133", o.Annotations[envoyfilters.AnnotationAnalyzeSuppress], o.Name)
			}
			out, err := envoyfilters.MarshalYAML(all...)
			require.NoError(t, err)
			golden(t, p.Name+".envoyfilter.yaml", out)

			for _, doc := range crdschema.SplitYAML(out) {
				require.NoError(t, set.ValidateYAML(doc), "Istio's EnvoyFilter schema:\n%s", doc)
				var e struct {
					Metadata struct{ Labels map[string]string }
					Spec     struct {
						ConfigPatches []struct {
							ApplyTo string `json:"applyTo"`
							Patch   struct{ Value json.RawMessage }
						} `json:"configPatches"`
					}
				}
				require.NoError(t, yaml.Unmarshal(doc, &e))
				sec := sectionByFilter(t, e.Metadata.Labels[envoyfilters.LabelFilter])
				require.Len(t, e.Spec.ConfigPatches, 2)
				// The patch values are Envoy configuration: decode them strictly with
				// Envoy's protos and validate them, inside their Anys too.
				var ext corev3.TypedExtensionConfig
				require.Equal(t, "EXTENSION_CONFIG", e.Spec.ConfigPatches[0].ApplyTo)
				require.NoError(t, envoyvalidate.UnmarshalYAML(e.Spec.ConfigPatches[0].Patch.Value, &ext))
				require.NoError(t, envoyvalidate.Message(&ext))
				var wasm wasmfilterv3.Wasm
				require.NoError(t, ext.GetTypedConfig().UnmarshalTo(&wasm))
				assert.NotEmpty(t, wasm.GetConfig().GetVmConfig().GetCode().GetRemote().GetSha256())
				var conf wrapperspb.StringValue
				require.NoError(t, wasm.GetConfig().GetConfiguration().UnmarshalTo(&conf))
				assert.NoError(t, sec.Parse([]byte(conf.GetValue())), "round trip through the filter's parser")

				var hf hcmv3.HttpFilter
				require.Equal(t, "HTTP_FILTER", e.Spec.ConfigPatches[1].ApplyTo)
				require.NoError(t, envoyvalidate.UnmarshalYAML(e.Spec.ConfigPatches[1].Patch.Value, &hf))
				require.NoError(t, envoyvalidate.Message(&hf))
				assert.Equal(t, ext.GetName(), hf.GetName())
				// As istiod for a WasmPlugin: the agent's RBAC replacement is accepted,
				// the listener waits for the configuration, the agent fetches the module.
				assert.Equal(t, []string{envoyfilters.WasmTypeURL, envoyfilters.RBACTypeURL}, hf.GetConfigDiscovery().GetTypeUrls())
				if ift := hf.GetConfigDiscovery().GetConfigSource().GetInitialFetchTimeout(); assert.NotNil(t, ift) {
					assert.Zero(t, ift.AsDuration())
				}
				assert.Equal(t, "_", wasm.GetConfig().GetVmConfig().GetCode().GetRemote().GetHttpUri().GetCluster())
				assert.Equal(t, "IfNotPresent", wasm.GetConfig().GetVmConfig().GetEnvironmentVariables().GetKeyValues()["ISTIO_META_WASM_IMAGE_PULL_POLICY"])
			}
		})
	}
}

func TestEnvoyBootstrap(t *testing.T) {
	for _, p := range examples(t) {
		t.Run(p.Name, func(t *testing.T) {
			bs, err := envoyfilters.EnvoyBootstrap(p, envoyfilters.EnvoyOptions{})
			require.NoError(t, err)
			out, err := envoyfilters.MarshalEnvoyYAML(bs)
			require.NoError(t, err)
			golden(t, p.Name+".envoy.yaml", out)

			// What Envoy would read: strict decoding, then every message validated,
			// including each typed_config (HCM, Wasm, router, TLS) and the Wasm
			// configuration's StringValue.
			got, err := envoyvalidate.BootstrapYAML(out)
			require.NoError(t, err)
			var hcm hcmv3.HttpConnectionManager
			require.NoError(t, got.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm))
			assert.True(t, hcm.GetNormalizePath().GetValue())
			assert.True(t, hcm.GetMergeSlashes())
			assert.Equal(t, corev3.HttpProtocolOptions_REJECT_REQUEST, hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction())
			filters := hcm.GetHttpFilters()
			require.NotEmpty(t, filters)
			assert.Equal(t, "envoy.filters.http.router", filters[len(filters)-1].GetName())
			for _, f := range filters[:len(filters)-1] {
				var wasm wasmfilterv3.Wasm
				require.NoError(t, f.GetTypedConfig().UnmarshalTo(&wasm))
				vm := wasm.GetConfig().GetVmConfig()
				assert.Equal(t, envoyfilters.WasmRuntime, vm.GetRuntime())
				// The bundle by default: one module and VM, the filter chosen by root id.
				assert.Equal(t, envoyfilters.BundleModule, filepath.Base(vm.GetCode().GetLocal().GetFilename()))
				assert.Equal(t, envoyfilters.BundleVMID, vm.GetVmId())
				filter := wasm.GetConfig().GetRootId()
				var conf wrapperspb.StringValue
				require.NoError(t, wasm.GetConfig().GetConfiguration().UnmarshalTo(&conf))
				assert.NoError(t, sectionByFilter(t, filter).Parse([]byte(conf.GetValue())), "round trip through the filter's parser")
			}
			// Every callout cluster of the policy exists.
			names := map[string]bool{}
			for _, c := range got.GetStaticResources().GetClusters() {
				names[c.GetName()] = true
			}
			for _, sec := range v1alpha1.Sections {
				if spec := sec.Spec(&p.Spec); spec != nil {
					for _, c := range sec.Callouts(spec) {
						assert.True(t, names[c.Cluster], "cluster %q", c.Cluster)
					}
				}
			}
		})
	}
}

// TestRoutes: the examples' routes (a sidecar policy: VirtualService; a Gateway API
// gateway policy: HTTPRoute), validated against Istio's and Gateway API's schemas;
// every target's headers are matched.
func TestRoutes(t *testing.T) {
	set := istioCRDs(t)
	gw := gatewayAPICRDs(t)
	var ps []*v1alpha1.TrafficPolicy
	for _, p := range examples(t) {
		if p.Spec.RouteHints != nil {
			ps = append(ps, p)
		}
	}
	require.Len(t, ps, 2)
	objs, err := envoyfilters.Routes(ps, envoyfilters.RouteOptions{Host: "orders.shop.svc.cluster.local", Port: 8080})
	require.NoError(t, err)
	out, err := envoyfilters.MarshalYAML(objs...)
	require.NoError(t, err)
	golden(t, "examples.routes.yaml", out)
	kinds := map[string]int{}
	for _, doc := range crdschema.SplitYAML(out) {
		var m struct{ APIVersion, Kind string }
		require.NoError(t, yaml.Unmarshal(doc, &m))
		kinds[m.Kind]++
		if strings.HasPrefix(m.APIVersion, "gateway.networking.k8s.io/") {
			require.NoError(t, gw.ValidateYAML(doc), "Gateway API's schema:\n%s", doc)
		} else {
			require.NoError(t, set.ValidateYAML(doc), "Istio's schema:\n%s", doc)
		}
	}
	assert.Equal(t, map[string]int{"DestinationRule": 1, "VirtualService": 1, "HTTPRoute": 1, "ReferenceGrant": 1}, kinds)

	vs := objs[1].(*networkingv1.VirtualService)
	assert.Equal(t, []string{"."}, vs.Spec.ExportTo)
	assert.Equal(t, []string{"."}, objs[0].(*networkingv1.DestinationRule).Spec.ExportTo)
	routes := map[string]*networkingapi.HTTPRoute{}
	for _, r := range vs.Spec.Http {
		routes[r.Name] = r
	}
	require.Len(t, routes, len(vs.Spec.Http))
	assert.Equal(t, "default", vs.Spec.Http[len(vs.Spec.Http)-1].Name, "the default route comes last")
	for _, tg := range ps[0].Spec.RouteHints.Targets {
		if len(tg.Headers) == 0 {
			continue
		}
		r := routes[tg.Name]
		require.NotNil(t, r, tg.Name)
		assert.Equal(t, tg.Name, r.Route[0].Destination.Subset)
		for h, v := range tg.Headers {
			assert.Equal(t, v, r.Match[0].Headers[h].GetExact())
		}
	}
	hr := objs[2].(*gwv1.HTTPRoute)
	require.Len(t, hr.Spec.ParentRefs, 1)
	assert.Equal(t, "public", string(hr.Spec.ParentRefs[0].Name))
	for _, tg := range ps[1].Spec.RouteHints.Targets {
		found := false
		for _, r := range hr.Spec.Rules {
			require.Len(t, r.Matches, 1)
			if len(tg.Headers) > 0 && len(r.Matches[0].Headers) == len(tg.Headers) {
				found = string(r.BackendRefs[0].Name) == "orders-"+tg.Name
				for _, h := range r.Matches[0].Headers {
					found = found && tg.Headers[string(h.Name)] == h.Value
				}
			}
			if len(tg.Headers) == 0 && len(r.Matches[0].Headers) == 0 {
				found = string(r.BackendRefs[0].Name) == "orders-"+tg.Name && *r.BackendRefs[0].Namespace == "shop"
			}
			if found {
				break
			}
		}
		assert.True(t, found, "target %s", tg.Name)
	}

	_, err = envoyfilters.Routes([]*v1alpha1.TrafficPolicy{byName(t, "orders")}, envoyfilters.RouteOptions{Host: "x"})
	assert.ErrorContains(t, err, "has no routeHints section")
	_, err = envoyfilters.Routes(ps, envoyfilters.RouteOptions{})
	assert.ErrorContains(t, err, "the destination host is required")
}

// gatewayAPICRDs are Gateway API's CRDs (standard channel) from the module this
// repository requires.
func gatewayAPICRDs(t *testing.T) *crdschema.Set {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	require.NoError(t, err)
	crds := filepath.Join(strings.TrimSpace(string(dir)), "config", "crd", "standard")
	set, err := crdschema.Load(filepath.Join(crds, "gateway.networking.k8s.io_httproutes.yaml"), filepath.Join(crds, "gateway.networking.k8s.io_referencegrants.yaml"))
	require.NoError(t, err)
	require.True(t, set.Has("gateway.networking.k8s.io/v1", "HTTPRoute"))
	return set
}

// TestValidatorsRefuse: the validators the tests above rely on can fail.
func TestValidatorsRefuse(t *testing.T) {
	set := istioCRDs(t)
	p := examples(t)[0]
	objs, err := envoyfilters.WasmPlugins(p, options)
	require.NoError(t, err)
	out, err := envoyfilters.MarshalYAML(objs[0])
	require.NoError(t, err)
	for name, c := range map[string]struct{ old, new, want string }{
		"unknown field": {"  phase: AUTHN\n", "  phase: AUTHN\n  phasee: AUTHN\n", "spec.phasee"},
		"bad enum":      {"failStrategy: FAIL_CLOSE", "failStrategy: FAIL_SOMETIMES", "spec.failStrategy"},
		"bad url (CEL)": {"url: oci://", "url: ftp://", "url must have schema"},
	} {
		doc := strings.Replace(string(out), c.old, c.new, 1)
		require.NotEqual(t, string(out), doc, name)
		err := set.ValidateYAML([]byte(doc))
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}

	bs, err := envoyfilters.EnvoyBootstrap(p, envoyfilters.EnvoyOptions{})
	require.NoError(t, err)
	y, err := envoyfilters.MarshalEnvoyYAML(bs)
	require.NoError(t, err)
	for name, c := range map[string]struct{ old, new, want string }{
		"unknown field":            {"merge_slashes: true", "merge_slashez: true", "merge_slashez"},
		"rule inside an Any (HCM)": {"stat_prefix: meshplug", "stat_prefix: \"\"", "StatPrefix"},
		"rule inside the Wasm Any": {"filename: /etc/envoy/wasm/meshplug.wasm", "filename: \"\"", "Filename"},
		"unregistered Any type":    {"envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.routerx.v3.Router", "routerx"},
	} {
		doc := strings.Replace(string(y), c.old, c.new, 1)
		require.NotEqual(t, string(y), doc, name)
		_, err := envoyvalidate.BootstrapYAML([]byte(doc))
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	orders, gw := byName(t, "orders"), byName(t, "public-gateway")
	_, err := envoyfilters.WasmPlugins(orders, envoyfilters.Options{})
	assert.ErrorContains(t, err, `no module given for filter "auth"`)
	_, err = envoyfilters.WasmPlugins(orders, envoyfilters.Options{Modules: map[string]envoyfilters.Module{"auth": {URL: "oci://x/auth", SHA256: "abc"}}})
	assert.ErrorContains(t, err, "sha256 must be 64 hex digits")

	svc := gw.DeepCopy()
	svc.Spec.TargetRefs[0] = v1alpha1.PolicyTargetReference{Kind: "Service", Name: "orders"}
	_, err = envoyfilters.EnvoyFilters(svc, options)
	assert.ErrorContains(t, err, "not waypoints")

	noAddr := orders.DeepCopy()
	noAddr.Spec.Auth.ExtAuthz.HTTPService.Cluster = "authz"
	_, err = envoyfilters.EnvoyBootstrap(noAddr, envoyfilters.EnvoyOptions{})
	assert.ErrorContains(t, err, `spec.auth.ext_authz.http_service.cluster: cluster "authz" has no address`)
	_, err = envoyfilters.EnvoyBootstrap(noAddr, envoyfilters.EnvoyOptions{Clusters: map[string]string{"authz": "127.0.0.1:9000"}})
	assert.NoError(t, err)

	broken := orders.DeepCopy()
	broken.Spec.Auth.Rules[0].Requires = []string{"nobody"}
	_, err = envoyfilters.WasmPlugins(broken, options)
	assert.ErrorContains(t, err, `spec.auth.rules[0].requires: not allowed on a public rule`)
}

package istiocheck

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"oras.land/oras-go/v2/registry/remote"

	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/test"
	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"

	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/wasmoci/ocitest"
)

// bundleRegistry pushes meshplug.wasm (bundleWasm) as meshplug push does to a registry
// on loopback, behind a proxy that counts the downloads of the module's layer, and
// returns the image's oci:// URL (by tag), the proxy's host and the download counter.
func bundleRegistry(t *testing.T) (string, string, *atomic.Int64) {
	t.Helper()
	addr := ocitest.Registry(t)
	img, err := wasmoci.Pack([]byte(bundleWasm))
	require.NoError(t, err)
	repo, err := remote.NewRepository(addr + "/meshplug/meshplug")
	require.NoError(t, err)
	repo.PlainHTTP = true
	require.NoError(t, wasmoci.Push(context.Background(), repo, img, "v1"))

	var layerGets atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+img.Layer.Digest.String()) {
			layerGets.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	return "oci://" + host + "/meshplug/meshplug:v1", host, &layerGets
}

// bundleCase is one kind of proxy a policy attaches to: the mesh it lives in, the
// policy's target, and the proxy istiod generates for.
type bundleCase struct {
	name, ns, target string
	policies         []string // names of the policies, each with the four sections on target
	formats          []string
	mesh, kube       string // ConfigString and KubernetesObjectString fixtures
	ambient          bool
	proxy            func(*xds.FakeDiscoveryServer) *model.Proxy
}

var bundleCases = []bundleCase{
	{
		name: "sidecar", ns: "shop", policies: []string{"orders"}, target: "  selector: {matchLabels: {app: orders}}",
		formats: []string{"istio", "envoyfilter"},
		mesh:    join(ordersService, ordersWorkload, ordersAuthz),
		proxy:   func(s *xds.FakeDiscoveryServer) *model.Proxy { return sidecar(s, "shop", "10.0.0.1") },
	},
	{
		// Two policies on one workload: eight plugins, two of each filter, one VM.
		name: "sidecar, two policies", ns: "shop", policies: []string{"orders", "orders-extra"}, target: "  selector: {matchLabels: {app: orders}}",
		formats: []string{"istio", "envoyfilter"},
		mesh:    join(ordersService, ordersWorkload, ordersAuthz),
		proxy:   func(s *xds.FakeDiscoveryServer) *model.Proxy { return sidecar(s, "shop", "10.0.0.1") },
	},
	{
		name: "classic gateway", ns: "istio-system", policies: []string{"edge"}, target: "  selector: {matchLabels: {istio: ingressgateway}}",
		formats: []string{"istio", "envoyfilter"},
		mesh:    join(classicGateway, ordersService),
		proxy: func(s *xds.FakeDiscoveryServer) *model.Proxy {
			return router(s, "istio-system", map[string]string{"istio": "ingressgateway"})
		},
	},
	{
		name: "Gateway API gateway", ns: "ingress", policies: []string{"public"}, target: "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public}]",
		formats: []string{"istio", "envoyfilter"},
		mesh:    join(gatewayAPIGateway, gatewayAPIDeployment, ordersService), kube: gatewayAPIGateway,
		proxy: func(s *xds.FakeDiscoveryServer) *model.Proxy {
			return router(s, "ingress", map[string]string{"gateway.networking.k8s.io/gateway-name": "public", "istio.io/gateway-name": "public"})
		},
	},
	{
		name: "waypoint", ns: "shop", policies: []string{"orders-wp"}, target: "  targetRefs: [{group: '', kind: Service, name: orders}]",
		formats: []string{"istio"},
		mesh:    waypointObjects, kube: waypointObjects, ambient: true,
		proxy: func(s *xds.FakeDiscoveryServer) *model.Proxy {
			return s.SetupProxy(&model.Proxy{
				Type: model.Waypoint, ConfigNamespace: "shop", IPAddresses: []string{"10.0.5.1"},
				Labels: map[string]string{
					"gateway.networking.k8s.io/gateway-name": "waypoint",
					"gateway.istio.io/managed":               "istio.io-mesh-controller",
				},
			})
		},
	},
}

// TestBundleOneVM: with the default rendering (the bundle meshplug.wasm), on a sidecar
// (one policy, and two), a classic gateway, a Gateway API gateway and a waypoint, in
// both renderings (EnvoyFilters: not on the waypoint, which they refuse), the
// Wasm configuration istiod sends over ECDS for each of the four filters fetches the
// bundle (its URL and sha256), selects the filter by root_id = the filter's name, and
// keeps its own failure policy (auth closed, the others open) and configuration (two
// policies' ratelimit plugins their own limits); istio-agent's fetcher
// stores the bundle once and hands Envoy, for every plugin, the same VM configuration
// (vm_id, runtime, the same local file, no environment) — the VM key Envoy shares one
// VM per worker on — and a later push downloads nothing.
func TestBundleOneVM(t *testing.T) {
	url, host, layerGets := bundleRegistry(t)
	o := bundle(t, url)
	for _, bc := range bundleCases {
		for _, format := range bc.formats {
			t.Run(bc.name+"/"+format, func(t *testing.T) {
				if bc.ambient {
					test.SetForTest(t, &features.EnableAmbient, true)
				}
				// Each policy its own rate limit, to tell the plugins' configurations apart.
				limit := map[string]string{} // policy -> its limit as the filter's JSON has it
				var docs []string
				for i, name := range bc.policies {
					limit[name] = fmt.Sprintf(`"requests":%d`, 100+i)
					docs = append(docs, strings.Replace(allFour(name, bc.ns, bc.target), "requests: 100", fmt.Sprintf("requests: %d", 100+i), 1))
				}
				ps := policies(t, join(docs...))
				s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: join(bc.mesh, render(t, format, o, ps)), KubernetesObjectString: bc.kube})
				p := bc.proxy(s)

				filterOf := map[string]string{} // ECDS resource name -> filter
				var names []string
				for name := range ecdsFilters(t, s.Listeners(p)) {
					for _, policy := range bc.policies {
						for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
							if objectName(name) == bc.ns+"."+policy+"-"+f {
								filterOf[name] = f
								names = append(names, name)
							}
						}
					}
				}
				n := 4 * len(bc.policies)
				require.Len(t, names, n, "the four filters of each policy over ECDS: %v", names)

				ecs := s.ConfigGen.BuildExtensionConfiguration(p, s.PushContext(), names, nil)
				require.Len(t, ecs, n)
				var resources []*anypb.Any
				for _, ec := range ecs {
					f := filterOf[ec.GetName()]
					require.NotEmpty(t, f, ec.GetName())
					w := &httpwasm.Wasm{}
					require.NoError(t, ec.GetTypedConfig().UnmarshalTo(w), f)
					c := w.GetConfig()
					assert.Equal(t, f, c.GetRootId(), "root_id of %s", f)
					remote := c.GetVmConfig().GetCode().GetRemote()
					assert.Equal(t, url, remote.GetHttpUri().GetUri(), f)
					assert.Equal(t, o.Bundle.SHA256, remote.GetSha256(), f)
					want := wasmv3.FailurePolicy_FAIL_OPEN
					if f == "auth" {
						want = wasmv3.FailurePolicy_FAIL_CLOSED
					}
					assert.Equal(t, want, c.GetFailurePolicy(), f)
					if f == "ratelimit" {
						// Each plugin keeps its own configuration in the shared VM.
						conf := &wrapperspb.StringValue{}
						require.NoError(t, c.GetConfiguration().UnmarshalTo(conf))
						policy := strings.TrimSuffix(objectName(ec.GetName())[len(bc.ns)+1:], "-ratelimit")
						require.Contains(t, limit, policy, ec.GetName())
						assert.Contains(t, conf.GetValue(), limit[policy], "%s: the configuration of policy %s", ec.GetName(), policy)
					}
					a, err := anypb.New(ec)
					require.NoError(t, err)
					resources = append(resources, a)
				}

				dir := t.TempDir()
				cache := wasm.NewLocalFileCache(dir, wasm.Options{InsecureRegistries: sets.New(host), HTTPRequestTimeout: 10 * time.Second, HTTPRequestMaxRetries: 1})
				t.Cleanup(cache.Cleanup)
				before := layerGets.Load()
				vms := convert(t, resources, cache, filterOf)
				downloads := layerGets.Load() - before
				t.Logf("first push: %d download(s) of the bundle's layer for %d plugins", downloads, n)
				// The agent converts the ECDS resources of a push concurrently and does
				// not coalesce the fetches: one to n downloads, one stored file.
				assert.GreaterOrEqual(t, downloads, int64(1))
				assert.LessOrEqual(t, downloads, int64(n))
				files, err := filepath.Glob(filepath.Join(dir, "*", "*.wasm"))
				require.NoError(t, err)
				require.Len(t, files, 1, "the agent stores the bundle once")

				wantVMID := "" // istiod sets none: plugins with the same code share a VM
				if format == "envoyfilter" {
					wantVMID = envoyfilters.BundleVMID
				}
				var first *wasmv3.VmConfig
				for name, vm := range vms {
					f := filterOf[name]
					assert.Equal(t, files[0], vm.GetCode().GetLocal().GetFilename(), f)
					assert.Equal(t, wantVMID, vm.GetVmId(), f)
					assert.Empty(t, vm.GetEnvironmentVariables().GetKeyValues(), "%s: the agent strips ISTIO_META_* (pull policy, resource version)", f)
					if first == nil {
						first = vm
						continue
					}
					assert.True(t, proto.Equal(first, vm), "%s: VM configuration differs from another plugin's:\n%v\n%v", f, vm, first)
				}
				b, err := os.ReadFile(files[0])
				require.NoError(t, err)
				assert.Equal(t, bundleWasm, string(b))

				// The next push of the same configuration: from the cache, same file.
				resources = resources[:0]
				for _, ec := range ecs {
					a, err := anypb.New(ec)
					require.NoError(t, err)
					resources = append(resources, a)
				}
				before = layerGets.Load()
				for name, vm := range convert(t, resources, cache, filterOf) {
					assert.Equal(t, files[0], vm.GetCode().GetLocal().GetFilename(), name)
				}
				assert.Zero(t, layerGets.Load()-before, "a later push downloads nothing")
			})
		}
	}
}

// convert runs istio-agent's conversion of ECDS resources with cache and returns each
// resource's resulting VM configuration by resource name; each must still be the Wasm
// filter (not the agent's RBAC fallback) with its filter as root_id.
func convert(t *testing.T, resources []*anypb.Any, cache wasm.Cache, filterOf map[string]string) map[string]*wasmv3.VmConfig {
	t.Helper()
	require.NoError(t, wasm.MaybeConvertWasmExtensionConfig(resources, cache))
	out := map[string]*wasmv3.VmConfig{}
	for _, r := range resources {
		ec := &core.TypedExtensionConfig{}
		require.NoError(t, r.UnmarshalTo(ec))
		f := filterOf[ec.GetName()]
		require.Equal(t, envoyfilters.WasmTypeURL, ec.GetTypedConfig().GetTypeUrl(), "%s: the agent fetched the bundle", f)
		w := &httpwasm.Wasm{}
		require.NoError(t, ec.GetTypedConfig().UnmarshalTo(w))
		assert.Equal(t, f, w.GetConfig().GetRootId(), f)
		out[ec.GetName()] = w.GetConfig().GetVmConfig()
	}
	require.Len(t, out, len(filterOf))
	return out
}

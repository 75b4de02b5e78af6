package istiocheck

import (
	"errors"
	"slices"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/wasm"
)

// failingCache is an agent Wasm cache that cannot fetch anything (registry down,
// digest mismatch).
type failingCache struct{}

func (failingCache) Get(string, wasm.GetOptions) (string, error) {
	return "", errors.New("registry unreachable")
}
func (failingCache) Cleanup() {}

// ecdsFilters are the HTTP filters of the listeners configured over ECDS, by name.
func ecdsFilters(t *testing.T, ls []*listener.Listener) map[string]*core.ExtensionConfigSource {
	t.Helper()
	out := map[string]*core.ExtensionConfigSource{}
	for _, l := range ls {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() != "envoy.filters.network.http_connection_manager" {
					continue
				}
				m := &hcm.HttpConnectionManager{}
				require.NoError(t, f.GetTypedConfig().UnmarshalTo(m))
				for _, hf := range m.GetHttpFilters() {
					if cd := hf.GetConfigDiscovery(); cd != nil {
						out[hf.GetName()] = cd
					}
				}
			}
		}
	}
	return out
}

// TestECDSFailOpen: in both renderings, each filter's ECDS subscription is the one
// istiod makes for a WasmPlugin (initial fetch timeout 0, the Wasm and RBAC types),
// and when Istio's agent cannot fetch the module, the RBAC filter it substitutes is
// accepted by that subscription: deny-all for auth (FAIL_CLOSE), allow-all for the
// others (FAIL_OPEN).
func TestECDSFailOpen(t *testing.T) {
	ps := policies(t, allFour("orders", "shop", "  selector: {matchLabels: {app: orders}}"))
	istiod := map[string]map[string]*core.ExtensionConfigSource{} // the WasmPlugin rendering's, by layout and filter
	for _, c := range formatsAndLayouts("istio", "envoyfilter") {
		format := c.format
		t.Run(c.name, func(t *testing.T) {
			s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: join(ordersService, ordersWorkload, render(t, format, layout(t, c.layout), ps))})
			p := sidecar(s, "shop", "10.0.0.1")
			subs := ecdsFilters(t, s.Listeners(p))
			byFilter := map[string]*core.ExtensionConfigSource{}
			var names []string
			for name, cd := range subs {
				for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
					if objectName(name) == "shop.orders-"+f {
						byFilter[f] = cd
						names = append(names, name)
					}
				}
			}
			require.Len(t, byFilter, 4, "ECDS filters: %v", subs)
			if format == "istio" {
				istiod[c.layout] = byFilter
			} else {
				want := istiod[c.layout]
				require.NotNil(t, want, "the istio subtests run first")
				for f, cd := range byFilter {
					assert.Equal(t, want[f].GetTypeUrls(), cd.GetTypeUrls(), f)
					assert.Equal(t, want[f].GetConfigSource().GetInitialFetchTimeout().AsDuration(), cd.GetConfigSource().GetInitialFetchTimeout().AsDuration(), f)
					assert.Equal(t, want[f].GetApplyDefaultConfigWithoutWarming(), cd.GetApplyDefaultConfigWithoutWarming(), f)
				}
			}

			ecs := s.ConfigGen.BuildExtensionConfiguration(p, s.PushContext(), names, nil)
			require.Len(t, ecs, 4)
			var resources []*anypb.Any
			for _, ec := range ecs {
				a, err := anypb.New(ec)
				require.NoError(t, err)
				resources = append(resources, a)
			}
			require.NoError(t, wasm.MaybeConvertWasmExtensionConfig(resources, failingCache{}))
			for _, r := range resources {
				ec := &core.TypedExtensionConfig{}
				require.NoError(t, r.UnmarshalTo(ec))
				var filter string
				for f := range byFilter {
					if objectName(ec.GetName()) == "shop.orders-"+f {
						filter = f
					}
				}
				require.NotEmpty(t, filter, ec.GetName())
				typ := ec.GetTypedConfig().GetTypeUrl()
				assert.True(t, slices.Contains(byFilter[filter].GetTypeUrls(), typ), "%s: the agent's %s is not accepted by %v", filter, typ, byFilter[filter].GetTypeUrls())
				rb := &rbac.RBAC{}
				require.NoError(t, ec.GetTypedConfig().UnmarshalTo(rb), filter)
				// No rules: allow all; empty rules: deny all.
				assert.Equal(t, filter == "auth", rb.GetRules() != nil, "%s: deny-all only for auth", filter)
			}
		})
	}
}

package istiocheck

import (
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/test"

	"github.com/meshplug/meshplug/envoyfilters"
)

// subsetClusters are the subset clusters of host the routes send to.
func subsetClusters(rcs []*route.RouteConfiguration, host string) []string {
	var out []string
	for _, rc := range rcs {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				c := r.GetRoute().GetCluster()
				if strings.HasSuffix(c, "|"+host) && !strings.Contains(c, "||") {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// TestRoutesStayInTheirNamespace: the policy's sidecars (namespace web, calling
// orders in shop) route hinted requests to the subsets, whose clusters they have; a
// sidecar of another namespace gets no route to a subset. Rendered as before issue 20
// (no exportTo), the routes leak to that namespace.
func TestRoutesStayInTheirNamespace(t *testing.T) {
	const host = "orders.shop.svc.cluster.local"
	ps := policies(t, allFour("storefront", "web", "  selector: {matchLabels: {app: storefront}}"))
	for name, c := range map[string]struct {
		exportTo []string
		leaks    bool // the other namespace's sidecar gets subset routes
	}{
		"rendered (exportTo .)":         {leaks: false},
		"before issue 20 (no exportTo)": {exportTo: []string{"*"}, leaks: true},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := envoyfilters.Routes(ps, envoyfilters.RouteOptions{Host: host, ExportTo: c.exportTo})
			require.NoError(t, err)
			y, err := envoyfilters.MarshalYAML(objs...)
			require.NoError(t, err)
			s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: join(ordersService, ordersWorkload, string(y))})
			web := sidecar(s, "web", "10.0.2.1")
			got := subsetClusters(s.Routes(web), host)
			assert.Contains(t, got, "outbound|8080|canary|"+host)
			assert.Contains(t, got, "outbound|8080|stable|"+host)
			clusters := map[string]bool{}
			for _, cl := range s.Clusters(web) {
				clusters[cl.GetName()] = true
			}
			for _, cl := range got {
				assert.True(t, clusters[cl], "the policy's sidecar has the cluster of %s", cl)
			}
			other := sidecar(s, "other", "10.0.3.1")
			assert.Equal(t, c.leaks, len(subsetClusters(s.Routes(other), host)) > 0)
		})
	}
}

// subsetServices are the per-target Services an HTTPRoute's rules send to.
const subsetServices = `
apiVersion: v1
kind: Service
metadata: {name: orders-beta, namespace: shop}
spec:
  clusterIP: 240.0.0.11
  selector: {app: orders, version: beta}
  ports:
  - {name: http, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: orders-stable, namespace: shop}
spec:
  clusterIP: 240.0.0.12
  selector: {app: orders, version: stable}
  ports:
  - {name: http, port: 8080}
`

// TestHTTPRouteOnGatewayAPIGateway: the HTTPRoute rendered for a Gateway targetRefs
// policy attaches to the gateway (across namespaces, through the ReferenceGrant) and
// routes requests with the hint header to the target's Service, others to the default.
func TestHTTPRouteOnGatewayAPIGateway(t *testing.T) {
	ps := policies(t, strings.NewReplacer("name: canary, headers: {x-route-hint: canary}", "name: beta, headers: {x-route-hint: beta}",
		"target: canary", "target: beta").Replace(allFour("public", "ingress", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public}]")))
	objs, err := envoyfilters.Routes(ps, envoyfilters.RouteOptions{Host: "orders.shop.svc.cluster.local", Port: 8080})
	require.NoError(t, err)
	y, err := envoyfilters.MarshalYAML(objs...)
	require.NoError(t, err)
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		ConfigString:           join(gatewayAPIGateway, string(y), gatewayAPIDeployment, ordersService),
		KubernetesObjectString: join(gatewayAPIGateway, string(y), subsetServices),
	})
	gw := router(s, "ingress", map[string]string{"gateway.networking.k8s.io/gateway-name": "public"})
	byCluster := map[string]string{} // cluster -> header it is matched on ("" = none)
	for _, rc := range s.Routes(gw) {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				h := ""
				for _, m := range r.GetMatch().GetHeaders() {
					h += m.GetName() + "=" + m.GetStringMatch().GetExact()
				}
				if c := r.GetRoute().GetCluster(); c != "" {
					byCluster[c] = h
				}
			}
		}
	}
	assert.Equal(t, map[string]string{
		"outbound|8080||orders-beta.shop.svc.cluster.local":   "x-route-hint=beta",
		"outbound|8080||orders-stable.shop.svc.cluster.local": "",
	}, byCluster)
}

// TestHTTPRouteOnWaypoint: the HTTPRoute rendered for a Service targetRefs policy is a
// producer route of the Service: the waypoint's chain for it routes hinted requests to
// the target's Service, others to the default.
func TestHTTPRouteOnWaypoint(t *testing.T) {
	test.SetForTest(t, &features.EnableAmbient, true)
	ps := policies(t, strings.NewReplacer("name: canary, headers: {x-route-hint: canary}", "name: beta, headers: {x-route-hint: beta}",
		"target: canary", "target: beta").Replace(allFour("orders-wp", "shop", "  targetRefs: [{group: '', kind: Service, name: orders}]")))
	objs, err := envoyfilters.Routes(ps, envoyfilters.RouteOptions{Host: "orders.shop.svc.cluster.local", Port: 8080})
	require.NoError(t, err)
	y, err := envoyfilters.MarshalYAML(objs...)
	require.NoError(t, err)
	kube := join(waypointObjects, subsetServices, string(y))
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: join(waypointObjects, string(y)), KubernetesObjectString: kube})
	wp := s.SetupProxy(&model.Proxy{
		Type: model.Waypoint, ConfigNamespace: "shop", IPAddresses: []string{"10.0.5.1"},
		Labels: map[string]string{"gateway.networking.k8s.io/gateway-name": "waypoint", "gateway.istio.io/managed": "istio.io-mesh-controller"},
	})
	byCluster := map[string]string{}
	for _, l := range s.Listeners(wp) {
		for _, fc := range l.GetFilterChains() {
			if !strings.Contains(fc.GetName(), "orders.shop.svc.cluster.local") {
				continue
			}
			for _, f := range fc.GetFilters() {
				m := &hcm.HttpConnectionManager{}
				if f.GetName() != "envoy.filters.network.http_connection_manager" || f.GetTypedConfig().UnmarshalTo(m) != nil {
					continue
				}
				for _, vh := range m.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						h := ""
						for _, hm := range r.GetMatch().GetHeaders() {
							h += hm.GetName() + "=" + hm.GetStringMatch().GetExact()
						}
						if c := r.GetRoute().GetCluster(); c != "" {
							byCluster[c] = h
						}
					}
				}
			}
		}
	}
	assert.Equal(t, "x-route-hint=beta", byCluster["outbound|8080||orders-beta.shop.svc.cluster.local"], "%v", byCluster)
	h, ok := byCluster["outbound|8080||orders-stable.shop.svc.cluster.local"]
	assert.True(t, ok && h == "", "the default route: %v", byCluster)
}

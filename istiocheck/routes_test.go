package istiocheck

import (
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pilot/test/xds"

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

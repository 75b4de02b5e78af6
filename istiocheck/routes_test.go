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

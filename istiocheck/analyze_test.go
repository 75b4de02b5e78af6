package istiocheck

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/local"
	"istio.io/istio/pkg/config/resource"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
)

// analyze runs every analyzer of `istioctl analyze` (files only, Istio's default
// resources) on the YAML and returns the messages about meshplug's objects.
func analyze(t *testing.T, y string) []string {
	t.Helper()
	sa := local.NewSourceAnalyzer(analyzers.AllCombined(), resource.Namespace(""), resource.Namespace("istio-system"), nil)
	require.NoError(t, sa.AddDefaultResources())
	require.NoError(t, sa.AddReaderKubeSource([]local.ReaderSource{{Name: "rendered.yaml", Reader: strings.NewReader(y)}}))
	cancel := make(chan struct{})
	defer close(cancel)
	res, err := sa.Analyze(cancel)
	require.NoError(t, err)
	var out []string
	for _, m := range res.Messages {
		if m.Resource != nil && m.Resource.Metadata.Labels[envoyfilters.LabelManagedBy] != "meshplug" {
			continue
		}
		out = append(out, m.String())
	}
	return out
}

// routesFixtures are what the rendered routes refer to: the host and the gateways.
const routesFixtures = ordersService + "\n---\n" + gatewayAPIGateway + "\n---\n" + classicGateway

func routesOf(t *testing.T, ps []*v1alpha1.TrafficPolicy, o envoyfilters.RouteOptions) string {
	t.Helper()
	objs, err := envoyfilters.Routes(ps, o)
	require.NoError(t, err)
	y, err := envoyfilters.MarshalYAML(objs...)
	require.NoError(t, err)
	return string(y)
}

// TestAnalyzeClean: istioctl analyze's analyzers report nothing on what meshplug
// renders for sidecars, classic and Gateway API gateways and waypoints (WasmPlugins,
// EnvoyFilters, routes of several policies and namespaces); and they do report what
// issue 20 found, so the check can fail.
func TestAnalyzeClean(t *testing.T) {
	side := policies(t, allFour("orders", "shop", "  selector: {matchLabels: {app: orders}}"))
	side2 := policies(t, strings.Replace(allFour("storefront", "shop", "  selector: {matchLabels: {app: storefront}}"), "x-route-hint: canary", "x-route-hint: beta", 1))
	web := policies(t, allFour("web", "web", "  selector: {matchLabels: {app: web}}"))
	classic := policies(t, allFour("edge", "istio-system", "  selector: {matchLabels: {istio: ingressgateway}}"))
	gwAPI := policies(t, allFour("public", "ingress", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public}]"))
	wp := policies(t, allFour("orders-wp", "shop", "  targetRefs: [{group: '', kind: Service, name: orders}]"))
	all := append(append(append(append(append(append([]*v1alpha1.TrafficPolicy{}, side...), side2...), web...), classic...), gwAPI...), wp...)
	noWaypoint := append(append(append(append(append([]*v1alpha1.TrafficPolicy{}, side...), side2...), web...), classic...), gwAPI...)
	o := envoyfilters.RouteOptions{Host: "orders.shop.svc.cluster.local", Port: 8080, Gateways: []string{"istio-system/public"}}

	// The annotation off, as the IST0133 check below needs.
	unsuppressed := func(y string) string {
		return strings.ReplaceAll(y, "galley.istio.io/analyze-suppress: IST0133", "meshplug.io/x: z")
	}
	clean := map[string]string{"routes": routesOf(t, all, o)}
	for _, l := range layouts {
		clean["WasmPlugins/"+l] = render(t, "istio", layout(t, l), all)
		clean["EnvoyFilters/"+l] = render(t, "envoyfilter", layout(t, l), noWaypoint)
	}
	for name, y := range clean {
		t.Run(name, func(t *testing.T) {
			require.Contains(t, y, "managed-by: meshplug")
			assert.Empty(t, analyze(t, join(routesFixtures, y)))
		})
	}

	// What the analyzers said of the renderings before issue 20.
	efs := render(t, "envoyfilter", bundle(t, bundleURL), side)
	noSuppress := unsuppressed(efs)
	zeroPriority := strings.Replace(strings.Replace(noSuppress, "priority: 7", "priority: 0", 1), "priority: 8", "priority: 0", 1)
	wide := strings.ReplaceAll(routesOf(t, append(append([]*v1alpha1.TrafficPolicy{}, side...), web...), o), "exportTo:\n  - .", "exportTo:\n  - '*'")
	for name, c := range map[string]struct{ y, code string }{
		"EnvoyFilter without the suppression":                  {noSuppress, "IST0133"},
		"relative patch without priority":                      {zeroPriority, "IST0151"},
		"two namespaces' VirtualServices, exported everywhere": {wide, "IST0109"},
	} {
		msgs := analyze(t, join(routesFixtures, c.y))
		found := false
		for _, m := range msgs {
			found = found || strings.Contains(m, "["+c.code+"]")
		}
		assert.True(t, found, "%s: want %s in %v", name, c.code, msgs)
	}
	// IST0133 says only that EnvoyFilter is an unstable API: no other schema warning.
	for _, m := range analyze(t, join(routesFixtures, unsuppressed(render(t, "envoyfilter", bundle(t, bundleURL), noWaypoint)))) {
		assert.Contains(t, m, "[IST0133]")
		assert.Contains(t, m, "EnvoyFilter exposes internal implementation details")
	}
}

package envoyfilters_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
)

// hinted is a routeHints-only policy: target canary on x-route-hint: <hint>, default def.
func hinted(name, ns string, sel map[string]string, refs []v1alpha1.PolicyTargetReference, hint, def string) *v1alpha1.TrafficPolicy {
	p := &v1alpha1.TrafficPolicy{}
	p.APIVersion, p.Kind = v1alpha1.GroupVersion.String(), v1alpha1.Kind
	p.Name, p.Namespace = name, ns
	if sel != nil {
		p.Spec.Selector = &v1alpha1.WorkloadSelector{MatchLabels: sel}
	}
	p.Spec.TargetRefs = refs
	p.Spec.RouteHints = &routehintconfig.Spec{Targets: []routehintconfig.TargetSpec{
		{Name: "canary", Headers: map[string]string{"x-route-hint": hint}},
		{Name: def},
	}}
	return p
}

// TestRoutesByAttachment: one VirtualService per namespace and host whatever the
// number of policies (no IST0109), exported to the namespace only, with each route
// bound to where its policy's filter runs; HTTPRoutes for Gateway API gateways and
// waypoints; combinations that cannot be routed are refused.
func TestRoutesByAttachment(t *testing.T) {
	const host = "orders.shop.svc.cluster.local"
	side := func(name, ns, def string) *v1alpha1.TrafficPolicy {
		return hinted(name, ns, map[string]string{"app": name}, nil, "c-"+name, def)
	}
	classic := hinted("edge", "shop", map[string]string{"istio": "ingressgateway"}, nil, "c-edge", "stable")
	gwAPI := hinted("public", "ingress", nil, []v1alpha1.PolicyTargetReference{gatewayRef}, "c-public", "stable")
	waypoint := hinted("mesh-wp", "shop", nil, []v1alpha1.PolicyTargetReference{serviceRef}, "c-wp", "stable")
	type vsWant struct {
		ns       string
		gateways []string
		routes   map[string][]string // route name -> its match gateways
	}
	for name, c := range map[string]struct {
		ps     []*v1alpha1.TrafficPolicy
		opts   envoyfilters.RouteOptions
		vs     []vsWant
		parent map[string]string // HTTPRoute name -> parentRef kind/name
		grants int
		err    string
	}{
		"one sidecar policy": {ps: []*v1alpha1.TrafficPolicy{side("a", "shop", "stable")},
			vs: []vsWant{{ns: "shop", routes: map[string][]string{"canary": nil, "default": nil}}}},
		"two sidecar policies, one namespace": {ps: []*v1alpha1.TrafficPolicy{side("a", "shop", "stable"), side("b", "shop", "stable")},
			vs: []vsWant{{ns: "shop", routes: map[string][]string{"a.canary": nil, "b.canary": nil, "a.default": nil}}}},
		"two namespaces": {ps: []*v1alpha1.TrafficPolicy{side("a", "shop", "stable"), side("b", "web", "stable")},
			vs: []vsWant{{ns: "shop", routes: map[string][]string{"canary": nil, "default": nil}}, {ns: "web", routes: map[string][]string{"canary": nil, "default": nil}}}},
		"sidecar and classic gateway": {ps: []*v1alpha1.TrafficPolicy{side("a", "shop", "stable"), classic}, opts: envoyfilters.RouteOptions{Gateways: []string{"istio-system/public"}},
			vs: []vsWant{{ns: "shop", gateways: []string{"istio-system/public", "mesh"}, routes: map[string][]string{
				"a.canary": {"mesh"}, "a.default": {"mesh"}, "edge.canary": {"istio-system/public"}, "edge.default": {"istio-system/public"}}}}},
		"classic gateway only": {ps: []*v1alpha1.TrafficPolicy{classic}, opts: envoyfilters.RouteOptions{Gateways: []string{"istio-system/public"}},
			vs: []vsWant{{ns: "shop", gateways: []string{"istio-system/public"}, routes: map[string][]string{"canary": nil, "default": nil}}}},
		"Gateway API gateway": {ps: []*v1alpha1.TrafficPolicy{gwAPI}, opts: envoyfilters.RouteOptions{Port: 8080},
			parent: map[string]string{"public-routes": "Gateway/public"}, grants: 1},
		"waypoint": {ps: []*v1alpha1.TrafficPolicy{waypoint}, opts: envoyfilters.RouteOptions{Port: 8080},
			parent: map[string]string{"mesh-wp-routes": "Service/orders"}},
		"all kinds": {ps: []*v1alpha1.TrafficPolicy{side("a", "shop", "stable"), gwAPI, waypoint}, opts: envoyfilters.RouteOptions{Port: 8080},
			vs:     []vsWant{{ns: "shop", routes: map[string][]string{"canary": nil, "default": nil}}},
			parent: map[string]string{"public-routes": "Gateway/public", "mesh-wp-routes": "Service/orders"}, grants: 1},

		"conflicting defaults":      {ps: []*v1alpha1.TrafficPolicy{side("a", "shop", "stable"), side("b", "shop", "v1")}, err: `its default target "v1" differs from "stable" of a`},
		"classic without --gateway": {ps: []*v1alpha1.TrafficPolicy{classic}, err: "name the Istio Gateways"},
		"HTTPRoute without port":    {ps: []*v1alpha1.TrafficPolicy{gwAPI}, err: "the destination service's port is required"},
		"no host":                   {ps: []*v1alpha1.TrafficPolicy{gwAPI}, opts: envoyfilters.RouteOptions{Host: "-"}, err: "the destination host is required"},
	} {
		t.Run(name, func(t *testing.T) {
			if c.opts.Host == "" {
				c.opts.Host = host
			} else if c.opts.Host == "-" {
				c.opts.Host = ""
			}
			objs, err := envoyfilters.Routes(c.ps, c.opts)
			if c.err != "" {
				assert.ErrorContains(t, err, c.err)
				return
			}
			require.NoError(t, err)
			var vss []*networkingv1.VirtualService
			drs, grants := 0, 0
			parents := map[string]string{}
			for _, o := range objs {
				switch x := o.(type) {
				case *networkingv1.VirtualService:
					vss = append(vss, x)
				case *networkingv1.DestinationRule:
					drs++
					assert.Equal(t, []string{"."}, x.Spec.ExportTo)
				case *gwv1.HTTPRoute:
					require.Len(t, x.Spec.ParentRefs, 1)
					parents[x.Name] = string(*x.Spec.ParentRefs[0].Kind) + "/" + string(x.Spec.ParentRefs[0].Name)
					for _, r := range x.Spec.Rules {
						assert.Equal(t, int32(8080), *r.BackendRefs[0].Port)
					}
				case *gwv1beta1.ReferenceGrant:
					grants++
					assert.Equal(t, "shop", x.Namespace)
				}
			}
			assert.Equal(t, len(c.vs), drs)
			assert.Equal(t, c.grants, grants)
			if c.parent == nil {
				c.parent = map[string]string{}
			}
			assert.Equal(t, c.parent, parents)
			require.Len(t, vss, len(c.vs))
			for i, want := range c.vs {
				vs := vss[i]
				assert.Equal(t, want.ns, vs.Namespace)
				assert.Equal(t, []string{"."}, vs.Spec.ExportTo)
				assert.Equal(t, want.gateways, vs.Spec.Gateways)
				got := map[string][]string{}
				for _, r := range vs.Spec.Http {
					var gws []string
					if len(r.Match) > 0 {
						gws = r.Match[0].Gateways
					}
					got[r.Name] = gws
				}
				assert.Equal(t, want.routes, got)
				last := vs.Spec.Http[len(vs.Spec.Http)-1]
				for _, m := range last.Match {
					assert.Empty(t, m.GetHeaders(), "a default route comes last")
				}
			}
		})
	}
}

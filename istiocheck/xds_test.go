package istiocheck

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/test"
)

// The mesh of these tests: the service orders (namespace shop) with one workload, a
// classic ingress gateway (istio-system), a Gateway API gateway (ingress) and a
// waypoint (shop), as istiod sees them.
const (
	ordersService = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders.shop.svc.cluster.local]
  addresses: [240.0.0.10]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  workloadSelector:
    labels: {app: orders}
`
	ordersWorkload = `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: orders-1, namespace: shop}
spec:
  address: 10.0.0.1
  labels: {app: orders}
`
	// An AuthorizationPolicy, so that Istio's RBAC filter is in the chain.
	ordersAuthz = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orders-allow, namespace: shop}
spec:
  selector:
    matchLabels: {app: orders}
  action: ALLOW
  rules:
  - to:
    - operation: {methods: [GET, POST]}
`
	classicGateway = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
`
	gatewayAPIGateway = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec:
  controllerName: istio.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: ingress}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
`
	// The Service and pod Istio deploys for the Gateway API gateway public.
	gatewayAPIDeployment = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: public-istio, namespace: ingress}
spec:
  hosts: [public-istio.ingress.svc.cluster.local]
  addresses: [240.0.2.10]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http, protocol: HTTP}
  workloadSelector:
    labels: {gateway.networking.k8s.io/gateway-name: public}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: public-istio-1, namespace: ingress}
spec:
  address: 10.0.9.1
  labels: {gateway.networking.k8s.io/gateway-name: public}
`
)

// sidecar is the orders workload's sidecar (or one with its labels in namespace ns).
func sidecar(s *xds.FakeDiscoveryServer, ns, ip string) *model.Proxy {
	return s.SetupProxy(&model.Proxy{
		Type: model.SidecarProxy, ConfigNamespace: ns, IPAddresses: []string{ip},
		Labels:   map[string]string{"app": "orders"},
		Metadata: &model.NodeMetadata{Labels: map[string]string{"app": "orders"}},
	})
}

func router(s *xds.FakeDiscoveryServer, ns string, labels map[string]string) *model.Proxy {
	return s.SetupProxy(&model.Proxy{
		Type: model.Router, ConfigNamespace: ns, IPAddresses: []string{"10.0.9.1"},
		Labels: labels, Metadata: &model.NodeMetadata{Labels: labels},
	})
}

// allFour is a policy with the four sections on target (selector or targetRefs YAML).
func allFour(name, ns, target string) string {
	return fmt.Sprintf(`
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: %s, namespace: %s}
spec:
%s
  auth:
    api_keys:
      keys:
      - consumer: ci-bot
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    default_rule: {requires: [api_keys]}
  rateLimit:
    rules:
    - name: per-consumer
      descriptors: [{key: consumer, header: x-consumer}]
      limit: {requests: 100, unit: minute}
  routeHints:
    targets:
    - {name: canary, headers: {x-route-hint: canary}}
    - {name: stable}
    rules:
    - name: ci
      match: {all: [{from: header, name: x-consumer, op: in, values: [ci-bot]}]}
      target: canary
  faults:
    faults:
    - name: slow
      delay: {fixed_delay: 1s, percentage: {numerator: 1}}
`, name, ns, target)
}

// TestSidecar: on the selected workload's sidecar, auth, rateLimit and faults run on
// inbound requests (auth and rateLimit before Istio's RBAC, faults before Istio's fault
// filter and the router) and routeHints on its outbound calls, in both renderings;
// a workload with the same labels in another namespace gets none of them.
func TestSidecar(t *testing.T) {
	ps := policies(t, allFour("orders", "shop", "  selector: {matchLabels: {app: orders}}"))
	for _, c := range formatsAndLayouts("istio", "envoyfilter") {
		format := c.format
		t.Run(c.name, func(t *testing.T) {
			s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: join(ordersService, ordersWorkload, ordersAuthz, render(t, format, layout(t, c.layout), ps))})
			p := sidecar(s, "shop", "10.0.0.1")
			cs := chains(t, s.Listeners(p))
			inbound, outbound := 0, 0
			for name, chain := range cs {
				got := ours(chain, "shop", "orders")
				switch {
				case len(name) > len("virtualInbound") && name[:len("virtualInbound")] == "virtualInbound":
					if index(chain, "envoy.filters.http.router") < 0 || len(got) == 0 {
						continue
					}
					inbound++
					assert.Equal(t, []string{"auth", "ratelimit", "fault"}, got, name)
					assertBefore(t, chain, "shop.orders-auth", "envoy.filters.http.rbac", name)
					assertBefore(t, chain, "shop.orders-ratelimit", "envoy.filters.http.rbac", name)
					assertBefore(t, chain, "shop.orders-fault", "envoy.filters.http.router", name)
					if format == "istio" {
						// UNSPECIFIED_PHASE: before Istio's fault, CORS and stats.
						assertBefore(t, chain, "shop.orders-fault", "envoy.filters.http.fault", name)
						assertBefore(t, chain, "envoy.filters.http.rbac", "shop.orders-fault", name)
					} else {
						// auth and ratelimit first of all (INSERT_FIRST), fault before the router.
						assert.Equal(t, 0, index(chain, "shop.orders-auth"), name)
						assert.Equal(t, 1, index(chain, "shop.orders-ratelimit"), name)
						assertBefore(t, chain, "envoy.filters.http.fault", "shop.orders-fault", name)
					}
				case len(got) > 0:
					outbound++
					assert.Equal(t, []string{"routehint"}, got, name)
					assertBefore(t, chain, "shop.orders-routehint", "envoy.filters.http.router", name)
				}
			}
			assert.Positive(t, inbound, "an inbound chain runs the policy: %v", cs)
			assert.Positive(t, outbound, "an outbound chain runs routehint: %v", cs)

			other := sidecar(s, "web", "10.0.1.1")
			for name, chain := range chains(t, s.Listeners(other)) {
				assert.Empty(t, ours(chain, "shop", "orders"), "%s of a workload in namespace web", name)
			}
		})
	}
}

// TestClassicGateway: a selector of classic gateway pods runs all four filters on the
// gateway's listeners (CLIENT traffic to Istio; GATEWAY patches), auth first; the same
// policy forced to sidecar modes loses auth, rateLimit and faults there, as issue 20
// found.
func TestClassicGateway(t *testing.T) {
	var cases []struct {
		format, layout, attachTo string
		want                     []string
	}
	for _, l := range layouts {
		cases = append(cases, []struct {
			format, layout, attachTo string
			want                     []string
		}{
			{"istio", l, "", []string{"auth", "ratelimit", "routehint", "fault"}},
			{"envoyfilter", l, "", []string{"auth", "ratelimit", "routehint", "fault"}},
			{"istio", l, "Sidecar", []string{"routehint"}},
			{"envoyfilter", l, "Sidecar", nil},
		}...)
	}
	for _, c := range cases {
		t.Run(c.format+"/"+c.layout+"/"+c.attachTo, func(t *testing.T) {
			target := "  selector: {matchLabels: {istio: ingressgateway}}"
			if c.attachTo != "" {
				target += "\n  attachTo: " + c.attachTo
			}
			ps := policies(t, allFour("edge", "istio-system", target))
			s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: join(classicGateway, ordersService, render(t, c.format, layout(t, c.layout), ps))})
			gw := router(s, "istio-system", map[string]string{"istio": "ingressgateway"})
			cs := chains(t, s.Listeners(gw))
			require.NotEmpty(t, cs, "the gateway has an HTTP listener")
			for name, chain := range cs {
				assert.Equal(t, c.want, ours(chain, "istio-system", "edge"), "%s: %v", name, chain)
				if len(c.want) > 0 {
					assertBefore(t, chain, "istio-system.edge-"+c.want[len(c.want)-1], "envoy.filters.http.router", name)
				}
			}
		})
	}
}

// TestGatewayAPIGateway: Gateway targetRefs run all four filters on the Gateway API
// gateway's listeners, in both renderings.
func TestGatewayAPIGateway(t *testing.T) {
	ps := policies(t, allFour("public", "ingress", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: public}]"))
	for _, c := range formatsAndLayouts("istio", "envoyfilter") {
		t.Run(c.name, func(t *testing.T) {
			s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
				ConfigString:           join(gatewayAPIGateway, gatewayAPIDeployment, ordersService, render(t, c.format, layout(t, c.layout), ps)),
				KubernetesObjectString: gatewayAPIGateway, // the Gateway API controller reads the Gateway from Kubernetes
			})
			gw := router(s, "ingress", map[string]string{
				"gateway.networking.k8s.io/gateway-name": "public", "istio.io/gateway-name": "public",
			})
			cs := chains(t, s.Listeners(gw))
			require.NotEmpty(t, cs, "the gateway has an HTTP listener")
			for name, chain := range cs {
				assert.Equal(t, []string{"auth", "ratelimit", "routehint", "fault"}, ours(chain, "ingress", "public"), "%s: %v", name, chain)
			}
		})
	}
}

func assertBefore(t *testing.T, chain []string, a, b, msg string) {
	t.Helper()
	ia, ib := index(chain, a), index(chain, b)
	if assert.GreaterOrEqual(t, ia, 0, "%s: %s in %v", msg, a, chain) && assert.GreaterOrEqual(t, ib, 0, "%s: %s in %v", msg, b, chain) {
		assert.Less(t, ia, ib, "%s: %s before %s in %v", msg, a, b, chain)
	}
}

// The waypoint of namespace shop and the Kubernetes Service orders that uses it.
const waypointObjects = `
apiVersion: v1
kind: Service
metadata:
  name: orders
  namespace: shop
  labels: {istio.io/use-waypoint: waypoint}
spec:
  clusterIP: 240.0.1.10
  selector: {app: orders}
  ports:
  - {name: http, port: 8080, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: waypoint
  namespace: shop
  labels:
    gateway.istio.io/managed: istio.io-mesh-controller
    gateway.networking.k8s.io/gateway-name: waypoint
    istio.io/gateway-name: waypoint
spec:
  clusterIP: 240.0.1.20
  selector: {gateway.networking.k8s.io/gateway-name: waypoint}
  ports:
  - {name: mesh, port: 15008, appProtocol: hbone}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: waypoint-1, namespace: shop}
spec:
  address: 10.0.5.1
  labels: {gateway.networking.k8s.io/gateway-name: waypoint}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - {name: mesh, port: 15008, protocol: HBONE}
status:
  addresses:
  - {type: Hostname, value: waypoint.shop.svc.cluster.local}
`

// TestWaypoint: Service targetRefs (and the waypoint named as a Gateway with attachTo
// Waypoint) run all four filters in the waypoint's HTTP chain for the service, auth
// and rateLimit before Istio's RBAC.
func TestWaypoint(t *testing.T) {
	for name, target := range map[string]string{
		"Service":          "  targetRefs: [{group: '', kind: Service, name: orders}]",
		"waypoint Gateway": "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]\n  attachTo: Waypoint",
	} {
		for _, l := range layouts {
			t.Run(name+"/"+l, func(t *testing.T) {
				test.SetForTest(t, &features.EnableAmbient, true)
				ps := policies(t, allFour("orders-wp", "shop", target))
				authz := `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint-allow, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: ALLOW
  rules:
  - to:
    - operation: {methods: [GET]}
`
				c := join(waypointObjects, authz, render(t, "istio", layout(t, l), ps))
				s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{ConfigString: c, KubernetesObjectString: waypointObjects})
				wp := s.SetupProxy(&model.Proxy{
					Type: model.Waypoint, ConfigNamespace: "shop", IPAddresses: []string{"10.0.5.1"},
					Labels: map[string]string{
						"gateway.networking.k8s.io/gateway-name": "waypoint",
						"gateway.istio.io/managed":               "istio.io-mesh-controller",
					},
				})
				n := 0
				for key, chain := range chains(t, s.Listeners(wp)) {
					got := ours(chain, "shop", "orders-wp")
					if len(got) == 0 {
						continue
					}
					n++
					assert.Equal(t, []string{"auth", "ratelimit", "routehint", "fault"}, got, key)
					assertBefore(t, chain, "shop.orders-wp-auth", "envoy.filters.http.rbac", key)
					assertBefore(t, chain, "shop.orders-wp-ratelimit", "envoy.filters.http.rbac", key)
					assertBefore(t, chain, "shop.orders-wp-fault", "envoy.filters.http.router", key)
					// On waypoints UNSPECIFIED_PHASE plugins come after Istio's fault and CORS.
					assertBefore(t, chain, "envoy.filters.http.cors", "shop.orders-wp-routehint", key)
				}
				assert.Positive(t, n, "a waypoint chain runs the policy")
			})
		}
	}
}

// formatAndLayout is one rendering: a format of meshplug render with a module layout.
type formatAndLayout struct{ name, format, layout string }

// formatsAndLayouts are the renderings of formats with each module layout.
func formatsAndLayouts(formats ...string) []formatAndLayout {
	var out []formatAndLayout
	for _, f := range formats {
		for _, l := range layouts {
			out = append(out, formatAndLayout{f + "/" + l, f, l})
		}
	}
	return out
}

package envoyfilters

import (
	"fmt"
	"sort"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	networking "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/meshplug/meshplug/api/v1alpha1"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
)

// RouteOptions are the inputs of the route snippets that are not in the policies.
type RouteOptions struct {
	// Host is the destination service (FQDN, e.g. reviews.default.svc.cluster.local)
	// whose subsets the hints select. Required.
	Host string
	// Hosts are the VirtualService's hosts (default [Host]) and the HTTPRoutes'
	// hostnames (default none: every hostname of the gateway's listeners).
	Hosts []string
	// Gateways are the Istio Gateways (e.g. istio-system/public) that the routes of
	// policies attached to classic gateways (a selector of gateway pods) bind to.
	// Required when such a policy is rendered; not used for other policies.
	Gateways []string
	// SubsetLabel is the pod label that tells subsets apart; each target's subset gets
	// SubsetLabel: <target name>, to be edited to the real values. Default "version".
	SubsetLabel string
	// Port is the destination service's port, which HTTPRoute backendRefs must name.
	// Required when a policy attaches to Gateway API gateways or waypoints.
	Port int32
	// ExportTo of the VirtualServices and DestinationRules: default ["."], the
	// policy's namespace, where the selected workloads (which set the hints) are. A
	// VirtualService exported further would send other namespaces' sidecars to
	// subsets whose DestinationRule they do not see (503 for every request).
	ExportTo []string
}

// Routes renders the routing that the routeHints sections of ps feed for one
// destination host, the Istio API each kind of proxy honours:
//
//   - policies on sidecars and on classic gateways (VirtualService): per namespace one
//     DestinationRule with one subset per target (named after the target, selected
//     by SubsetLabel) and one VirtualService holding the routes of every such policy
//     of the namespace (two VirtualServices for one host conflict: istioctl analyze
//     IST0109, and which wins depends on creation order). Each target with headers
//     gets a route matching all of them exactly (targets with more headers first),
//     then a default route to the subset of the one target without headers (or to the
//     host when there is not exactly one). Both are exported to ExportTo. Sidecar
//     routes bind to the mesh, classic gateway routes to Gateways; when one
//     VirtualService has both, each route's match names its gateways.
//   - policies on Gateway API gateways (Gateway targetRefs) and waypoints: one
//     HTTPRoute (gateway.networking.k8s.io/v1) per policy, whose parentRefs are the
//     Gateways, or the host's Service for a waypoint. Gateway API has no subsets: each
//     target is the Service <host's service>-<target> on Port, which the user creates
//     (the host's Service with SubsetLabel: <target> added to its selector). A
//     ReferenceGrant in the host's namespace lets routes of other namespaces use them.
//
// These are snippets to review: the filter only sets headers; which pods form a
// subset is the user's decision.
//
// References: https://istio.io/latest/docs/reference/config/networking/virtual-service/,
// https://gateway-api.sigs.k8s.io/reference/spec/#httproute
func Routes(ps []*v1alpha1.TrafficPolicy, o RouteOptions) ([]any, error) {
	if o.Host == "" {
		return nil, fmt.Errorf("the destination host is required (RouteOptions.Host, meshplug render --host)")
	}
	if o.SubsetLabel == "" {
		o.SubsetLabel = "version"
	}
	if len(o.ExportTo) == 0 {
		o.ExportTo = []string{"."}
	}
	// VirtualService routes by namespace, in the policies' order.
	type nsRoutes struct {
		ns       string
		policies []*v1alpha1.TrafficPolicy
	}
	var vsNS []*nsRoutes
	var objs, routes []any
	grants := map[string]bool{} // namespaces whose HTTPRoutes need a ReferenceGrant
	for _, p := range ps {
		if _, err := sections(p); err != nil {
			return nil, err
		}
		if p.Spec.RouteHints == nil {
			return nil, fmt.Errorf("%s: has no routeHints section", p)
		}
		switch att := p.Attachment(); {
		case att == v1alpha1.AttachWaypoint,
			(att == v1alpha1.AttachSidecar || att == v1alpha1.AttachGateway) && p.Spec.Selector == nil: // Gateway targetRefs: Gateway API
			hr, err := httpRoute(p, o)
			if err != nil {
				return nil, err
			}
			routes = append(routes, hr)
			if p.Namespace != hostNamespace(o.Host) {
				grants[p.Namespace] = true
			}
		case att == v1alpha1.AttachSidecar, att == v1alpha1.AttachGateway:
			if att == v1alpha1.AttachGateway && len(o.Gateways) == 0 {
				return nil, fmt.Errorf("%s: runs on classic gateway pods: name the Istio Gateways its routes bind to (RouteOptions.Gateways, meshplug render --gateway NAMESPACE/NAME)", p)
			}
			var g *nsRoutes
			for _, x := range vsNS {
				if x.ns == p.Namespace {
					g = x
				}
			}
			if g == nil {
				g = &nsRoutes{ns: p.Namespace}
				vsNS = append(vsNS, g)
			}
			g.policies = append(g.policies, p)
		default:
			return nil, fmt.Errorf("%s: no proxies to route on (spec.attachTo)", p)
		}
	}
	for _, g := range vsNS {
		dr, vs, err := virtualService(g.ns, g.policies, o)
		if err != nil {
			return nil, err
		}
		objs = append(objs, dr, vs)
	}
	objs = append(objs, routes...)
	if len(grants) > 0 {
		objs = append(objs, referenceGrant(o.Host, sortedKeys(grants)))
	}
	return objs, nil
}

// routeName names the route objects of a host: `<service>-<namespace>-routehints`.
func routeName(host string) string {
	labels := strings.Split(host, ".")
	if len(labels) >= 2 {
		return labels[0] + "-" + labels[1] + "-routehints"
	}
	return labels[0] + "-routehints"
}

// hostNamespace is the namespace of a Kubernetes service FQDN (`orders.shop.svc…`).
func hostNamespace(host string) string {
	if labels := strings.Split(host, "."); len(labels) >= 2 {
		return labels[1]
	}
	return ""
}

func routeMeta(name, ns string, ps []*v1alpha1.TrafficPolicy) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelManagedBy: "meshplug", LabelFilter: "routehint"}}
	if len(ps) == 1 {
		m.Labels[LabelPolicy] = ps[0].Name
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	m.Annotations = map[string]string{AnnotationPolicies: strings.Join(names, ",")}
	return m
}

// AnnotationPolicies on a route object lists the policies (of its namespace) whose
// routeHints it routes.
const AnnotationPolicies = "meshplug.io/policies"

// targetsByHeaders are p's targets, those with more headers first (the most specific
// route matches first), and the one target without headers when there is exactly one.
func targetsByHeaders(rh *routehintconfig.Spec) (withHeaders []routehintconfig.TargetSpec, plain string) {
	var plains []string
	for _, t := range rh.Targets {
		if len(t.Headers) == 0 {
			plains = append(plains, t.Name)
			continue
		}
		withHeaders = append(withHeaders, t)
	}
	sort.SliceStable(withHeaders, func(i, j int) bool { return len(withHeaders[i].Headers) > len(withHeaders[j].Headers) })
	if len(plains) == 1 {
		plain = plains[0]
	}
	return withHeaders, plain
}

// virtualService is the DestinationRule and the VirtualService of namespace ns for
// the policies ps (sidecars and classic gateways).
func virtualService(ns string, ps []*v1alpha1.TrafficPolicy, o RouteOptions) (*networking.DestinationRule, *networking.VirtualService, error) {
	name := routeName(o.Host)
	dr := &networking.DestinationRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "DestinationRule"},
		ObjectMeta: routeMeta(name, ns, ps),
	}
	dr.Spec.Host = o.Host
	dr.Spec.ExportTo = o.ExportTo
	vs := &networking.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"},
		ObjectMeta: routeMeta(name, ns, ps),
	}
	vs.Spec.Hosts = o.Hosts
	if len(vs.Spec.Hosts) == 0 {
		vs.Spec.Hosts = []string{o.Host}
	}
	vs.Spec.ExportTo = o.ExportTo
	// The gateways each policy's routes bind to; VirtualService gateways are their union.
	bindTo := func(p *v1alpha1.TrafficPolicy) []string {
		if p.Attachment() == v1alpha1.AttachGateway {
			return o.Gateways
		}
		return []string{"mesh"}
	}
	union := map[string]bool{}
	for _, p := range ps {
		for _, g := range bindTo(p) {
			union[g] = true
		}
	}
	if !(len(union) == 1 && union["mesh"]) {
		vs.Spec.Gateways = sortedKeys(union)
	}
	// Sidecar and gateway policies in one VirtualService: each route names its gateways.
	mixed := false
	for _, p := range ps {
		mixed = mixed || p.Attachment() != ps[0].Attachment()
	}
	subsets := map[string]bool{}
	defaults := map[string]string{}  // gateway -> default subset ("" = the host), first policy's
	defaultOf := map[string]string{} // gateway -> policy that set it
	var hints, defs []*networkingapi.HTTPRoute
	for _, p := range ps {
		rh := p.Spec.RouteHints
		for _, t := range rh.Targets {
			if !subsets[t.Name] {
				subsets[t.Name] = true
				dr.Spec.Subsets = append(dr.Spec.Subsets, &networkingapi.Subset{Name: t.Name, Labels: map[string]string{o.SubsetLabel: t.Name}})
			}
		}
		var gws []string
		if mixed {
			gws = bindTo(p)
		}
		prefix := ""
		if len(ps) > 1 {
			prefix = p.Name + "."
		}
		withHeaders, plain := targetsByHeaders(rh)
		for _, t := range withHeaders {
			m := &networkingapi.HTTPMatchRequest{Headers: map[string]*networkingapi.StringMatch{}, Gateways: gws}
			for _, h := range sortedKeys(t.Headers) {
				m.Headers[strings.ToLower(h)] = &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Exact{Exact: t.Headers[h]}}
			}
			hints = append(hints, &networkingapi.HTTPRoute{
				Name:  prefix + t.Name,
				Match: []*networkingapi.HTTPMatchRequest{m},
				Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: o.Host, Subset: t.Name}}},
			})
		}
		fresh := false
		for _, g := range bindTo(p) {
			if q, ok := defaultOf[g]; ok {
				if defaults[g] != plain {
					return nil, nil, fmt.Errorf("%s: its default target %q differs from %q of %s, and both route %s's traffic to %s: give them one default", p, plain, defaults[g], q, g, o.Host)
				}
				continue
			}
			defaults[g], defaultOf[g], fresh = plain, p.Name, true
		}
		if fresh {
			def := &networkingapi.HTTPRoute{Name: prefix + "default", Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: o.Host, Subset: plain}}}}
			if mixed {
				def.Match = []*networkingapi.HTTPMatchRequest{{Gateways: gws}}
			}
			defs = append(defs, def)
		}
	}
	vs.Spec.Http = append(hints, defs...)
	return dr, vs, nil
}

// httpRoute is the HTTPRoute of a policy on Gateway API gateways or a waypoint.
func httpRoute(p *v1alpha1.TrafficPolicy, o RouteOptions) (*gwv1.HTTPRoute, error) {
	if o.Port <= 0 || o.Port > 65535 {
		return nil, fmt.Errorf("%s: runs on %ss, whose routes are HTTPRoutes: the destination service's port is required (RouteOptions.Port, meshplug render --port)", p, strings.ToLower(p.Attachment()))
	}
	svc, svcNS, ok := strings.Cut(o.Host, ".")
	svcNS, _, _ = strings.Cut(svcNS, ".")
	if !ok || svcNS == "" {
		return nil, fmt.Errorf("%s: HTTPRoutes name Services: the destination host must be <service>.<namespace>[.svc.cluster.local], got %q", p, o.Host)
	}
	hr := &gwv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute"},
		ObjectMeta: routeMeta(p.Name+"-routes", p.Namespace, []*v1alpha1.TrafficPolicy{p}),
	}
	if p.Attachment() == v1alpha1.AttachWaypoint {
		// The waypoint routes the requests for the Service: the Service is the parent.
		ns := gwv1.Namespace(svcNS)
		hr.Spec.ParentRefs = []gwv1.ParentReference{{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: gwv1.ObjectName(svc), Namespace: &ns}}
	} else {
		for _, r := range p.Spec.TargetRefs {
			hr.Spec.ParentRefs = append(hr.Spec.ParentRefs, gwv1.ParentReference{Group: ptr(gwv1.Group(r.Group)), Kind: ptr(gwv1.Kind(r.Kind)), Name: gwv1.ObjectName(r.Name)})
		}
		for _, h := range o.Hosts {
			hr.Spec.Hostnames = append(hr.Spec.Hostnames, gwv1.Hostname(h))
		}
	}
	backend := func(name string) []gwv1.HTTPBackendRef {
		ref := gwv1.HTTPBackendRef{}
		ref.Group, ref.Kind = ptr(gwv1.Group("")), ptr(gwv1.Kind("Service"))
		ref.Name = gwv1.ObjectName(name)
		ref.Port = ptr(o.Port)
		if svcNS != p.Namespace {
			ref.Namespace = ptr(gwv1.Namespace(svcNS))
		}
		return []gwv1.HTTPBackendRef{ref}
	}
	// Written with the defaults the API server applies (path prefix "/", backend group
	// "" and kind Service), so the stored object is the rendered one.
	withHeaders, plain := targetsByHeaders(p.Spec.RouteHints)
	exact := gwv1.HeaderMatchExact
	anyPath := func() *gwv1.HTTPPathMatch {
		return &gwv1.HTTPPathMatch{Type: ptr(gwv1.PathMatchPathPrefix), Value: ptr("/")}
	}
	for _, t := range withHeaders {
		m := gwv1.HTTPRouteMatch{Path: anyPath()}
		for _, h := range sortedKeys(t.Headers) {
			m.Headers = append(m.Headers, gwv1.HTTPHeaderMatch{Type: &exact, Name: gwv1.HTTPHeaderName(strings.ToLower(h)), Value: t.Headers[h]})
		}
		hr.Spec.Rules = append(hr.Spec.Rules, gwv1.HTTPRouteRule{
			Name:        ptr(gwv1.SectionName(t.Name)),
			Matches:     []gwv1.HTTPRouteMatch{m},
			BackendRefs: backend(svc + "-" + t.Name),
		})
	}
	def := svc
	if plain != "" {
		def = svc + "-" + plain
	}
	hr.Spec.Rules = append(hr.Spec.Rules, gwv1.HTTPRouteRule{Name: ptr(gwv1.SectionName("default")),
		Matches: []gwv1.HTTPRouteMatch{{Path: anyPath()}}, BackendRefs: backend(def)})
	return hr, nil
}

// referenceGrant lets HTTPRoutes of namespaces use the Services of host's namespace.
// It is written as v1beta1, the version Istio reads (and the only one Gateway API
// CRDs before v1.5 serve); newer CRDs serve it as v1 too.
func referenceGrant(host string, namespaces []string) *gwv1beta1.ReferenceGrant {
	g := &gwv1beta1.ReferenceGrant{
		TypeMeta: metav1.TypeMeta{APIVersion: "gateway.networking.k8s.io/v1beta1", Kind: "ReferenceGrant"},
		ObjectMeta: metav1.ObjectMeta{Name: routeName(host), Namespace: hostNamespace(host),
			Labels: map[string]string{LabelManagedBy: "meshplug", LabelFilter: "routehint"}},
	}
	for _, ns := range namespaces {
		g.Spec.From = append(g.Spec.From, gwv1.ReferenceGrantFrom{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: gwv1.Namespace(ns)})
	}
	g.Spec.To = []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service"}}
	return g
}

func ptr[T any](v T) *T { return &v }

package envoyfilters

import (
	"fmt"
	"sort"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	networking "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplug/meshplug/api/v1alpha1"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
)

// RouteOptions are the inputs of the route snippet that are not in the policy.
type RouteOptions struct {
	// Host is the destination service (FQDN, e.g. reviews.default.svc.cluster.local)
	// whose subsets the hints select. Required.
	Host string
	// Hosts are the VirtualService's hosts; default [Host].
	Hosts []string
	// Gateways are the VirtualService's gateways (e.g. istio-system/public); default
	// none (the mesh).
	Gateways []string
	// SubsetLabel is the pod label that tells subsets apart; each target's subset gets
	// SubsetLabel: <target name>, to be edited to the real values. Default "version".
	SubsetLabel string
}

// Routes renders the Istio routing that p's routeHints section feeds: a
// DestinationRule with one subset per target (named after the target, selected by
// SubsetLabel) and a VirtualService with one HTTP route per target that sets hint
// headers — matching all of them exactly, targets with more headers first — followed by
// a default route to the subset of the one target without headers (or to the host when
// there is not exactly one). These are snippets to review: the filter only sets
// headers; which pods form a subset is the user's decision.
//
// Reference: https://istio.io/latest/docs/reference/config/networking/virtual-service/
func Routes(p *v1alpha1.TrafficPolicy, o RouteOptions) (*networking.DestinationRule, *networking.VirtualService, error) {
	if _, err := sections(p); err != nil {
		return nil, nil, err
	}
	rh := p.Spec.RouteHints
	if rh == nil {
		return nil, nil, fmt.Errorf("%s: has no routeHints section", p)
	}
	if o.Host == "" {
		return nil, nil, fmt.Errorf("the destination host is required (RouteOptions.Host, meshplug render --host)")
	}
	if o.SubsetLabel == "" {
		o.SubsetLabel = "version"
	}
	if len(o.Hosts) == 0 {
		o.Hosts = []string{o.Host}
	}
	name := p.Name + "-routes"
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: map[string]string{
			LabelManagedBy: "meshplug", LabelPolicy: p.Name, LabelFilter: "routehint"}}
	}
	dr := &networking.DestinationRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "DestinationRule"},
		ObjectMeta: meta(),
	}
	dr.Spec.Host = o.Host
	targets := append([]routehintconfig.TargetSpec(nil), rh.Targets...)
	for _, t := range targets {
		dr.Spec.Subsets = append(dr.Spec.Subsets, &networkingapi.Subset{Name: t.Name, Labels: map[string]string{o.SubsetLabel: t.Name}})
	}
	sort.SliceStable(targets, func(i, j int) bool { return len(targets[i].Headers) > len(targets[j].Headers) })
	vs := &networking.VirtualService{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "VirtualService"},
		ObjectMeta: meta(),
	}
	vs.Spec.Hosts = o.Hosts
	vs.Spec.Gateways = o.Gateways
	var plain []string
	for _, t := range targets {
		if len(t.Headers) == 0 {
			plain = append(plain, t.Name)
			continue
		}
		m := &networkingapi.HTTPMatchRequest{Headers: map[string]*networkingapi.StringMatch{}}
		for _, h := range sortedKeys(t.Headers) {
			m.Headers[strings.ToLower(h)] = &networkingapi.StringMatch{MatchType: &networkingapi.StringMatch_Exact{Exact: t.Headers[h]}}
		}
		vs.Spec.Http = append(vs.Spec.Http, &networkingapi.HTTPRoute{
			Name:  t.Name,
			Match: []*networkingapi.HTTPMatchRequest{m},
			Route: []*networkingapi.HTTPRouteDestination{{Destination: &networkingapi.Destination{Host: o.Host, Subset: t.Name}}},
		})
	}
	def := &networkingapi.Destination{Host: o.Host}
	if len(plain) == 1 {
		def.Subset = plain[0]
	}
	vs.Spec.Http = append(vs.Spec.Http, &networkingapi.HTTPRoute{
		Name:  "default",
		Route: []*networkingapi.HTTPRouteDestination{{Destination: def}},
	})
	return dr, vs, nil
}

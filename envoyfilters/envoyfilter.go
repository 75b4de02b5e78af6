package envoyfilters

import (
	"fmt"
	"net/url"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networkingapi "istio.io/api/networking/v1alpha3"
	typeapi "istio.io/api/type/v1beta1"
	networking "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

// Types an EnvoyFilter's ECDS filter accepts, as istiod lists them for a WasmPlugin:
// the Wasm HTTP filter, and the RBAC HTTP filter Istio's agent sends instead when it
// cannot fetch or verify the module (allow-all for FAIL_OPEN, deny-all for
// FAIL_CLOSE). Without the RBAC type Envoy rejects that replacement and the listener
// waits on the extension config: fail-open would not happen.
const (
	WasmTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	RBACTypeURL = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
)

// AnnotationAnalyzeSuppress lists istioctl analyze message codes not to report for an
// object.
const AnnotationAnalyzeSuppress = "galley.istio.io/analyze-suppress"

// Environment variables of the Wasm VM that Istio's agent reads (and removes) before
// it hands the configuration to Envoy; istiod sets them for WasmPlugins.
const (
	envPullPolicy = "ISTIO_META_WASM_IMAGE_PULL_POLICY"
)

// EnvoyFilters renders one Istio EnvoyFilter (networking.istio.io/v1alpha3) per section
// of p, for meshes where WasmPlugin does not fit (older control planes, proxies that
// must see the exact Envoy configuration). Each has two patches: an EXTENSION_CONFIG
// holding the Wasm filter with its module as remote code (url and sha256; Istio's agent
// downloads it and hands Envoy a local file, as for WasmPlugins), and an HTTP_FILTER
// (placement) that takes its configuration from that extension config over ECDS, as
// istiod configures a WasmPlugin's filter. The patch context is GATEWAY when p
// attaches to gateways (Gateway targetRefs, a selector of gateway pods: see
// Policy.Attachment) and, on sidecars, SIDECAR_INBOUND or SIDECAR_OUTBOUND by the
// section's Mode; waypoints are refused: render WasmPlugins for them.
//
// Reference: https://istio.io/latest/docs/reference/config/networking/envoy-filter/
func EnvoyFilters(p *v1alpha1.TrafficPolicy, o Options) ([]*networking.EnvoyFilter, error) {
	secs, err := sections(p)
	if err != nil {
		return nil, err
	}
	attach := p.Attachment()
	if attach == v1alpha1.AttachWaypoint {
		return nil, fmt.Errorf("%s: the EnvoyFilter rendering supports sidecars and gateways, not waypoints (render WasmPlugins with --format istio)", p)
	}
	pull, err := pullPolicy(o)
	if err != nil {
		return nil, err
	}
	var out []*networking.EnvoyFilter
	for _, s := range secs {
		m, err := o.module(s.sec)
		if err != nil {
			return nil, err
		}
		ctx := networkingapi.EnvoyFilter_SIDECAR_INBOUND
		switch {
		case attach == v1alpha1.AttachGateway:
			ctx = networkingapi.EnvoyFilter_GATEWAY
		case s.sec.Mode == v1alpha1.ModeClient:
			ctx = networkingapi.EnvoyFilter_SIDECAR_OUTBOUND
		}
		u, err := url.Parse(m.URL)
		if err != nil {
			return nil, fmt.Errorf("module %q: %w", s.sec.Filter, err)
		}
		if u.Scheme == "" {
			return nil, fmt.Errorf("module %q: url %q has no scheme", s.sec.Filter, m.URL)
		}
		// As istiod renders a WasmPlugin's module: Istio's agent downloads it (and
		// hands Envoy a local file), so the cluster is a placeholder Envoy never uses.
		wasm, err := wasmFilter(s, &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
			HttpUri: &corev3.HttpUri{
				Uri:              m.URL,
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: "_"},
				Timeout:          durationpb.New(30e9),
			},
			Sha256: m.SHA256,
		}}}, o.Bundle == nil)
		if err != nil {
			return nil, err
		}
		wasm.Config.GetVmConfig().EnvironmentVariables = &wasmv3.EnvironmentVariables{KeyValues: map[string]string{envPullPolicy: pull}}
		typed, err := anypb.New(wasm)
		if err != nil {
			return nil, err
		}
		// The extension config's name is unique per policy on a proxy, as Istio names a
		// WasmPlugin's filter "<namespace>.<name>".
		meta := objectMeta(p, s.sec)
		name := meta.Namespace + "." + meta.Name
		ext, err := toStruct(&corev3.TypedExtensionConfig{Name: name, TypedConfig: typed})
		if err != nil {
			return nil, err
		}
		filter, err := toStruct(&hcmv3.HttpFilter{
			Name: name,
			ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
				ConfigSource: &corev3.ConfigSource{
					ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
					ResourceApiVersion:    corev3.ApiVersion_V3,
					// As istiod: the listener waits for the filter's configuration
					// rather than serving without it (auth must not be skipped).
					InitialFetchTimeout: durationpb.New(0),
				},
				TypeUrls: []string{WasmTypeURL, RBACTypeURL},
			}},
		})
		if err != nil {
			return nil, err
		}
		e := &networking.EnvoyFilter{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1alpha3", Kind: "EnvoyFilter"},
			ObjectMeta: meta,
		}
		// Istio's own EnvoyFilter validation warns on every EnvoyFilter that the API
		// exposes implementation details (istioctl analyze IST0133); the tests of
		// istiocheck/ check it is the only warning ours get, and suppress it.
		e.Annotations = map[string]string{AnnotationAnalyzeSuppress: "IST0133"}
		op, priority := placement(s)
		e.Spec = networkingapi.EnvoyFilter{
			Priority: priority,
			ConfigPatches: []*networkingapi.EnvoyFilter_EnvoyConfigObjectPatch{
				{
					ApplyTo: networkingapi.EnvoyFilter_EXTENSION_CONFIG,
					Patch:   &networkingapi.EnvoyFilter_Patch{Operation: networkingapi.EnvoyFilter_Patch_ADD, Value: ext},
				},
				{
					ApplyTo: networkingapi.EnvoyFilter_HTTP_FILTER,
					Match: &networkingapi.EnvoyFilter_EnvoyConfigObjectMatch{
						Context: ctx,
						ObjectTypes: &networkingapi.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: &networkingapi.EnvoyFilter_ListenerMatch{
							FilterChain: &networkingapi.EnvoyFilter_ListenerMatch_FilterChainMatch{
								Filter: &networkingapi.EnvoyFilter_ListenerMatch_FilterMatch{
									Name:      "envoy.filters.network.http_connection_manager",
									SubFilter: &networkingapi.EnvoyFilter_ListenerMatch_SubFilterMatch{Name: "envoy.filters.http.router"},
								},
							},
						}},
					},
					Patch: &networkingapi.EnvoyFilter_Patch{Operation: op, Value: filter},
				},
			},
		}
		if sel := p.Spec.Selector; sel != nil {
			e.Spec.WorkloadSelector = &networkingapi.WorkloadSelector{Labels: sel.MatchLabels}
		}
		for _, r := range p.Spec.TargetRefs {
			e.Spec.TargetRefs = append(e.Spec.TargetRefs, &typeapi.PolicyTargetReference{Group: r.Group, Kind: r.Kind, Name: r.Name})
		}
		out = append(out, e)
	}
	return out, nil
}

// toStruct is m in protobuf JSON as a Struct, the form EnvoyFilter patches take.
func toStruct(m proto.Message) (*structpb.Struct, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	return s, protojson.Unmarshal(b, s)
}

// placement is where a section's HTTP filter goes in the chain and the priority of its
// EnvoyFilter (the order Istio applies the EnvoyFilters of a proxy in: lower first;
// never 0, so that no relative patch waits on creation order, istioctl analyze
// IST0151):
//   - AUTHN and AUTHZ sections (auth, ratelimit): INSERT_FIRST, the top of the chain,
//     before Istio's authentication and AuthorizationPolicy filters (CUSTOM ext_authz
//     and RBAC), which istiod puts first. Applied in reverse chain order, so auth
//     ends up first.
//   - the others (routehint, fault): INSERT_BEFORE the router, in chain order: after
//     Istio's own filters (RBAC, fault, CORS, stats), the one anchor every HTTP chain
//     has.
func placement(s present) (networkingapi.EnvoyFilter_Patch_Operation, int32) {
	n := int32(len(v1alpha1.Sections))
	switch s.sec.Phase {
	case v1alpha1.PhaseAuthn, v1alpha1.PhaseAuthz:
		return networkingapi.EnvoyFilter_Patch_INSERT_FIRST, n - int32(s.index)
	}
	return networkingapi.EnvoyFilter_Patch_INSERT_BEFORE, n + 1 + int32(s.index)
}

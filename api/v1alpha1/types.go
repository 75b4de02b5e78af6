package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	authconfig "github.com/meshplug/meshplug/filters/auth/config"
	faultconfig "github.com/meshplug/meshplug/filters/fault/config"
	ratelimitconfig "github.com/meshplug/meshplug/filters/ratelimit/config"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
)

// Group, Version and Kind of the policy.
const (
	Group   = "meshplug.io"
	Version = "v1alpha1"
	Kind    = "TrafficPolicy"
)

// GroupVersion is meshplug.io/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// AddToScheme registers TrafficPolicy and TrafficPolicyList with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &TrafficPolicy{}, &TrafficPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// TrafficPolicy runs meshplug's filters on the workloads it selects: each section
// present (auth, ...) becomes one Wasm filter, rendered as an Istio WasmPlugin (or an
// EnvoyFilter, or a plain envoy.yaml) with the section as the filter's configuration.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=mptp,categories=meshplug
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired behaviour.
	Spec TrafficPolicySpec `json:"spec"`
	// Status is set by the controller.
	// +optional
	Status TrafficPolicyStatus `json:"status,omitempty"`
}

// TrafficPolicySpec selects workloads and configures the filters that run on them.
// Exactly one of selector and targetRefs is required, and at least one section.
//
// +kubebuilder:validation:XValidation:rule="has(self.selector) != has(self.targetRefs)",message="exactly one of selector and targetRefs is required"
// +kubebuilder:validation:XValidation:rule="has(self.auth) || has(self.rateLimit) || has(self.routeHints) || has(self.faults)",message="at least one section (auth, rateLimit, routeHints, faults) is required"
// +kubebuilder:validation:XValidation:rule="!has(self.attachTo) || self.attachTo != 'Sidecar' || has(self.selector)",message="attachTo Sidecar needs a selector"
// +kubebuilder:validation:XValidation:rule="!has(self.attachTo) || self.attachTo != 'Waypoint' || has(self.targetRefs)",message="attachTo Waypoint needs targetRefs"
// +kubebuilder:validation:XValidation:rule="!has(self.attachTo) || self.attachTo != 'Gateway' || !has(self.targetRefs) || self.targetRefs.all(r, r.kind == 'Gateway')",message="attachTo Gateway cannot have Service targetRefs"
type TrafficPolicySpec struct {
	// Selector picks the workloads (pods) of the policy's namespace by their labels, as
	// Istio's WorkloadSelector does. In the root namespace (istio-system) it applies to
	// every namespace.
	// +optional
	Selector *WorkloadSelector `json:"selector,omitempty"`
	// TargetRefs picks Gateway API Gateways or Services of the policy's namespace
	// (Istio's targetRefs): the filters run on the gateway's proxies, or on the
	// waypoint of the service.
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	TargetRefs []PolicyTargetReference `json:"targetRefs,omitempty"`
	// AttachTo says which proxies run the filters, and so which of their traffic the
	// filters see: "Sidecar" (the sidecars of the selected workloads: auth, rateLimit
	// and faults on the requests the workloads receive, routeHints on the calls they
	// make), "Gateway" (the gateway pods a selector picks, e.g. istio:
	// ingressgateway, or the proxies of Gateway targetRefs: every request through the
	// gateway) or "Waypoint" (the waypoint of Service targetRefs, or a waypoint named
	// as a Gateway targetRef: every request to the service through it). Default:
	// inferred from the target (Policy.Attachment): Gateway for a selector with a
	// gateway label (istio: ingressgateway or egressgateway, app:
	// istio-ingressgateway or istio-egressgateway, gateway.networking.k8s.io/gateway-name,
	// istio.io/gateway-name) and for Gateway targetRefs, Waypoint for Service
	// targetRefs, Sidecar for other selectors.
	// +optional
	// +kubebuilder:validation:Enum=Sidecar;Gateway;Waypoint
	AttachTo string `json:"attachTo,omitempty"`
	// Auth configures the auth filter (JWT, API keys, basic auth, external
	// authorization, identity headers); see filters/auth/README.md for the reference.
	// +optional
	Auth *authconfig.Spec `json:"auth,omitempty"`
	// RateLimit configures the ratelimit filter (per-key token buckets); see
	// filters/ratelimit/README.md for the reference.
	// +optional
	RateLimit *ratelimitconfig.Spec `json:"rateLimit,omitempty"`
	// RouteHints configures the routehint filter (hint headers that VirtualService
	// routes match); see filters/routehint/README.md for the reference. With a
	// selector it runs on the selected workloads' outbound calls, where routes are
	// picked.
	// +optional
	RouteHints *routehintconfig.Spec `json:"routeHints,omitempty"`
	// Faults configures the fault filter (delays and aborts); see
	// filters/fault/README.md for the reference.
	// +optional
	Faults *faultconfig.Spec `json:"faults,omitempty"`
}

// WorkloadSelector selects workloads by labels.
type WorkloadSelector struct {
	// MatchLabels are the labels a workload must all have.
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=256
	MatchLabels map[string]string `json:"matchLabels"`
}

// PolicyTargetReference names a Gateway API Gateway or a Service in the policy's
// namespace (Gateway API's LocalPolicyTargetReference).
//
// +kubebuilder:validation:XValidation:rule="(self.group == 'gateway.networking.k8s.io' && self.kind == 'Gateway') || (size(self.group) == 0 && self.kind == 'Service')",message="targetRefs may name a Gateway (group gateway.networking.k8s.io) or a Service (group \"\")"
type PolicyTargetReference struct {
	// Group is the API group of the target: "gateway.networking.k8s.io" or "" (core).
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group"`
	// Kind is the kind of the target: Gateway or Service.
	// +kubebuilder:validation:Enum=Gateway;Service
	Kind string `json:"kind"`
	// Name is the target's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// TrafficPolicyStatus is the controller's report.
type TrafficPolicyStatus struct {
	// Conditions set by the controller: Ready (every rendered object is applied as
	// rendered), InvalidSpec (the spec fails validation; the message names the field
	// path) and Conflict (a rendered object exists without this policy as its
	// controller owner and is left untouched, or another policy of the namespace
	// selects the same workloads with the same section: the oldest policy runs it;
	// the message names the objects and policies).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LastDrift is the last time the controller found one of the policy's objects
	// changed by another writer (kubectl edit, another field manager) and put it back
	// to the rendered spec.
	// +optional
	LastDrift *DriftReport `json:"lastDrift,omitempty"`
}

// DriftReport describes one drift the controller reverted.
type DriftReport struct {
	// Time the controller reverted it.
	Time metav1.Time `json:"time"`
	// Message names the object, the paths that differed
	// (`spec.pluginConfig.default_rule (added)`) and the other field managers.
	// +kubebuilder:validation:MaxLength=32768
	Message string `json:"message"`
}

// TrafficPolicyList is a list of TrafficPolicy.
//
// +kubebuilder:object:root=true
type TrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficPolicy `json:"items"`
}

// Package v1alpha1 is the meshplug.io/v1alpha1 API: TrafficPolicy, the one policy a
// platform team writes to run meshplug's filters on a set of workloads. Each section
// (auth, ...) is the filter's own wire type, so the CRD's OpenAPI schema, the
// controller, the CLI and the filter decode one definition.
//
// The CRD in deploy/crds/ and the deepcopy functions are generated from these types by
// controller-gen (`make generate`); a test fails when the committed CRD is stale.
//
// +kubebuilder:object:generate=true
// +groupName=meshplug.io
package v1alpha1

package envoyfilters

import "github.com/meshplug/meshplug/api/v1alpha1"

// The bundle: meshplug.wasm holds every filter, each selected by its root id (the
// section's filter name, which every rendering sets as root_id / Istio's pluginName).
// Plugins with the same VM key (vm_id, VM configuration and code) share one VM per
// worker in Envoy: one Go runtime per worker for the whole chain instead of one per
// filter. Each plugin keeps its own failure policy; a trap in the shared VM fails
// them all, each by its own policy (auth closes). See filters/meshplug.
const (
	// BundleModule is the bundle's file name, beside the per-filter <filter>.wasm.
	BundleModule = "meshplug.wasm"
	// BundleVMID is the vm_id of every plugin running from the bundle in the Envoy
	// renderings (EnvoyFilter, envoy.yaml), so that they share one VM. Istio's
	// WasmPlugin sets no vm_id: plugins with the same module (URL and digest) share
	// the VM there.
	BundleVMID = "meshplug"
)

// moduleFile is the file of section sec's module: the bundle's, or the filter's own.
func moduleFile(sec v1alpha1.Section, perFilter bool) string {
	if perFilter {
		return sec.Filter + ".wasm"
	}
	return BundleModule
}

// vmID is the vm_id of section sec's plugin: the bundle's shared VM, or one VM per
// filter (shared by every plugin of that filter on the proxy).
func vmID(sec v1alpha1.Section, perFilter bool) string {
	if perFilter {
		return filterName(sec)
	}
	return BundleVMID
}

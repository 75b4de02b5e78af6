// Command meshplug is the bundle meshplug.wasm: the four filters (auth, ratelimit,
// routehint, fault) in one module, so that a proxy running them all starts one Go
// runtime per worker instead of four. Each plugin selects its filter by its root id
// (Envoy's root_id, Istio's WasmPlugin pluginName): "auth", "ratelimit", "routehint"
// or "fault". Plugins with the same VM key (vm_id, VM configuration and this module)
// share one VM per worker, and each keeps its own configuration, buckets and metrics;
// an unknown root id is refused at configuration time.
//
// Failure policies stay per filter (auth fails closed, the others open, see each
// glue's Policy): a panic fails only the stream of the filter that panicked. A trap
// (a Go runtime fatal error, which no recover catches) takes down the VM of every
// plugin that shares it: the host then applies each plugin's own failure policy, so
// auth closes and the chain answers 503 until the VM is reloaded. See README.md.
//
// Filter authors bundle their own filters the same way: register each glue under its
// root id from an init function.
//
// Memory: the bundle runs the Go garbage collector at GOGC=25 (GCPercent) instead of
// Go's default 100, which keeps each worker's linear memory under 8 MiB (see README.md
// and docs/benchmarks.md: the default lets the heap reach 4 MiB of mostly garbage
// before the first collection, and linear memory never shrinks). A GOGC in the VM's
// environment (Envoy's vm_config.environment_variables) takes precedence.
package main

import (
	auth "github.com/meshplug/meshplug/filters/auth/glue"
	fault "github.com/meshplug/meshplug/filters/fault/glue"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
	ratelimit "github.com/meshplug/meshplug/filters/ratelimit/glue"
	routehint "github.com/meshplug/meshplug/filters/routehint/glue"
)

// GCPercent is the bundle's GOGC: the heap may grow by 25% of the live data (with
// Go's minimum heap scaled to 1 MiB) before a collection.
const GCPercent = 25

func init() {
	pw.SetDefaultGCPercent(GCPercent)
	auth.Register(auth.RootID)
	ratelimit.Register(ratelimit.RootID)
	routehint.Register(routehint.RootID)
	fault.Register(fault.RootID)
}

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

package proxywasm

import (
	"os"
	"runtime/debug"
)

// SetDefaultGCPercent sets the Go garbage collector's GOGC to percent
// (runtime/debug.SetGCPercent) unless the VM's environment sets GOGC (Envoy's
// vm_config.environment_variables, Istio's WasmPlugin vmConfig.env), which then stays
// in force. Call it from the module's init. Go's default, 100, lets the heap reach at
// least 4 MiB before the first collection whatever the live data; a VM's linear
// memory never shrinks, so that peak is what every worker keeps. meshplug.wasm uses
// 25 (filters/meshplug, docs/benchmarks.md).
func SetDefaultGCPercent(percent int) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(percent)
	}
}

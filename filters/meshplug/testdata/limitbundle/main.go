// Command limitbundle is meshplug.wasm with a soft memory limit of 4 MiB on the Go
// runtime (runtime/debug.SetMemoryLimit): the measurement of what a limit saves in
// linear memory and costs per request (BenchmarkChain's "bundled-limit4" in
// docs/benchmarks.md). Linear memory never shrinks, so the peak heap is what a worker
// keeps.
package main

import (
	"runtime/debug"

	auth "github.com/meshplug/meshplug/filters/auth/glue"
	fault "github.com/meshplug/meshplug/filters/fault/glue"
	ratelimit "github.com/meshplug/meshplug/filters/ratelimit/glue"
	routehint "github.com/meshplug/meshplug/filters/routehint/glue"
)

func init() {
	debug.SetMemoryLimit(4 << 20)
	auth.Register(auth.RootID)
	ratelimit.Register(ratelimit.RootID)
	routehint.Register(routehint.RootID)
	fault.Register(fault.RootID)
}

func main() {}

// Command defaultgc is meshplug.wasm without its GC setting (Go's default GOGC=100):
// what the setting saves in linear memory and costs per request is measured against
// it (BenchmarkChain's "bundled-defaultgc" and BenchmarkBundlePaired in
// docs/benchmarks.md).
package main

import (
	auth "github.com/meshplug/meshplug/filters/auth/glue"
	fault "github.com/meshplug/meshplug/filters/fault/glue"
	ratelimit "github.com/meshplug/meshplug/filters/ratelimit/glue"
	routehint "github.com/meshplug/meshplug/filters/routehint/glue"
)

func init() {
	auth.Register(auth.RootID)
	ratelimit.Register(ratelimit.RootID)
	routehint.Register(routehint.RootID)
	fault.Register(fault.RootID)
}

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

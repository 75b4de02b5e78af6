// Command fault is meshplug's fault injection filter (fault.wasm): delays and aborts
// for a chosen share of chosen requests, shaped after Envoy's HTTP fault filter
// (envoy.extensions.filters.http.fault.v3.HTTPFault), with header-controlled faults
// and a max_active_faults cap that holds exactly across all worker VMs.
//
// Layout: config/ parses and validates the plugin configuration (imported natively by
// the controller too), engine/ decides each request as pure functions and holds the
// delay queue and the shared active-fault counter; the files here are the thin
// proxy-wasm glue (wasip1 only) and the tests that drive the compiled fault.wasm
// through testenv.
//
// Reference: README.md beside this file.
package main

// Metric names (Envoy's fault filter stats under meshplug.fault.).
const (
	MetricDelaysInjected = "meshplug.fault.delays_injected"
	MetricAbortsInjected = "meshplug.fault.aborts_injected"
	MetricFaultsOverflow = "meshplug.fault.faults_overflow"
	MetricActiveFaults   = "meshplug.fault.active_faults"
)

// CounterKeyPrefix + the plugin name is the shared-data key of the active-fault
// counter.
const CounterKeyPrefix = "meshplug.fault.active_faults."

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

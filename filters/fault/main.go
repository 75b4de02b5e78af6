// Command fault is meshplug's fault injection filter (fault.wasm): delays and aborts
// for a chosen share of chosen requests, shaped after Envoy's HTTP fault filter
// (envoy.extensions.filters.http.fault.v3.HTTPFault), with header-controlled faults
// and a max_active_faults cap that holds exactly across all worker VMs.
//
// Layout: config/ parses and validates the plugin configuration (imported natively by
// the controller too), engine/ decides each request as pure functions and holds the
// delay queue and the shared active-fault counter; glue/ is the thin proxy-wasm glue
// (importable: the bundle meshplug.wasm in filters/meshplug registers it under its root
// id too); the files here register it as this module's only filter and hold the tests
// that drive the compiled fault.wasm through testenv.
//
// Reference: README.md beside this file.
package main

import "github.com/meshplug/meshplug/filters/fault/glue"

// Metric names and the shared-data key prefix, kept here for the tests (glue/ owns
// them).
const (
	MetricDelaysInjected = glue.MetricDelaysInjected
	MetricAbortsInjected = glue.MetricAbortsInjected
	MetricFaultsOverflow = glue.MetricFaultsOverflow
	MetricActiveFaults   = glue.MetricActiveFaults
	CounterKeyPrefix     = glue.CounterKeyPrefix
)

// fault.wasm holds one filter: it serves plugins of any root id.
func init() { glue.Register("") }

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

// Command routehint is meshplug's routing-hint filter (routehint.wasm): it removes the
// hint headers a client sent, then tags each request with the hint headers of the
// target its rules pick (conditions on headers, cookies, query, path and method, or a
// sticky weighted split), so that an Istio VirtualService (or an Envoy route) matching
// those headers sends it to the chosen DestinationRule subset.
//
// Layout: config/ parses and validates the plugin configuration (imported natively by
// the controller too), engine/ reads requests and decides as pure functions;
// glue/ is the thin proxy-wasm glue (importable: the bundle meshplug.wasm in
// filters/meshplug registers it under its root id too); the files here register it as
// this module's only filter and hold the tests that drive the compiled routehint.wasm
// through testenv.
//
// Reference: README.md beside this file.
package main

import "github.com/meshplug/meshplug/filters/routehint/glue"

// routehint.wasm holds one filter: it serves plugins of any root id.
func init() { glue.Register("") }

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

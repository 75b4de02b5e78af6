// Command ratelimit is meshplug's rate limiting filter (ratelimit.wasm): token buckets
// per key (a header such as auth's consumer header, a cookie, a query parameter, the
// client address, the path, the method, or a composition), kept in proxy-wasm shared
// data so that all worker VMs of a proxy share one bucket per key, exactly; or, in the
// global mode, counted for every proxy by Envoy's rate limit service
// (envoyproxy/ratelimit), called with a gRPC callout.
//
// Layout: config/ parses and validates the plugin configuration (imported natively by
// the controller too), engine/ reads requests and decides as pure functions, bucket/
// keeps the buckets in shared data with compare-and-swap, rls/ encodes the rate limit
// service's messages; glue/ is the thin proxy-wasm glue (importable: the bundle
// meshplug.wasm in filters/meshplug registers it under its root id too); the files here
// register it as this module's only filter and hold the tests that drive the compiled
// ratelimit.wasm through testenv.
//
// Reference: README.md beside this file.
package main

import "github.com/meshplug/meshplug/filters/ratelimit/glue"

// ratelimit.wasm holds one filter: it serves plugins of any root id.
func init() { glue.Register("") }

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

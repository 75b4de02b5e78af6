// Command auth is meshplug's authentication filter (auth.wasm): JWT (inline or remote
// JWKS), API keys, HTTP Basic and external authorization, selected per route, with a
// verified-token cache and a spoof-proof identity hand-off in request headers.
//
// Layout: config/ parses and validates the plugin configuration (imported natively by
// the controller too), jwt/ verifies tokens and parses JWKS, engine/ decides each
// request as a pure function; glue/ is the thin proxy-wasm glue (importable: the bundle
// meshplug.wasm in filters/meshplug registers it under its root id too); the files here
// register it as this module's only filter and hold the tests that drive the compiled
// auth.wasm through testenv.
//
// Reference: README.md beside this file.
package main

import "github.com/meshplug/meshplug/filters/auth/glue"

// auth.wasm holds one filter: it serves plugins of any root id.
func init() { glue.Register("") }

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

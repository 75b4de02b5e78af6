// Command auth is meshplug's authentication filter (auth.wasm): JWT (inline or remote
// JWKS), API keys, HTTP Basic and external authorization, selected per route, with a
// verified-token cache and a spoof-proof identity hand-off in request headers.
//
// Layout: config/ parses and validates the plugin configuration (imported natively by
// the controller too), jwt/ verifies tokens and parses JWKS, engine/ decides each
// request as a pure function; the files here are the thin proxy-wasm glue (wasip1
// only) and the tests that drive the compiled auth.wasm through testenv.
//
// Reference: README.md beside this file.
package main

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

// Command guest is the conformance test guest: a proxy-wasm module built with the
// official Go toolchain on meshplug's guest binding, which performs the host call named
// by the request header x-op and reports what the host answered. The conformance tests
// in the parent folder build it, load it in testenv and check every answer against
// Envoy's semantics.
//
// Results are sent back as a local reply with status 200 and a JSON object body (op
// "report" style) unless the op is about the pass-through path, in which case the
// request continues and results travel in request headers (x-result-*) to the upstream.
package main

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

// Command guest is the benchmark guest: the smallest proxy-wasm filters that exercise
// one host path each, chosen by the plugin configuration at configure time so that the
// per-request path holds nothing else.
//
//	"noop"    — every callback continues (the floor a filter cannot go under)
//	"headers" — reads 3 request headers and adds 1
//	"cas"     — increments a shared-data counter (named by the x-key request header,
//	            default "counter") with a CAS loop that also creates it race-free
package main

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

// Package proxywasm is meshplug's guest binding for the proxy-wasm ABI v0.2.1, for
// filters compiled by the official Go toolchain (GOOS=wasip1 GOARCH=wasm
// -buildmode=c-shared, //go:wasmimport and //go:wasmexport).
//
// A filter registers a VMContext from an init function with SetVMContext; the host
// then drives its plugin and HTTP contexts through the exported proxy_on_* callbacks,
// and the filter calls back into the host through the functions of this package:
// header maps (RequestHeaders, ResponseHeaders, ...), buffers (RequestBody,
// PluginConfiguration, ...), properties, local responses, shared data and queues,
// metrics, timers, HTTP and gRPC callouts.
//
// Caveats: every export recovers panics, logs them at critical level with the stack,
// and applies the FailurePolicy (see SetFailurePolicy) — a trapped Go VM would be left
// broken. Only host calls that Envoy's proxy-wasm host (proxy-wasm-cpp-host) implements
// are imported. The API is usable only in a wasip1 build; natively the package holds
// just the types, so that pure code may refer to them.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
package proxywasm

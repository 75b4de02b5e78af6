// Package proxywasm is meshplug's guest binding for the proxy-wasm ABI v0.2.1
// (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1), for filters
// compiled by the official Go toolchain (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared,
// //go:wasmimport and //go:wasmexport).
//
// A filter registers a VMContext from an init function with SetVMContext (or, without
// VM or plugin state, a constructor of HTTP contexts with SetHttpContext); the host
// then drives its plugin and HTTP contexts through the exported proxy_on_* callbacks,
// and the filter calls back into the host through the functions of this package:
// header maps (RequestHeaders, ResponseHeaders, ...), buffers (RequestBody,
// PluginConfiguration, ...), properties, local replies (SendLocalReply,
// SendHttpResponse), shared data and queues, metrics, timers, HTTP and gRPC callouts.
//
// The whole API compiles on every GOOS, so filter code lives in ordinary files (no
// build tags) and go doc, gopls, go vet and native tests of pure code work. Only a
// GOOS=wasip1 module loaded by a proxy-wasm host (Envoy, or testenv in tests) reaches a
// host: natively every host call returns ErrNotInHost, and the few that cannot return
// an error (Log and its variants, Now, HeaderMap.Get) panic with it.
//
// Errors of host calls are abi.Status values (errors.Is(err, abi.StatusNotFound)),
// or ErrNotInHost. An absent header is not an error: HeaderMap.Get returns ok == false,
// as testenv.Headers.Get does in tests.
//
// Caveats: every export recovers panics, logs them at critical level with the stack,
// and applies the FailurePolicy (see SetFailurePolicy) — a trapped Go VM would be left
// broken. A module that never called SetVMContext logs a critical line when the host
// starts it. Only host calls that Envoy's proxy-wasm host (proxy-wasm-cpp-host)
// implements are imported.
package proxywasm

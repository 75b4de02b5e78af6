// Command trapbundle is a test bundle in the shape of meshplug.wasm: auth's glue under
// root id "auth" beside a fail-open filter "trap" whose streams trap the VM when the
// request carries x-trap: a load past the end of linear memory, which every Wasm engine
// aborts ("out of bounds memory access") and no recover catches. It shows what a trap in
// one filter does to the others sharing its VM. (Not os.Exit: proxy-wasm-cpp-host's
// proc_exit only logs and returns, and the binding then recovers the panic that
// follows.) The same filter is also registered as "strict", failing closed; both panic
// on x-panic, and each root's own policy applies.
package main

import (
	"unsafe"

	auth "github.com/meshplug/meshplug/filters/auth/glue"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func init() {
	auth.Register(auth.RootID)
	pw.Register("trap", trapVM{}, pw.FailOpen)
	pw.Register("strict", trapVM{}, pw.FailClosed)
}

type trapVM struct{ pw.DefaultVMContext }

func (trapVM) NewPluginContext(uint32) pw.PluginContext { return trapPlugin{} }

type trapPlugin struct{ pw.DefaultPluginContext }

func (trapPlugin) NewHttpContext(uint32) pw.HttpContext { return trapStream{} }

type trapStream struct{ pw.DefaultHttpContext }

func (trapStream) OnHttpRequestHeaders(int, bool) pw.Action {
	if _, ok := pw.RequestHeaders.Get("x-panic"); ok {
		panic("panicked on purpose")
	}
	if _, ok := pw.RequestHeaders.Get("x-trap"); ok {
		sink = *(*byte)(unsafe.Add(unsafe.Pointer(&sink), outOfBounds-uintptr(unsafe.Pointer(&sink))))
	}
	return pw.Continue
}

// sink keeps the trapping load; outOfBounds is an address past the end of the module's
// linear memory (a few MiB; wasm32 addresses wrap at 4 GiB).
var (
	sink        byte
	outOfBounds uintptr = 0xFFFF_FFF0
)

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

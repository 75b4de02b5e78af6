// Command trapbundle is a test bundle in the shape of meshplug.wasm: auth's glue under
// root id "auth" beside a fail-open filter "trap" whose streams end the Go runtime
// (proc_exit, as a Go fatal error does: no recover catches it) when the request
// carries x-trap. It shows what a trap in one filter does to the others sharing its VM.
package main

import (
	"os"

	auth "github.com/meshplug/meshplug/filters/auth/glue"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func init() {
	auth.Register(auth.RootID)
	pw.Register("trap", trapVM{}, pw.FailOpen)
}

type trapVM struct{ pw.DefaultVMContext }

func (trapVM) NewPluginContext(uint32) pw.PluginContext { return trapPlugin{} }

type trapPlugin struct{ pw.DefaultPluginContext }

func (trapPlugin) NewHttpContext(uint32) pw.HttpContext { return trapStream{} }

type trapStream struct{ pw.DefaultHttpContext }

func (trapStream) OnHttpRequestHeaders(int, bool) pw.Action {
	if _, ok := pw.RequestHeaders.Get("x-trap"); ok {
		os.Exit(2)
	}
	return pw.Continue
}

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

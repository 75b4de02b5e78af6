// Command headerrewrite is an example filter: it drops a header only the mesh may set,
// adds one for the upstream and tags the response.
package main

import pw "github.com/meshplug/meshplug/filters/proxywasm"

func main() {} // never runs: a c-shared module starts from init

func init() {
	pw.SetHttpContext(func(uint32) pw.HttpContext { return stream{} })
}

type stream struct{ pw.DefaultHttpContext }

func (stream) OnHttpRequestHeaders(int, bool) pw.Action {
	pw.RequestHeaders.Remove("x-internal-user") // every copy the client sent
	pw.RequestHeaders.Replace("x-hello", "world")
	return pw.Continue
}

func (stream) OnHttpResponseHeaders(int, bool) pw.Action {
	pw.ResponseHeaders.Replace("x-filtered-by", "headerrewrite")
	return pw.Continue
}

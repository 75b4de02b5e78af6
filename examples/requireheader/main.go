// Command requireheader is an example filter: a request without an x-tenant header
// gets a 400 local reply with a small JSON body (a gRPC request gets grpc-status 13)
// and never reaches the upstream.
package main

import pw "github.com/meshplug/meshplug/filters/proxywasm"

func main() {} // never runs: a c-shared module starts from init

func init() {
	pw.SetHttpContext(func(uint32) pw.HttpContext { return stream{} })
}

type stream struct{ pw.DefaultHttpContext }

func (stream) OnHttpRequestHeaders(int, bool) pw.Action {
	if _, ok := pw.RequestHeaders.Get("x-tenant"); ok {
		return pw.Continue
	}
	err := pw.SendLocalReply(400, `{"error":"missing_header","header":"x-tenant"}`,
		pw.Pair{Key: "content-type", Value: "application/json"})
	if err != nil {
		pw.LogErrorf("requireheader: sending the reply: %v", err)
		return pw.Continue
	}
	return pw.Pause
}

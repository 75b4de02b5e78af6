//go:build wasip1

package proxywasm

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/meshplug/meshplug/filters/abi"
)

// The proxy_on_* exports: the host's calls into the guest. Each one records the
// context it runs for, dispatches to the filter's context, and recovers panics.

var (
	roots   table[*rootState]
	streams table[*streamState]
)

type rootState struct {
	ctx PluginContext
	vm  VMContext
	// policy is the failure policy of a filter added with Register; registered is
	// false for the default filter, whose policy is SetFailurePolicy's at the time of
	// the failure (a filter may set it from OnPluginStart).
	policy     FailurePolicy
	registered bool
	// refused names why no filter serves this root id (proxy_on_configure then
	// fails); empty when one does.
	refused string
}

type streamState struct {
	ctx    HttpContext
	rootID uint32
	// ended is set once a local reply was sent or the stream failed, so the panic
	// path does not send a second reply.
	ended bool
}

// streamEnded records that stream id got a local reply.
func streamEnded(id uint32) {
	if s, ok := streams.get(id); ok {
		s.ended = true
	}
}

// freeStreams recycles streamStates: one allocation per stream is measurable in a Go
// wasm guest.
var freeStreams freeList

type freeList struct{ free []*streamState }

func (f *freeList) take() *streamState {
	if n := len(f.free); n > 0 {
		s := f.free[n-1]
		f.free = f.free[:n-1]
		return s
	}
	return new(streamState)
}

func (f *freeList) give(s *streamState) { f.free = append(f.free, s) }

// dropCallouts forgets the pending callouts of a context that ended.
func dropCallouts(contextID uint32) {
	if len(httpCalls) == 0 && len(grpcCalls) == 0 {
		return
	}
	for t, c := range httpCalls {
		if c.contextID == contextID {
			delete(httpCalls, t)
		}
	}
	for t, c := range grpcCalls {
		if c.contextID == contextID {
			delete(grpcCalls, t)
		}
	}
}

// registeredVM returns the module's default VMContext. Without one it says so at
// critical level (once per VM, when the host creates the first root context) and uses
// DefaultVMContext: the module loads but passes everything through untouched.
func registeredVM() VMContext {
	if vmContext == nil {
		LogCritical("proxywasm: no VMContext registered: call proxywasm.SetVMContext (or Register) from an init function of the filter's main package (main never runs in a c-shared module); this module does nothing")
		vmContext = DefaultVMContext{}
	}
	return vmContext
}

// newRoot creates the root context contextID for the filter its root id selects: the
// Register-ed filter of that id, else the default (SetVMContext). The root id is read
// only when the module registered filters by id (a one-filter module serves any).
func newRoot(contextID uint32) *rootState {
	if len(rootRegistry) == 0 {
		vm := registeredVM()
		return &rootState{ctx: vm.NewPluginContext(contextID), vm: vm}
	}
	id, err := GetPropertyString("plugin_root_id")
	if err != nil {
		LogCriticalf("proxywasm: reading the plugin_root_id property: %v", err)
	}
	if reg, ok := rootRegistry[id]; ok {
		return &rootState{ctx: reg.VM.NewPluginContext(contextID), vm: reg.VM, policy: reg.Policy, registered: true}
	}
	if vmContext != nil {
		return &rootState{ctx: vmContext.NewPluginContext(contextID), vm: vmContext}
	}
	why := fmt.Sprintf("proxywasm: no filter registered for root id %q; this module has %s (set the plugin's root_id, Istio's WasmPlugin pluginName, to one of them)",
		id, strings.Join(RootIDs(), ", "))
	LogCritical(why)
	return &rootState{ctx: DefaultPluginContext{}, vm: DefaultVMContext{}, refused: why}
}

// recovered logs a recovered panic at critical level, with the callback's name and
// the stack, and reports whether there was one.
func recovered(where string, v any) {
	LogCriticalf("panic in %s: %v\n%s", where, v, debug.Stack())
}

// failStream applies the failure policy to stream id after a panic and returns the
// action for the interrupted callback.
func failStream(id uint32) Action {
	s, _ := streams.get(id)
	if s == nil {
		return Continue
	}
	policy := failurePolicy
	if r, ok := roots.get(s.rootID); ok && r.registered {
		policy = r.policy
	}
	if policy == FailOpen {
		return Continue
	}
	if !s.ended {
		s.ended = true
		if err := sendInternalError(); err != nil {
			LogCriticalf("fail closed: sending the 500 reply failed: %v", err)
		}
	}
	return Pause
}

func sendInternalError() error {
	return SendHttpResponse(500, "meshplug_filter_panic",
		[]abi.Pair{{Key: "content-type", Value: "application/json"}},
		[]byte(`{"error":"internal","error_description":"filter failure"}`), 13)
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion0_2_1() {}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) {
	currentContextID = contextID
	defer func() {
		if v := recover(); v != nil {
			recovered("proxy_on_context_create", v)
		}
	}()
	if parentID == 0 {
		roots.put(contextID, newRoot(contextID))
		return
	}
	root, ok := roots.get(parentID)
	if !ok {
		LogCriticalf("proxy_on_context_create: unknown root context %d", parentID)
		return
	}
	st := freeStreams.take()
	*st = streamState{ctx: root.ctx.NewHttpContext(contextID), rootID: parentID}
	streams.put(contextID, st)
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, vmConfigSize uint32) (ok bool) {
	currentContextID = rootID
	defer func() {
		if v := recover(); v != nil {
			recovered("proxy_on_vm_start", v)
			ok = false
		}
	}()
	root, found := roots.get(rootID)
	if !found {
		// A host that starts the VM before creating the root context: the default.
		return registeredVM().OnVMStart(int(vmConfigSize))
	}
	if root.refused != "" {
		return true // refused at proxy_on_configure, like a bad configuration
	}
	return root.vm.OnVMStart(int(vmConfigSize))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, pluginConfigSize uint32) (ok bool) {
	currentContextID = rootID
	defer func() {
		if v := recover(); v != nil {
			recovered("proxy_on_configure", v)
			ok = false
		}
	}()
	root, found := roots.get(rootID)
	if !found {
		LogCriticalf("proxy_on_configure: unknown root context %d", rootID)
		return false
	}
	if root.refused != "" {
		LogCritical(root.refused)
		return false
	}
	return root.ctx.OnPluginStart(int(pluginConfigSize))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) {
	currentContextID = rootID
	defer func() {
		if v := recover(); v != nil {
			recovered("proxy_on_tick", v)
		}
	}()
	if root, ok := roots.get(rootID); ok {
		root.ctx.OnTick()
	}
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) {
	currentContextID = rootID
	defer func() {
		if v := recover(); v != nil {
			recovered("proxy_on_queue_ready", v)
		}
	}()
	if root, ok := roots.get(rootID); ok {
		root.ctx.OnQueueReady(queueID)
	}
}

// enterStream makes stream id the current context and returns its state (nil, with a
// log line, for an unknown id).
func enterStream(where string, id uint32) *streamState {
	currentContextID = id
	s, ok := streams.get(id)
	if !ok {
		LogCriticalf("%s: unknown stream context %d", where, id)
		return nil
	}
	return s
}

// recoverStream is deferred by every stream callback: it turns a panic into a log line
// and the failure policy's action. (recover only works called directly by the
// deferred function, hence no wrapper; the callbacks avoid closures because every call
// level costs in a Go wasm guest.)
func recoverStream(where string, id uint32, action *uint32) {
	if v := recover(); v != nil {
		recovered(where, v)
		*action = uint32(failStream(id))
	}
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id, numHeaders, endOfStream uint32) (action uint32) {
	s := enterStream("proxy_on_request_headers", id)
	if s == nil {
		return 0
	}
	defer recoverStream("proxy_on_request_headers", id, &action)
	return uint32(s.ctx.OnHttpRequestHeaders(int(numHeaders), endOfStream != 0))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(id, bodySize, endOfStream uint32) (action uint32) {
	s := enterStream("proxy_on_request_body", id)
	if s == nil {
		return 0
	}
	defer recoverStream("proxy_on_request_body", id, &action)
	return uint32(s.ctx.OnHttpRequestBody(int(bodySize), endOfStream != 0))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(id, numTrailers uint32) (action uint32) {
	s := enterStream("proxy_on_request_trailers", id)
	if s == nil {
		return 0
	}
	defer recoverStream("proxy_on_request_trailers", id, &action)
	return uint32(s.ctx.OnHttpRequestTrailers(int(numTrailers)))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id, numHeaders, endOfStream uint32) (action uint32) {
	s := enterStream("proxy_on_response_headers", id)
	if s == nil {
		return 0
	}
	defer recoverStream("proxy_on_response_headers", id, &action)
	return uint32(s.ctx.OnHttpResponseHeaders(int(numHeaders), endOfStream != 0))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(id, bodySize, endOfStream uint32) (action uint32) {
	s := enterStream("proxy_on_response_body", id)
	if s == nil {
		return 0
	}
	defer recoverStream("proxy_on_response_body", id, &action)
	return uint32(s.ctx.OnHttpResponseBody(int(bodySize), endOfStream != 0))
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(id, numTrailers uint32) (action uint32) {
	s := enterStream("proxy_on_response_trailers", id)
	if s == nil {
		return 0
	}
	defer recoverStream("proxy_on_response_trailers", id, &action)
	return uint32(s.ctx.OnHttpResponseTrailers(int(numTrailers)))
}

// proxy_on_done: for a stream, OnHttpStreamDone; for a root, OnPluginDone.
//
//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_done
func proxyOnDone(id uint32) (done bool) {
	currentContextID = id
	defer func() {
		if v := recover(); v != nil {
			recovered("proxy_on_done", v)
			done = true
		}
	}()
	if s, ok := streams.get(id); ok {
		// A finished stream gets no more callout callbacks, even if the host deletes
		// its context later: the filter may already have recycled its state.
		dropCallouts(id)
		s.ctx.OnHttpStreamDone()
		return true
	}
	if r, ok := roots.get(id); ok {
		return r.ctx.OnPluginDone()
	}
	return true
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_log
func proxyOnLog(id uint32) {
	currentContextID = id
	s, ok := streams.get(id) // not a stream (a root context): nothing to log
	if !ok {
		return
	}
	if l, ok := s.ctx.(StreamLogger); ok {
		defer func() {
			if v := recover(); v != nil {
				recovered("proxy_on_log", v)
			}
		}()
		l.OnHttpStreamLog()
	}
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_delete
func proxyOnDelete(id uint32) {
	if s, ok := streams.get(id); ok {
		streams.remove(id)
		*s = streamState{}
		freeStreams.give(s)
	}
	roots.remove(id)
	dropCallouts(id)
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_http_call_response
func proxyOnHttpCallResponse(_ /* context id: see callouts */, token, numHeaders, bodySize, numTrailers uint32) {
	c, ok := httpCalls[token]
	if !ok {
		LogWarnf("proxy_on_http_call_response: unknown token %d", token)
		return
	}
	delete(httpCalls, token)
	enterCalloutContext("proxy_on_http_call_response", c.contextID, func() {
		c.callback(int(numHeaders), int(bodySize), int(numTrailers))
	})
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGrpcReceiveInitialMetadata(_, token, numHeaders uint32) {
	if c, ok := grpcCalls[token]; ok && c.stream != nil {
		enterCalloutContext("proxy_on_grpc_receive_initial_metadata", c.contextID, func() {
			c.stream.OnInitialMetadata(int(numHeaders))
		})
	}
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGrpcReceiveTrailingMetadata(_, token, numTrailers uint32) {
	if c, ok := grpcCalls[token]; ok && c.stream != nil {
		enterCalloutContext("proxy_on_grpc_receive_trailing_metadata", c.contextID, func() {
			c.stream.OnTrailingMetadata(int(numTrailers))
		})
	}
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_grpc_receive
func proxyOnGrpcReceive(_, token, size uint32) {
	c, ok := grpcCalls[token]
	if !ok {
		LogWarnf("proxy_on_grpc_receive: unknown token %d", token)
		return
	}
	if c.unary != nil {
		// A unary call ends with its one message.
		delete(grpcCalls, token)
		enterCalloutContext("proxy_on_grpc_receive", c.contextID, func() {
			msg, err := GrpcReceiveBuffer.Bytes()
			if err != nil {
				LogErrorf("gRPC call %d: reading the response: %v", token, err)
			}
			c.unary(0, "", msg)
		})
		return
	}
	enterCalloutContext("proxy_on_grpc_receive", c.contextID, func() {
		c.stream.OnMessage(int(size))
	})
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_grpc_close
func proxyOnGrpcClose(_, token, status uint32) {
	c, ok := grpcCalls[token]
	if !ok {
		return
	}
	delete(grpcCalls, token)
	enterCalloutContext("proxy_on_grpc_close", c.contextID, func() {
		msg := ""
		if _, m, err := GetStatus(); err == nil {
			msg = m
		}
		if c.unary != nil {
			c.unary(status, msg, nil)
		} else {
			c.stream.OnClose(status, msg)
		}
	})
}

// enterCalloutContext runs a callout callback as the context that made the call: it
// makes that context the effective one (so that ResumeHttpRequest, SendHttpResponse and
// header calls act on its stream) and recovers panics, failing the stream by policy.
func enterCalloutContext(where string, contextID uint32, f func()) {
	currentContextID = contextID
	if _, isStream := streams.get(contextID); isStream {
		if err := SetEffectiveContext(contextID); err != nil {
			LogErrorf("%s: setting the effective context %d: %v", where, contextID, err)
		}
	}
	defer func() {
		if v := recover(); v != nil {
			recovered(where, v)
			if _, isStream := streams.get(contextID); isStream {
				if failStream(contextID) == Pause {
					return
				}
				if err := ResumeHttpRequest(); err != nil {
					LogErrorf("%s: resuming after a panic: %v", where, err)
				}
			}
		}
	}()
	f()
}

package proxywasm

import (
	"sort"

	"github.com/meshplug/meshplug/filters/abi"
)

// Action is what a stream callback returns: abi.ActionContinue or abi.ActionPause.
type Action = abi.Action

// The two stream actions, re-exported so filters need not import abi for them.
const (
	Continue = abi.ActionContinue
	// Pause stops the filter chain for this direction until the filter resumes it
	// (ResumeHttpRequest / ResumeHttpResponse) or sends a local response. On a body
	// callback it buffers the body (StopIterationAndBuffer).
	Pause = abi.ActionPause
)

// VMContext is the plugin author's entry point: one per Wasm VM. Register it from an
// init function with SetVMContext (main never runs in a c-shared module).
type VMContext interface {
	// OnVMStart is called once per VM with the size of the VM configuration
	// (read it with VMConfiguration.Bytes). Returning false fails the VM.
	OnVMStart(vmConfigSize int) bool
	// NewPluginContext creates the root context of one plugin configuration.
	NewPluginContext(contextID uint32) PluginContext
}

// PluginContext is the root context of one plugin configuration in one VM.
type PluginContext interface {
	// OnPluginStart is called with the size of the plugin configuration (read it with
	// PluginConfiguration.Bytes). Returning false rejects the configuration: Envoy
	// then refuses the listener update.
	OnPluginStart(pluginConfigSize int) bool
	// OnPluginDone is called when the host wants to shut the plugin down. Returning
	// false defers the shutdown until the plugin calls PluginDone.
	OnPluginDone() bool
	// OnTick is called every tick period set with SetTickPeriod.
	OnTick()
	// OnQueueReady is called when an item was enqueued on a queue this VM registered.
	OnQueueReady(queueID uint32)
	// NewHttpContext creates the context of one HTTP stream.
	NewHttpContext(contextID uint32) HttpContext
}

// HttpContext is the context of one HTTP stream (request and response).
type HttpContext interface {
	OnHttpRequestHeaders(numHeaders int, endOfStream bool) Action
	OnHttpRequestBody(bodySize int, endOfStream bool) Action
	OnHttpRequestTrailers(numTrailers int) Action
	OnHttpResponseHeaders(numHeaders int, endOfStream bool) Action
	OnHttpResponseBody(bodySize int, endOfStream bool) Action
	OnHttpResponseTrailers(numTrailers int) Action
	// OnHttpStreamDone is called once when the stream ends (completed or reset),
	// after which the context is deleted.
	OnHttpStreamDone()
}

// StreamLogger is an optional interface of an HttpContext: OnHttpStreamLog is called
// from proxy_on_log, Envoy's access-log phase at the end of the stream, where the
// request headers, response headers and trailers can still be read (read-only), e.g.
// to record the response status. It runs before OnHttpStreamDone.
type StreamLogger interface {
	OnHttpStreamLog()
}

// DefaultVMContext starts and creates DefaultPluginContexts; embed it to override parts.
type DefaultVMContext struct{}

func (DefaultVMContext) OnVMStart(int) bool                    { return true }
func (DefaultVMContext) NewPluginContext(uint32) PluginContext { return DefaultPluginContext{} }

// DefaultPluginContext does nothing; embed it to override parts.
type DefaultPluginContext struct{}

func (DefaultPluginContext) OnPluginStart(int) bool            { return true }
func (DefaultPluginContext) OnPluginDone() bool                { return true }
func (DefaultPluginContext) OnTick()                           {}
func (DefaultPluginContext) OnQueueReady(uint32)               {}
func (DefaultPluginContext) NewHttpContext(uint32) HttpContext { return DefaultHttpContext{} }

// DefaultHttpContext continues every callback; embed it to override parts.
type DefaultHttpContext struct{}

func (DefaultHttpContext) OnHttpRequestHeaders(int, bool) Action  { return Continue }
func (DefaultHttpContext) OnHttpRequestBody(int, bool) Action     { return Continue }
func (DefaultHttpContext) OnHttpRequestTrailers(int) Action       { return Continue }
func (DefaultHttpContext) OnHttpResponseHeaders(int, bool) Action { return Continue }
func (DefaultHttpContext) OnHttpResponseBody(int, bool) Action    { return Continue }
func (DefaultHttpContext) OnHttpResponseTrailers(int) Action      { return Continue }
func (DefaultHttpContext) OnHttpStreamDone()                      {}

// FailurePolicy says what a stream gets when a callback of its filter panics.
type FailurePolicy int

const (
	// FailOpen logs the panic and lets the stream continue, as if the filter were not
	// there. The default, for filters whose absence is safe (rate limits, hints).
	FailOpen FailurePolicy = iota
	// FailClosed logs the panic and answers the request with a 500 local reply
	// (grpc-status 13 for gRPC). For filters whose absence is unsafe (auth).
	FailClosed
)

// The module's registrations. Natively nothing reads them (the exports that do are
// wasip1-only), hence the U1000 ignores.
var (
	//lint:ignore U1000 read by the wasip1 exports
	vmContext VMContext // the default registration; nil until SetVMContext
	//lint:ignore U1000 read by the wasip1 exports
	failurePolicy = FailOpen
	//lint:ignore U1000 read by the wasip1 exports
	rootRegistry map[string]Registration // by root id; nil until Register
)

// Registration is one filter of a module: its VMContext and its failure policy.
type Registration struct {
	VM     VMContext
	Policy FailurePolicy
}

// SetVMContext registers the module's default filter: the one that serves every plugin
// whose root id no Register call claimed (any root id, in a one-filter module). Call
// it from an init function: a c-shared module never runs main. A module that
// registers nothing logs a critical line when the host starts it and then does
// nothing.
func SetVMContext(ctx VMContext) { vmContext = ctx }

// Register adds a filter to the module under root id rootID, with its own failure
// policy: the host's proxy_on_context_create for a plugin whose root id (Envoy's
// `root_id`, Istio's WasmPlugin `pluginName`, read through the plugin_root_id
// property) is rootID creates vm's plugin context, and the streams of that plugin fail
// by policy. This is how several filters share one module (and one VM per worker), as
// the C++ SDK's RegisterContextFactory does: a bundle's init registers each filter by
// its name. A root id that neither Register nor SetVMContext claimed is refused: the
// plugin's configuration fails, naming the root ids the module has. Registering a root
// id twice panics (at init, before the module can serve). rootID "" registers the
// module's default filter instead (SetVMContext and SetFailurePolicy): a filter's glue
// takes its root id as a parameter, "" in its own one-filter module, its name in a
// bundle.
func Register(rootID string, vm VMContext, policy FailurePolicy) {
	if vm == nil {
		panic("proxywasm: Register(" + rootID + "): nil VMContext")
	}
	if rootID == "" {
		SetVMContext(vm)
		SetFailurePolicy(policy)
		return
	}
	if _, dup := rootRegistry[rootID]; dup {
		panic("proxywasm: root id " + rootID + " registered twice")
	}
	if rootRegistry == nil {
		rootRegistry = map[string]Registration{}
	}
	rootRegistry[rootID] = Registration{VM: vm, Policy: policy}
}

// RootIDs returns the root ids registered with Register, sorted.
func RootIDs() []string {
	ids := make([]string, 0, len(rootRegistry))
	for id := range rootRegistry {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// SetHttpContext registers a filter that keeps no VM or plugin state: newStream
// creates the context of each HTTP stream, under a DefaultVMContext and
// DefaultPluginContext (the Rust SDK's proxy_wasm::set_http_context). Call it from an
// init function, instead of SetVMContext; a filter with configuration, metrics or
// ticks implements a PluginContext and uses SetVMContext.
func SetHttpContext(newStream func(contextID uint32) HttpContext) {
	SetVMContext(httpOnlyVM{newStream: newStream})
}

type httpOnlyVM struct {
	DefaultVMContext
	newStream func(uint32) HttpContext
}

func (v httpOnlyVM) NewPluginContext(uint32) PluginContext {
	return httpOnlyPlugin{newStream: v.newStream}
}

type httpOnlyPlugin struct {
	DefaultPluginContext
	newStream func(uint32) HttpContext
}

func (p httpOnlyPlugin) NewHttpContext(id uint32) HttpContext { return p.newStream(id) }

// SetFailurePolicy sets what a stream of the default filter (SetVMContext,
// SetHttpContext) gets when one of its callbacks panics. Call it from an init
// function; the default is FailOpen. Filters added with Register carry their own.
func SetFailurePolicy(p FailurePolicy) { failurePolicy = p }

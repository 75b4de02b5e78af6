// Package testenv is a proxy-wasm host on wazero that runs meshplug's compiled filters
// the way Envoy (proxy-wasm-cpp-host + extensions/common/wasm/context.cc) runs them:
// worker VMs per plugin, a filter chain with pause/continue, local replies, properties,
// shared data and queues, metrics, ticks, HTTP and gRPC callouts. See README.md for what
// differs from Envoy. The ABI it hosts is proxy-wasm v0.2.1
// (https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1).
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/tetratelabs/wazero"
)

// Options configures a Host. The zero value is usable.
type Options struct {
	Workers  int               // worker VMs per plugin (Envoy worker threads); default 1
	Clock    Clock             // nil = real time; *FakeClock = controllable
	Clusters map[string]string // cluster name -> "host:port"; HTTP callouts use HTTP/1.1, gRPC callouts h2c
	Upstream Upstream          // what the router sends requests to (every cluster); default: 200, body "ok"
	// AsyncUpstream, when set, replaces Upstream: the router hands it the request and
	// the stream waits, without holding its worker, until w answers (from any
	// goroutine): with the whole response at once, or frame by frame as a real
	// upstream's codec decodes them, each frame going through the response callbacks
	// as it comes (see UpstreamWriter). For a host in front of real upstream sockets
	// (the local gateway).
	AsyncUpstream func(r *UpstreamRequest, w *UpstreamWriter)
	// LogRequestHeaders names request headers whose values at the end of the stream
	// are copied into Response.LoggedHeaders, as Envoy's access log reads %REQ(name)%
	// from the request header map after the filters edited it (also when a filter
	// answered with a local reply). For the local gateway's access log.
	LogRequestHeaders []string
	// Routes is the router stage's route table: the first matching route picks the
	// cluster (Response.Cluster, UpstreamRequest.Cluster); no match is a 404 local
	// reply like Envoy's router. nil: no router stage, every request goes to Upstream.
	Routes       []Route
	LogLevel     abi.LogLevel      // returned by proxy_get_log_level; logs below it are dropped; default LogInfo (the zero value is LogTrace, so set LogLevelTrace to get everything)
	NodeMetadata map[string]string // exposed as property xds.node.metadata.<KEY>
	LogWriter    io.Writer         // optional: also write each kept log line here
	// LogLevelTrace keeps trace and debug logs (LogLevel's zero value means "default").
	LogLevelTrace bool
	// UpstreamAddress is the upstream.address property once the router sent the request
	// (default DefaultUpstreamAddress).
	UpstreamAddress string
	// AllowOnHeadersStopIteration is Envoy's `allow_on_headers_stop_iteration` of the
	// wasm filter (default false). Off, a Pause from proxy_on_request_headers or
	// proxy_on_response_headers is StopAllIterationAndWatermark, as
	// proxy-wasm-cpp-host's ContextBase::convertVmCallResultToFilterHeadersStatus turns
	// StopIteration into: body and trailers wait before the plugin, which is not
	// called for them, until it continues (then they come to it first). On, a Pause is
	// StopIteration: the plugin still gets its body and trailers callbacks, and a
	// Continue from one of them sends the held headers on.
	AllowOnHeadersStopIteration bool
	// RequestChunkSize and ResponseChunkSize cut request bodies and upstream response
	// bodies into chunks of that many bytes, each its own body callback (as Envoy
	// calls decodeData/encodeData per frame or socket read). 0: DefaultChunkSize, the
	// size of an HTTP/2 DATA frame under the default SETTINGS_MAX_FRAME_SIZE, so a body
	// a test sends in one piece reaches filters as Envoy's codec would hand it over
	// (and a filter buffering it meets the buffer limit as in Envoy); < 0: the whole
	// body in one chunk.
	RequestChunkSize, ResponseChunkSize int
	// BufferLimitBytes is Envoy's per_connection_buffer_limit_bytes as the buffer limit
	// of a stream: a body a plugin buffers (Pause from a body callback) beyond it is
	// answered 413 (request) or 500 (response). 0: Envoy's default, 1 MiB; < 0: none.
	BufferLimitBytes int
	// PollOneoffENOSYS makes WASI poll_oneoff fail with ENOSYS, as proxy-wasm-cpp-host
	// did before its #533 (Envoy before PR #45756): official-Go guests then serve
	// requests until Go's poller has been switched on and a garbage collection polls,
	// then die (not at once, not at their first collection). For compatibility tests;
	// see docs/compatibility.md.
	PollOneoffENOSYS bool
	// OnCallout, when set, sees each callout request the host accepted, as the guest
	// passed it (proxy_http_call, proxy_grpc_call, proxy_grpc_stream, proxy_grpc_send),
	// before it goes out; it runs on the calling worker with the worker's lock held, so it
	// must not call into the Host.
	OnCallout func(CalloutRequest)
}

// CalloutRequest is a callout request as the guest passed it to the host (Options.OnCallout).
type CalloutRequest struct {
	Worker int
	// Kind is "http" (proxy_http_call), "grpc" (proxy_grpc_call), "grpc_stream"
	// (proxy_grpc_stream) or "grpc_send" (proxy_grpc_send on a stream).
	Kind string
	// Cluster is the HTTP call's cluster, or the gRPC call's or stream's service argument
	// (a cluster name or a serialized GrpcService).
	Cluster string
	// Headers are an HTTP call's headers (pseudo-headers included) or a gRPC call's or
	// stream's initial metadata, in the guest's order.
	Headers []abi.Pair
	// Trailers are an HTTP call's trailers.
	Trailers []abi.Pair
	// Body is an HTTP call's body or a gRPC message.
	Body []byte
	// Service and Method name a gRPC call or stream.
	Service, Method string
	// TimeoutMS is an HTTP or gRPC call's timeout argument.
	TimeoutMS int64
	// EndStream is proxy_grpc_send's end_stream.
	EndStream bool
}

// FailurePolicy is what happens to requests when a plugin's VM fails at runtime (a
// trap or a panic that escaped; not proc_exit, which returns as in cpp-host), Envoy's PluginConfig.failure_policy (Istio's
// WasmPlugin failStrategy: FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD).
type FailurePolicy uint8

const (
	// FailClosed (Envoy's default, also for FAIL_UNSPECIFIED): the stream whose
	// callback failed and every later stream get a 503 local reply with an empty body
	// and details wasm_fail_stream (Envoy's Context::failStream; grpc-status 14 for
	// gRPC requests). Streams already past their response headers are reset.
	FailClosed FailurePolicy = iota
	// FailOpen: the failed callback counts as Continue, and later streams skip the
	// plugin (cpp-host's CHECK_FAIL_HTTP with fail_open; PluginConfig::createContext
	// adds no filter).
	FailOpen
	// FailReload: like FailClosed for the failing stream; a later stream first reloads
	// the VM (a new instance: _initialize, root contexts, configure) once the reload
	// backoff since the last load elapsed (Plugin.ReloadBackoff), as
	// PluginConfig::maybeReloadHandleIfNeeded does; before that, or if the reload
	// fails, it gets the FailClosed 503.
	FailReload
)

// DefaultReloadBackoff is Envoy's default reload_config.backoff.base_interval (1 s).
const DefaultReloadBackoff = time.Second

// Plugin is one proxy-wasm plugin of the filter chain.
type Plugin struct {
	Name     string // plugin_name property; default: the BuildGuest folder name, else "plugin<index>"
	RootID   string // plugin_root_id
	VMID     string // vm_id: plugins with the same VMID share shared data and queues
	Wasm     []byte // the compiled module
	Config   []byte // plugin configuration (BufferPluginConfig)
	VMConfig []byte // vm configuration (BufferVMConfiguration)
	// Env is the VM's environment (Envoy's vm_config.environment_variables, Istio's
	// WasmPlugin vmConfig.env), which the guest reads through WASI environ_get (Go's
	// runtime reads GOGC and GOMEMLIMIT there). As in cpp-host it is not part of the VM
	// key: a shared VM has the environment of the plugin that created it.
	Env map[string]string
	// FailurePolicy: what a runtime failure of the VM does (default FailClosed, as
	// Envoy).
	FailurePolicy FailurePolicy
	// ReloadBackoff is the least time between two loads of a failed VM with
	// FailReload; 0 = Envoy's default, 1 s. Envoy adds a random jitter of up to half of
	// it (JitteredLowerBoundBackOffStrategy); testenv waits exactly this long so tests
	// with a FakeClock are deterministic.
	ReloadBackoff time.Duration
}

// DefaultChunkSize is the body chunk size when Options.RequestChunkSize or
// ResponseChunkSize is 0: 16 KiB, HTTP/2's default SETTINGS_MAX_FRAME_SIZE (RFC 9113
// §6.5.2), one decodeData/encodeData per DATA frame in Envoy's HTTP/2 codec.
const DefaultChunkSize = 16 << 10

// DefaultBufferLimitBytes is Envoy's default per_connection_buffer_limit_bytes (1 MiB).
const DefaultBufferLimitBytes = 1 << 20

// NodeID is the xds.node.id property value.
const NodeID = "testenv~127.0.0.1~node~cluster.local"

// LogEntry is one log line kept by the host (proxy_log, or WASI stdout/stderr).
type LogEntry struct {
	Plugin  string
	Worker  int
	Level   abi.LogLevel
	Message string
}

// Host runs a chain of plugins on Options.Workers workers. It is safe for concurrent use.
type Host struct {
	opts     Options
	clock    Clock
	logLevel abi.LogLevel
	plugins  []Plugin
	mods     []wazero.CompiledModule
	vmKeys   []string        // per plugin, see vmKeyOf
	routes   []compiledRoute // nil: no router stage
	workers  []*worker
	rr       atomic.Uint32
	closed   atomic.Bool

	logMu sync.Mutex
	logs  []LogEntry

	shared  sharedStore
	queues  queueStore
	metrics metricStore

	calloutCtx    context.Context
	cancelCallout context.CancelFunc
	grpcMu        sync.Mutex
	grpcConns     map[string]*grpcConn
}

// worker owns one VM per plugin; its VMs are used by one goroutine at a time.
type worker struct {
	id   int
	h    *Host
	mu   sync.Mutex
	vms  []*vm
	npen atomic.Int32
	pmu  sync.Mutex
	pend []func()
	// resume lists paused streams that asked to continue; active lists streams in
	// flight; free holds completed Do streams for reuse. All only touched under mu.
	resume []*Stream
	active []*Stream
	free   []*Stream
}

// New compiles each plugin's module (once per process, with wazero's compilation cache
// on disk), checks its imports, runs each plugin's configuration canary (Host.canary, as
// Envoy's createWasm does: worker -1), and starts opts.Workers VMs per plugin:
// _initialize, proxy_on_context_create(root, 0), proxy_on_vm_start,
// proxy_on_configure. A false return, a trap or a failed check is an error naming the
// plugin, the worker (-1: the canary, which refuses a bad configuration before any
// worker starts) and the phase, with the plugin's error and critical log lines.
func New(ctx context.Context, opts Options, chain ...Plugin) (*Host, error) {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	h := &Host{opts: opts, clock: opts.Clock, logLevel: opts.LogLevel}
	if h.clock == nil {
		h.clock = realClock{}
	}
	if h.logLevel == 0 && !opts.LogLevelTrace {
		h.logLevel = abi.LogInfo
	}
	if opts.Routes != nil {
		routes, err := compileRoutes(opts.Routes)
		if err != nil {
			return nil, err
		}
		h.routes = routes
	}
	h.calloutCtx, h.cancelCallout = context.WithCancel(context.Background())
	h.shared.init()
	h.queues.init()
	h.metrics.init()
	h.plugins = make([]Plugin, len(chain))
	mods := make([]wazero.CompiledModule, len(chain))
	for i, p := range chain {
		if p.Name == "" {
			if n, ok := wasmName(p.Wasm); ok {
				p.Name = n
			} else {
				p.Name = fmt.Sprintf("plugin%d", i)
			}
		}
		h.plugins[i] = p
		m, err := compile(ctx, p.Name, p.Wasm)
		if err != nil {
			return nil, err
		}
		mods[i] = m
	}
	h.mods = mods
	for _, p := range h.plugins {
		h.vmKeys = append(h.vmKeys, vmKeyOf(p))
	}
	// Envoy's createWasm runs the configuration canary for each plugin before any
	// worker gets it (cpp-host's createWasm → WasmHandleBase::canary): a configuration
	// the plugin refuses fails here, as at Reconfigure, and no worker VM is started.
	for i := range h.plugins {
		if err := h.canary(ctx, i, h.plugins[i].Config); err != nil {
			_ = h.Close(ctx)
			return nil, err
		}
	}
	for wi := 0; wi < opts.Workers; wi++ {
		w := &worker{id: wi, h: h}
		h.workers = append(h.workers, w)
		for i := range chain {
			w.mu.Lock()
			v, err := newVM(ctx, h, w, i, mods[i])
			w.mu.Unlock()
			if v != nil {
				w.vms = append(w.vms, v)
			}
			if err != nil {
				_ = h.Close(ctx)
				return nil, err
			}
		}
	}
	return h, nil
}

// Close calls proxy_on_done and proxy_on_delete for each root context, stops ticks and
// callouts, and closes the VMs. Streams still paused are abandoned.
func (h *Host) Close(ctx context.Context) error {
	if h.closed.Swap(true) {
		return nil
	}
	h.cancelCallout()
	var errs []error
	for _, w := range h.workers {
		w.mu.Lock()
		for _, v := range w.vms {
			for len(v.draining) > 0 {
				v.deleteRoot(v.draining[0].ref.id)
			}
			v.stopTick()
			if !v.failed {
				v.cur = &v.root
				v.call1(v.fns.onDone, uint64(v.rootID))
				if !v.failed {
					v.call1(v.fns.onDelete, uint64(v.rootID))
				}
			}
		}
		closed := map[*inst]bool{}
		for _, v := range w.vms {
			if closed[v.inst] {
				continue
			}
			closed[v.inst] = true
			if err := v.mod.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		w.mu.Unlock()
	}
	h.grpcMu.Lock()
	for _, c := range h.grpcConns {
		c.close()
	}
	h.grpcConns = nil
	h.grpcMu.Unlock()
	return errors.Join(errs...)
}

// Reconfigure delivers a new plugin configuration to plugin (its index in the chain) on
// every worker the way an xDS update of the filter's configuration does in Envoy: the
// plugin's VM stays (same VM key), a new root context is created in it
// (proxy_on_context_create, proxy_on_vm_start, proxy_on_configure with the new
// configuration; cpp-host's WasmBase::start for the new plugin key); new streams use
// it; streams in flight finish on the old root context, which then gets proxy_on_done
// and proxy_on_delete (cpp-host's startShutdown when the old plugin handle goes away).
// A configuration the plugin refuses is an error and leaves the old one in place (Envoy
// rejects the update).
func (h *Host) Reconfigure(ctx context.Context, plugin int, config []byte) error {
	if plugin < 0 || plugin >= len(h.plugins) {
		return fmt.Errorf("testenv: Reconfigure: no plugin %d", plugin)
	}
	if err := h.canary(ctx, plugin, config); err != nil {
		return err
	}
	var errs []error
	for _, w := range h.workers {
		w.run(func() {
			if err := w.vms[plugin].reconfigure(config); err != nil {
				errs = append(errs, err)
			}
		})
	}
	if len(errs) == 0 {
		h.plugins[plugin].Config = config
	}
	return errors.Join(errs...)
}

// canary configures plugin with config in a throwaway VM first, as Envoy does for every
// new plugin configuration (cpp-host's createWasm → WasmHandleBase::canary: the plugin is
// started and configured in a clone of the base VM, destroyed right after, before any
// worker's thread-local plugin): a configuration the plugin refuses never reaches a
// worker. The canary's log lines have worker -1; its callouts and tick are cancelled with
// it. New and Reconfigure both run one.
func (h *Host) canary(ctx context.Context, plugin int, config []byte) error {
	w := &worker{id: -1, h: h}
	w.mu.Lock()
	defer w.mu.Unlock()
	v, err := newVMWith(ctx, h, w, plugin, h.mods[plugin], config)
	if v != nil {
		v.stopTick()
		for token, cancel := range v.httpCalls {
			cancel()
			delete(v.httpCalls, token)
		}
		for token, c := range v.grpcCalls {
			c.cancel()
			delete(v.grpcCalls, token)
		}
		if v.mod != nil {
			_ = v.mod.Close(ctx)
		}
	}
	if err != nil {
		return fmt.Errorf("configuration canary: %w", err)
	}
	return nil
}

// Workers returns the number of workers.
func (h *Host) Workers() int { return len(h.workers) }

// Settle runs, on each worker, the work posted to it (a shared queue's
// proxy_on_queue_ready for a root context there, resumed streams) until no worker has
// any left, so that what one worker's enqueue caused on another is done when Settle
// returns. Callouts in flight are not waited for. It gives up after 1000 rounds (a guest
// that keeps posting to itself).
func (h *Host) Settle() {
	for range 1000 {
		for _, w := range h.workers {
			w.run(nil)
		}
		busy := false
		for _, w := range h.workers {
			busy = busy || w.npen.Load() > 0
		}
		if !busy {
			return
		}
	}
}

// Logs returns a copy of all kept log lines, oldest first.
func (h *Host) Logs() []LogEntry {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	return append([]LogEntry(nil), h.logs...)
}

func (h *Host) log(plugin string, worker int, level abi.LogLevel, msg string) {
	if level < h.logLevel {
		return
	}
	h.logMu.Lock()
	h.logs = append(h.logs, LogEntry{Plugin: plugin, Worker: worker, Level: level, Message: msg})
	if h.opts.LogWriter != nil {
		fmt.Fprintf(h.opts.LogWriter, "[%s] %s[w%d]: %s\n", level, plugin, worker, msg)
	}
	h.logMu.Unlock()
}

// errorLogs returns the error and critical lines logged by plugin on worker.
func (h *Host) errorLogs(plugin string, worker int) string {
	h.logMu.Lock()
	defer h.logMu.Unlock()
	var b strings.Builder
	for _, e := range h.logs {
		if e.Plugin == plugin && e.Worker == worker && e.Level >= abi.LogError {
			fmt.Fprintf(&b, "\n  [%s] %s", e.Level, e.Message)
		}
	}
	return b.String()
}

// run takes the worker lock, runs f (if not nil), then runs posted tasks and resumes
// streams until none are left.
func (w *worker) run(f func()) {
	w.mu.Lock()
	if f != nil {
		f()
	}
	w.drain()
	w.mu.Unlock()
}

// post queues f to run under the worker lock, soon, on some goroutine.
func (w *worker) post(f func()) {
	w.pmu.Lock()
	w.pend = append(w.pend, f)
	w.npen.Add(1)
	w.pmu.Unlock()
	go w.run(nil)
}

func (w *worker) drain() {
	for {
		for len(w.resume) > 0 {
			s := w.resume[0]
			w.resume = w.resume[1:]
			s.resumeNow()
		}
		if w.npen.Load() == 0 {
			return
		}
		w.pmu.Lock()
		fs := w.pend
		w.pend = nil
		w.npen.Store(0)
		w.pmu.Unlock()
		for _, f := range fs {
			if !w.h.closed.Load() {
				f()
			}
			for len(w.resume) > 0 {
				s := w.resume[0]
				w.resume = w.resume[1:]
				s.resumeNow()
			}
		}
	}
}

// GuestMemory returns the size in bytes of the linear memory of plugin (its index in
// the chain) on worker: what a memory soak watches. It is 0 for an unknown plugin or
// worker.
func (h *Host) GuestMemory(plugin, worker int) uint32 {
	if worker < 0 || worker >= len(h.workers) {
		return 0
	}
	w := h.workers[worker]
	w.mu.Lock()
	defer w.mu.Unlock()
	if plugin < 0 || plugin >= len(w.vms) {
		return 0
	}
	return w.vms[plugin].mem.Size()
}

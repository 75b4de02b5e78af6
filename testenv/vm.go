package testenv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

type vmKey struct{}

// ctxRef is a proxy-wasm context of a VM: the root context (s == nil) or a stream's.
type ctxRef struct {
	id     uint32
	plugin int
	s      *Stream
	// got and sent count the frames (headers, body, trailers) of the current direction
	// this plugin received and passed on; sent < got means it holds frames (stopped).
	got, sent uint8
	// maps has a bit per stream map/buffer (mReqHeaders...) this context may use now,
	// mirroring Envoy's per-filter request_headers_ etc. pointers.
	maps uint8
	// want: proxy_continue_stream asked to release held frames.
	want bool
	// stopAll: the plugin paused its headers and, as Envoy does by default, that
	// became StopAllIterationAndWatermark: later frames of the direction are held
	// before this plugin without calling it until it continues (see Stream.callback).
	stopAll bool
}

// vm is one instance of one plugin's module on one worker.
type vm struct {
	h      *Host
	w      *worker
	plugin int
	name   string
	vmID   string
	mod    api.Module
	mem    api.Memory
	ctx    context.Context
	fns    struct {
		onContextCreate, onVMStart, onConfigure, onTick                       api.Function
		onReqHeaders, onReqBody, onReqTrailers                                api.Function
		onRespHeaders, onRespBody, onRespTrailers                             api.Function
		onDone, onLog, onDelete                                               api.Function
		onHTTPCallResponse, onQueueReady                                      api.Function
		onGrpcInitialMetadata, onGrpcReceive, onGrpcTrailingMeta, onGrpcClose api.Function
	}
	mallocName string
	mallocs    []api.Function // one per nesting depth (re-entrant calls need their own)
	mstacks    [][]uint64
	depth      int
	stack      [16]uint64

	failed bool
	rootID uint32
	nextID uint32
	root   ctxRef
	cur    *ctxRef

	configuring bool // plugin configuration readable (during proxy_on_configure)
	scratch     []byte
	lower       []byte

	tickCancel func()

	// callout state
	status     uint32
	statusMsg  string
	httpResp   *httpResult
	nextHTTP   uint32
	httpCalls  map[uint32]context.CancelFunc
	grpcInit   []abi.Pair
	grpcTrail  []abi.Pair
	grpcRecv   []byte
	grpcInRecv bool
	nextGrpc   uint32
	grpcCalls  map[uint32]*grpcCall

	metricIDs  map[uint32]*stat
	nextMetric [3]uint32
}

func newVM(ctx context.Context, h *Host, w *worker, idx int, cm wazero.CompiledModule) (*vm, error) {
	r, err := wasmRuntime()
	if err != nil {
		return nil, err
	}
	p := h.plugins[idx]
	v := &vm{h: h, w: w, plugin: idx, name: p.Name, vmID: p.VMID,
		httpCalls: map[uint32]context.CancelFunc{}, grpcCalls: map[uint32]*grpcCall{}, metricIDs: map[uint32]*stat{}}
	v.ctx = context.WithValue(context.Background(), vmKey{}, v)
	fail := func(phase string, err error) error {
		return fmt.Errorf("plugin %q worker %d: %s: %v%s", p.Name, w.id, phase, err, h.errorLogs(p.Name, w.id))
	}
	mod, err := r.InstantiateModule(v.ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, fail("instantiating", err)
	}
	v.mod = mod
	v.mem = mod.Memory()
	if v.mem == nil {
		return v, fail("instantiating", errors.New("module has no memory"))
	}
	f := mod.ExportedFunction
	v.fns.onContextCreate = f("proxy_on_context_create")
	v.fns.onVMStart = f("proxy_on_vm_start")
	v.fns.onConfigure = f("proxy_on_configure")
	v.fns.onTick = f("proxy_on_tick")
	v.fns.onReqHeaders = f("proxy_on_request_headers")
	v.fns.onReqBody = f("proxy_on_request_body")
	v.fns.onReqTrailers = f("proxy_on_request_trailers")
	v.fns.onRespHeaders = f("proxy_on_response_headers")
	v.fns.onRespBody = f("proxy_on_response_body")
	v.fns.onRespTrailers = f("proxy_on_response_trailers")
	v.fns.onDone = f("proxy_on_done")
	v.fns.onLog = f("proxy_on_log")
	v.fns.onDelete = f("proxy_on_delete")
	v.fns.onHTTPCallResponse = f("proxy_on_http_call_response")
	v.fns.onQueueReady = f("proxy_on_queue_ready")
	v.fns.onGrpcInitialMetadata = f("proxy_on_grpc_receive_initial_metadata")
	v.fns.onGrpcReceive = f("proxy_on_grpc_receive")
	v.fns.onGrpcTrailingMeta = f("proxy_on_grpc_receive_trailing_metadata")
	v.fns.onGrpcClose = f("proxy_on_grpc_close")
	v.mallocName = "proxy_on_memory_allocate"
	if f(v.mallocName) == nil {
		v.mallocName = "malloc"
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	v.nextID = 1
	v.rootID = v.nextID
	v.root = ctxRef{id: v.rootID, plugin: idx}
	v.cur = &v.root
	if init := f("_initialize"); init != nil {
		v.depth++
		err := init.CallWithStack(v.ctx, v.stack[:])
		v.depth--
		if err != nil {
			v.failed = true
			return v, fail("_initialize", err)
		}
	}
	if _, err := v.callErr(v.fns.onContextCreate, 2, uint64(v.rootID), 0); err != nil {
		return v, fail("proxy_on_context_create", err)
	}
	ok, err := v.callErr(v.fns.onVMStart, 2, uint64(v.rootID), uint64(len(p.VMConfig)))
	if err != nil {
		return v, fail("proxy_on_vm_start", err)
	}
	if v.fns.onVMStart != nil && ok == 0 {
		return v, fail("proxy_on_vm_start", errors.New("returned false"))
	}
	v.configuring = true
	ok, err = v.callErr(v.fns.onConfigure, 2, uint64(v.rootID), uint64(len(p.Config)))
	v.configuring = false
	if err != nil {
		return v, fail("proxy_on_configure", err)
	}
	if v.fns.onConfigure != nil && ok == 0 {
		return v, fail("proxy_on_configure", errors.New("returned false"))
	}
	w.drain()
	return v, nil
}

// callErr calls f with up to 3 arguments on the VM's own stack. A nil f (export absent)
// returns 0. A trap marks the VM failed.
func (v *vm) callErr(f api.Function, n int, a, b uint64, more ...uint64) (uint64, error) {
	if f == nil {
		return 0, nil
	}
	if v.failed {
		return 0, errVMFailed
	}
	st := v.stack[:]
	st[0], st[1] = a, b
	copy(st[2:], more)
	v.depth++
	err := f.CallWithStack(v.ctx, st)
	v.depth--
	if err != nil {
		v.trap(err)
		return 0, err
	}
	return st[0], nil
}

var errVMFailed = errors.New("wasm vm failed")

// trap marks the VM failed (Envoy's fail_open=false: it is never called again) and logs why.
func (v *vm) trap(err error) {
	v.failed = true
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		v.h.log(v.name, v.w.id, abi.LogCritical, fmt.Sprintf("wasm vm exited with code %d", exit.ExitCode()))
		return
	}
	v.h.log(v.name, v.w.id, abi.LogCritical, "wasm trap: "+err.Error())
}

// Fast fixed-arity calls for the request path; they return (result, ok).
func (v *vm) call1(f api.Function, a uint64) (uint64, bool) {
	if f == nil {
		return 0, true
	}
	if v.failed {
		return 0, false
	}
	v.stack[0] = a
	v.depth++
	err := f.CallWithStack(v.ctx, v.stack[:])
	v.depth--
	if err != nil {
		v.trap(err)
		return 0, false
	}
	return v.stack[0], true
}

func (v *vm) call2(f api.Function, a, b uint64) (uint64, bool) {
	if f == nil {
		return 0, true
	}
	if v.failed {
		return 0, false
	}
	v.stack[0], v.stack[1] = a, b
	v.depth++
	err := f.CallWithStack(v.ctx, v.stack[:])
	v.depth--
	if err != nil {
		v.trap(err)
		return 0, false
	}
	return v.stack[0], true
}

func (v *vm) call3(f api.Function, a, b, c uint64) (uint64, bool) {
	if f == nil {
		return 0, true
	}
	if v.failed {
		return 0, false
	}
	v.stack[0], v.stack[1], v.stack[2] = a, b, c
	v.depth++
	err := f.CallWithStack(v.ctx, v.stack[:])
	v.depth--
	if err != nil {
		v.trap(err)
		return 0, false
	}
	return v.stack[0], true
}

func (v *vm) call5(f api.Function, a, b, c, d, e uint64) (uint64, bool) {
	if f == nil {
		return 0, true
	}
	if v.failed {
		return 0, false
	}
	v.stack[0], v.stack[1], v.stack[2], v.stack[3], v.stack[4] = a, b, c, d, e
	v.depth++
	err := f.CallWithStack(v.ctx, v.stack[:])
	v.depth--
	if err != nil {
		v.trap(err)
		return 0, false
	}
	return v.stack[0], true
}

// onRoot runs a root-context callback (tick, queue ready, callout responses).
func (v *vm) onRoot(fn func()) {
	if v.failed || v.h.closed.Load() {
		return
	}
	v.cur = &v.root
	fn()
}

// alloc asks the guest for size bytes (proxy_on_memory_allocate, else malloc), using a
// separate api.Function per nesting depth.
func (v *vm) alloc(size uint32) (uint32, bool) {
	d := v.depth
	for len(v.mallocs) <= d {
		v.mallocs = append(v.mallocs, v.mod.ExportedFunction(v.mallocName))
		v.mstacks = append(v.mstacks, make([]uint64, 1))
	}
	f := v.mallocs[d]
	if f == nil || v.failed {
		return 0, false
	}
	st := v.mstacks[d]
	st[0] = uint64(size)
	v.depth++
	err := f.CallWithStack(v.ctx, st)
	v.depth--
	if err != nil {
		v.trap(err)
		return 0, false
	}
	p := uint32(st[0])
	if p == 0 && size > 0 {
		return 0, false
	}
	if uint64(p)+uint64(size) > uint64(v.mem.Size()) {
		return 0, false
	}
	return p, true
}

// read returns a view of guest memory (valid until the next guest call).
func (v *vm) read(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return v.mem.Read(ptr, size)
}

func (v *vm) readString(ptr, size uint32) (string, bool) {
	b, ok := v.read(ptr, size)
	return string(b), ok
}

func (v *vm) putU32(ptr, val uint32) bool        { return v.mem.WriteUint32Le(ptr, val) }
func (v *vm) putU64(ptr uint32, val uint64) bool { return v.mem.WriteUint64Le(ptr, val) }

// copyOut allocates guest memory for data, copies it there and stores its address and
// size at ptrPtr and sizePtr. Empty data stores (0, 0) without allocating, like
// proxy-wasm-cpp-host's copyToPointerSize.
func (v *vm) copyOut(data []byte, ptrPtr, sizePtr uint32) abi.Status {
	var p uint32
	if len(data) > 0 {
		var ok bool
		if p, ok = v.alloc(uint32(len(data))); !ok || !v.mem.Write(p, data) {
			return abi.StatusInvalidMemoryAccess
		}
	}
	if !v.putU32(ptrPtr, p) || !v.putU32(sizePtr, uint32(len(data))) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

func (v *vm) copyOutString(data string, ptrPtr, sizePtr uint32) abi.Status {
	var p uint32
	if len(data) > 0 {
		var ok bool
		if p, ok = v.alloc(uint32(len(data))); !ok || !v.mem.WriteString(p, data) {
			return abi.StatusInvalidMemoryAccess
		}
	}
	if !v.putU32(ptrPtr, p) || !v.putU32(sizePtr, uint32(len(data))) {
		return abi.StatusInvalidMemoryAccess
	}
	return abi.StatusOK
}

func (v *vm) logf(level abi.LogLevel, format string, args ...any) {
	v.h.log(v.name, v.w.id, level, fmt.Sprintf(format, args...))
}

// setTick sets the root context's tick period (0 stops ticks).
func (v *vm) setTick(period time.Duration) {
	v.stopTick()
	if period <= 0 {
		return
	}
	v.tickCancel = every(v.h.clock, period, func() {
		v.w.run(func() {
			v.onRoot(func() { v.call1(v.fns.onTick, uint64(v.rootID)) })
		})
	})
}

func (v *vm) stopTick() {
	if v.tickCancel != nil {
		v.tickCancel()
		v.tickCancel = nil
	}
}

// streamCtx finds this VM's context id among the worker's streams in flight.
func (v *vm) streamCtx(id uint32) *ctxRef {
	for _, s := range v.w.active {
		if ref := &s.ctxs[v.plugin]; ref.id == id {
			return ref
		}
	}
	return nil
}

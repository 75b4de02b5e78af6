package testenv

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

type vmKey struct{}

// ctxRef is a proxy-wasm context of a VM: the root context (s == nil) or a stream's.
type ctxRef struct {
	id     uint32
	plugin int
	s      *Stream
	// got and sent count the frames (headers, body, trailers) of the current direction
	// this plugin received and passed on; sent < got means it holds frames (stopped).
	got, sent int
	// maps has a bit per stream map/buffer (mReqHeaders...) this context may use now,
	// mirroring Envoy's per-filter request_headers_ etc. pointers.
	maps uint8
	// want: proxy_continue_stream asked to release held frames.
	want bool
	// root: the id of the root context this context belongs to (its own for a root).
	root uint32
	// in: the VM the stream context was created in (a reloaded plugin has a new one).
	in *inst
	// stopAll: the plugin paused its headers and, as Envoy does by default, that
	// became StopAllIterationAndWatermark: later frames of the direction are held
	// before this plugin without calling it until it continues (see Stream.callback).
	stopAll bool
}

// inst is one Wasm VM (module instance) on one worker. Plugins with the same VM key
// (vm_id, vm configuration and module, as proxy-wasm-cpp-host's makeVmKey) share it,
// each with its own root context (its vm).
type inst struct {
	h   *Host
	w   *worker
	key string
	vms []*vm    // by chain index; nil for plugins in other VMs
	env []string // "NAME=value", sorted: the creating plugin's Env
	mod api.Module
	mem api.Memory
	ctx context.Context
	fns struct {
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
	nextID uint32
	cur    *ctxRef

	scratch []byte
	lower   []byte

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

// vm is one plugin (a root context) in its VM on one worker.
type vm struct {
	*inst
	plugin int
	name   string
	vmID   string

	rootID uint32
	root   ctxRef
	config []byte // the plugin configuration of the current root context
	// streams counts the stream contexts in flight of the current root context;
	// draining holds root contexts replaced by Reconfigure until their streams are done.
	streams  int
	draining []*drainRoot

	configuring bool // plugin configuration readable (during proxy_on_configure)

	tickCancel func()
	loaded     time.Time // when the VM was last (re)loaded, for FailReload's backoff
}

// reload replaces the failed VM of plugin idx on worker w (and of the plugins sharing
// it) with a new instance, as Envoy's FAIL_RELOAD does through
// getOrCreateThreadLocalPlugin, if Plugin.ReloadBackoff elapsed since the last load;
// the load time is updated either way. It reports whether plugin idx has a live VM.
// Worker lock held.
func (w *worker) reload(idx int) bool {
	h := w.h
	old := w.vms[idx]
	backoff := h.plugins[idx].ReloadBackoff
	if backoff <= 0 {
		backoff = DefaultReloadBackoff
	}
	now := h.clock.Now()
	if now.Sub(old.loaded) < backoff {
		return false
	}
	for j, o := range old.inst.vms {
		if o == nil {
			continue
		}
		o.stopTick()
		for _, d := range o.draining {
			if d.tickCancel != nil {
				d.tickCancel()
			}
		}
		nv, err := newVM(h.calloutCtx, h, w, j, h.mods[j])
		if err != nil {
			h.log(o.name, w.id, abi.LogCritical, "reloading the failed VM: "+err.Error())
			if nv == nil {
				o.loaded = now
				continue
			}
		}
		if err != nil {
			nv.failed = true
		}
		nv.loaded = now
		w.vms[j] = nv
	}
	_ = old.mod.Close(context.Background())
	return !w.vms[idx].failed
}

// reconfigure starts a new root context with config (see Host.Reconfigure). Worker
// lock held.
func (v *vm) reconfigure(config []byte) error {
	if v.failed {
		return fmt.Errorf("plugin %q worker %d: %w", v.name, v.w.id, errVMFailed)
	}
	old := &drainRoot{ref: v.root, tickCancel: v.tickCancel, streams: v.streams}
	oldConfig := v.config
	v.tickCancel, v.config, v.streams = nil, config, 0
	err := v.startRoot(func(phase string, err error) error {
		return fmt.Errorf("plugin %q worker %d: reconfigure: %s: %v%s", v.name, v.w.id, phase, err, v.h.errorLogs(v.name, v.w.id))
	})
	if err != nil {
		// Envoy rejects the update: the new root context goes, the old one stays.
		if !v.failed {
			v.cur = &v.root
			v.call1(v.fns.onDone, uint64(v.rootID))
			v.call1(v.fns.onDelete, uint64(v.rootID))
		}
		v.stopTick()
		v.root, v.rootID, v.tickCancel, v.config, v.streams = old.ref, old.ref.id, old.tickCancel, oldConfig, old.streams
		return err
	}
	v.draining = append(v.draining, old)
	if old.streams == 0 {
		v.deleteRoot(old.ref.id)
	}
	return nil
}

// deleteRoot ends a draining root context: proxy_on_done, proxy_on_delete, no more
// ticks or callouts.
func (v *vm) deleteRoot(rid uint32) {
	for i, d := range v.draining {
		if d.ref.id != rid {
			continue
		}
		v.draining = append(v.draining[:i], v.draining[i+1:]...)
		if d.tickCancel != nil {
			d.tickCancel()
		}
		if !v.failed {
			ref := d.ref
			v.cur = &ref
			v.call1(v.fns.onDone, uint64(rid))
			if !v.failed {
				v.call1(v.fns.onDelete, uint64(rid))
			}
			v.cur = &v.root
		}
		return
	}
}

// streamDone forgets a stream context of root context rid; a draining root with no
// streams left is deleted.
func (v *vm) streamDone(rid uint32) {
	if rid == v.rootID {
		v.streams--
		return
	}
	for _, d := range v.draining {
		if d.ref.id == rid {
			if d.streams--; d.streams <= 0 {
				v.deleteRoot(rid)
			}
			return
		}
	}
}

// drainRoot is a root context replaced by Host.Reconfigure, kept until its streams end.
type drainRoot struct {
	ref        ctxRef
	tickCancel func()
	streams    int
}

// vmKeyOf is the key under which plugins share a VM on a worker, like cpp-host's
// makeVmKey(vm_id, vm_configuration, code): the same vm_id (empty included), the same
// vm configuration and the same module.
func vmKeyOf(p Plugin) string {
	sum := sha256.Sum256(p.Wasm)
	return p.VMID + "\x00" + string(p.VMConfig) + "\x00" + string(sum[:])
}

// environ is env as WASI's environ_get gives it: "NAME=value" strings, sorted.
func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// newVM starts plugin idx on worker w: in the worker's VM with the plugin's VM key if
// there is one (shared), else in a new instance of cm (_initialize first); then its
// root context: proxy_on_context_create(root, 0), proxy_on_vm_start, proxy_on_configure
// (cpp-host's WasmBase::start, ContextBase::onStart and onConfigure run per root
// context, also in a shared VM).
func newVM(ctx context.Context, h *Host, w *worker, idx int, cm wazero.CompiledModule) (*vm, error) {
	return newVMWith(ctx, h, w, idx, cm, h.plugins[idx].Config)
}

// newVMWith is newVM with the plugin configured with config.
func newVMWith(ctx context.Context, h *Host, w *worker, idx int, cm wazero.CompiledModule, config []byte) (*vm, error) {
	p := h.plugins[idx]
	p.Config = config
	key := h.vmKeys[idx]
	fail := func(phase string, err error) error {
		return fmt.Errorf("plugin %q worker %d: %s: %v%s", p.Name, w.id, phase, err, h.errorLogs(p.Name, w.id))
	}
	for _, o := range w.vms {
		if o != nil && o.key == key && !o.failed {
			v := &vm{inst: o.inst, plugin: idx, name: p.Name, vmID: p.VMID, config: p.Config, loaded: h.clock.Now()}
			v.inst.vms[idx] = v
			return v, v.startRoot(fail)
		}
	}
	r, err := wasmRuntime()
	if err != nil {
		return nil, err
	}
	in := &inst{h: h, w: w, key: key, vms: make([]*vm, len(h.plugins)), env: environ(p.Env),
		httpCalls: map[uint32]context.CancelFunc{}, grpcCalls: map[uint32]*grpcCall{}, metricIDs: map[uint32]*stat{}}
	v := &vm{inst: in, plugin: idx, name: p.Name, vmID: p.VMID, config: p.Config, loaded: h.clock.Now()}
	in.vms[idx] = v
	v.ctx = context.WithValue(context.Background(), vmKey{}, in)
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
	// cpp-host's WasmBase::getFunctions: malloc first, then proxy_on_memory_allocate.
	v.mallocName = "malloc"
	if f(v.mallocName) == nil {
		v.mallocName = "proxy_on_memory_allocate"
	}

	v.root = ctxRef{plugin: idx}
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
	return v, v.startRoot(fail)
}

// startRoot creates the plugin's root context with the next context id of its VM and
// configures it with v.config. Worker lock held.
func (v *vm) startRoot(fail func(string, error) error) error {
	v.nextID++
	v.rootID = v.nextID
	v.root = ctxRef{id: v.rootID, plugin: v.plugin, root: v.rootID}
	v.cur = &v.root
	if _, err := v.callErr(v.fns.onContextCreate, 2, uint64(v.rootID), 0); err != nil {
		return fail("proxy_on_context_create", err)
	}
	ok, err := v.callErr(v.fns.onVMStart, 2, uint64(v.rootID), uint64(len(v.h.plugins[v.plugin].VMConfig)))
	if err != nil {
		return fail("proxy_on_vm_start", err)
	}
	if v.fns.onVMStart != nil && ok == 0 {
		return fail("proxy_on_vm_start", errors.New("returned false"))
	}
	v.configuring = true
	ok, err = v.callErr(v.fns.onConfigure, 2, uint64(v.rootID), uint64(len(v.config)))
	v.configuring = false
	if err != nil {
		return fail("proxy_on_configure", err)
	}
	if v.fns.onConfigure != nil && ok == 0 {
		return fail("proxy_on_configure", errors.New("returned false"))
	}
	v.w.drain()
	return nil
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
// Every plugin sharing the instance fails with it: cpp-host's WasmBase::fail marks the
// Wasm, which the handles of all plugins with its VM key share.
func (v *vm) trap(err error) {
	for _, o := range v.inst.vms {
		if o != nil && o.inst == v.inst {
			o.failed = true
		}
	}
	v.failed = true
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

// onRoot runs a callback of root context rid (tick, queue ready, callout responses)
// with it as the current context: the plugin's current root, or one draining after a
// Reconfigure; a deleted root gets nothing (Envoy cancels a context's callouts).
func (v *vm) onRoot(rid uint32, fn func()) {
	if v.failed || v.h.closed.Load() {
		return
	}
	ref := v.rootRef(rid)
	if ref == nil {
		return
	}
	v.cur = ref
	fn()
}

// rootRef returns root context rid of the plugin (current or draining), or nil.
func (v *vm) rootRef(rid uint32) *ctxRef {
	if rid == v.rootID {
		return &v.root
	}
	for _, d := range v.draining {
		if d.ref.id == rid {
			return &d.ref
		}
	}
	return nil
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

// setTick sets the calling root context's tick period (0 stops ticks). Ticks belong
// to a root context, as in Envoy (Wasm::setTimerPeriod keys them by root context id,
// Wasm::tickHandler calls that root): a root context draining after Reconfigure (or
// being deleted) sets or stops its own tick, never the new root context's.
func (v *vm) setTick(period time.Duration) {
	rid := v.cur.root
	slot := &v.tickCancel
	if rid != v.rootID {
		slot = nil
		for _, d := range v.draining {
			if d.ref.id == rid {
				slot = &d.tickCancel
			}
		}
		if slot == nil {
			return // a root context already deleted: Envoy dropped its timer with it
		}
	}
	if *slot != nil {
		(*slot)()
		*slot = nil
	}
	if period <= 0 {
		return
	}
	*slot = every(v.h.clock, period, func() {
		v.w.run(func() {
			v.onRoot(rid, func() { v.call1(v.fns.onTick, uint64(v.cur.id)) })
		})
	})
}

func (v *vm) stopTick() {
	if v.tickCancel != nil {
		v.tickCancel()
		v.tickCancel = nil
	}
}

// streamCtx finds a context id of this VM (a root context of one of its plugins, or a
// stream context among the worker's streams in flight).
func (v *vm) streamCtx(id uint32) *ctxRef {
	for _, o := range v.vms {
		if o == nil {
			continue
		}
		if o.rootID == id {
			return &o.root
		}
		for _, d := range o.draining {
			if d.ref.id == id {
				return &d.ref
			}
		}
	}
	for _, s := range v.w.active {
		for i, o := range v.vms {
			if o == nil {
				continue
			}
			if ref := &s.ctxs[i]; ref.id == id {
				return ref
			}
		}
	}
	return nil
}

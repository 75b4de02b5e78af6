// Command rawguest is a hand-written proxy-wasm guest for testing the testenv host
// without the guest binding. Its plugin configuration is a space-separated list of
// modes that select behaviours (see the switch in proxy_on_configure).
package main

import (
	"encoding/binary"
	"strconv"
	"strings"
	"unsafe"
)

func main() {}

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg string) uint32

// WASI functions proxy-wasm-cpp-host exports that the Go runtime does not import.

//go:wasmimport wasi_snapshot_preview1 fd_read
func wasiFdRead(fd uint32, iovs uint32, iovsLen uint32, nread *uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_seek
func wasiFdSeek(fd uint32, offset int64, whence uint32, newOffset *uint64) uint32

//go:wasmimport wasi_snapshot_preview1 fd_close
func wasiFdClose(fd uint32) uint32

//go:wasmimport wasi_snapshot_preview1 clock_time_get
func wasiClock(id uint32, precision uint64, t *uint64) uint32

//go:wasmimport wasi_snapshot_preview1 random_get
func wasiRandom(buf *byte, n uint32) uint32

//go:wasmimport wasi_snapshot_preview1 poll_oneoff
func wasiPoll(in *byte, out *byte, n uint32, nevents *uint32) uint32

// wasiResults calls them and reports their errno values.
func wasiResults() string {
	var n uint32
	var off, t uint64
	big := make([]byte, 64<<10+1)
	var sub [48]byte
	sub[8] = 0                                   // clock subscription
	binary.LittleEndian.PutUint64(sub[24:], 1e9) // 1 s relative timeout
	var ev [32]byte
	nevents := uint32(99)
	r := []uint32{wasiFdRead(0, 0, 0, &n), wasiFdSeek(1, 0, 0, &off), wasiFdClose(1),
		wasiClock(0, 0, &t), wasiClock(1, 0, &t), wasiClock(2, 0, &t), wasiClock(3, 0, &t),
		wasiRandom(&big[0], uint32(len(big))), wasiRandom(&big[0], uint32(len(big)-1)),
		wasiPoll(&sub[0], &ev[0], 1, &nevents), nevents}
	var parts []string
	for _, x := range r {
		parts = append(parts, strconv.Itoa(int(x)))
	}
	return strings.Join(parts, ",")
}

//go:wasmimport env proxy_log
func proxyLogRaw(level uint32, ptr uint32, size uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func getHeader(mt uint32, key string, retPtr *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func addHeader(mt uint32, key string, value string) uint32

//go:wasmimport env proxy_replace_header_map_value
func replaceHeader(mt uint32, key string, value string) uint32

//go:wasmimport env proxy_remove_header_map_value
func removeHeader(mt uint32, key string) uint32

//go:wasmimport env proxy_get_header_map_pairs
func getPairs(mt uint32, retPtr *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_send_local_response
func sendLocal(status uint32, details string, body string, headers string, grpc uint32) uint32

//go:wasmimport env proxy_http_call
func httpCall(cluster string, headers string, body string, trailers string, timeout uint32, token *uint32) uint32

//go:wasmimport env proxy_set_effective_context
func setEffective(id uint32) uint32

//go:wasmimport env proxy_continue_stream
func continueStream(t uint32) uint32

//go:wasmimport env proxy_close_stream
func closeStream(t uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func setTick(ms uint32) uint32

//go:wasmimport env proxy_define_metric
func defineMetric(t uint32, name string, id *uint32) uint32

//go:wasmimport env proxy_increment_metric
func incMetric(id uint32, off int64) uint32

//go:wasmimport env proxy_record_metric
func recordMetric(id uint32, v uint64) uint32

//go:wasmimport env proxy_get_property
func getProperty(path string, retPtr *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_property
func setProperty(path string, value string) uint32

//go:wasmimport env proxy_get_buffer_bytes
func getBuffer(t uint32, start uint32, length uint32, retPtr *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func setBuffer(t uint32, start uint32, length uint32, data string) uint32

//go:wasmimport env proxy_register_shared_queue
func registerQueue(name string, token *uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func enqueue(token uint32, data string) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func dequeue(token uint32, retPtr *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_get_shared_data
func getShared(key string, retPtr *uint32, retSize *uint32, cas *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func setShared(key string, value string, cas uint32) uint32

//go:wasmimport env proxy_grpc_call
func grpcCall(service string, svcName string, method string, md string, req string, timeout uint32, token *uint32) uint32

//go:wasmimport env proxy_grpc_stream
func grpcStream(service string, svcName string, method string, md string, token *uint32) uint32

//go:wasmimport env proxy_grpc_send
func grpcSend(token uint32, msg string, eos uint32) uint32

//go:wasmimport env proxy_get_status
func getStatus(code *uint32, retPtr *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func getTime(ret unsafe.Pointer) uint32

// Return slots (single-threaded guest; package-level to avoid escapes).
var (
	retPtr, retSize, retAux uint32
	retU64                  uint64
	allocs                  = map[uintptr][]byte{}
)

// arena serves small host allocations without map bookkeeping (the host copies into
// it right after proxy_on_memory_allocate returns and take() copies out at once).
var arena [1 << 16]byte
var arenaOff uint32

func inArena(p uint32) bool {
	base := uint32(uintptr(unsafe.Pointer(&arena[0])))
	return p >= base && p < base+uint32(len(arena))
}

func take() string {
	if retSize == 0 {
		return ""
	}
	if inArena(retPtr) {
		base := uint32(uintptr(unsafe.Pointer(&arena[0])))
		return string(arena[retPtr-base : retPtr-base+retSize])
	}
	b := allocs[uintptr(retPtr)]
	delete(allocs, uintptr(retPtr))
	return string(b[:retSize])
}

func logf(level uint32, s string) { proxyLog(level, s) }

var modes = map[string]bool{}

// Hot-path modes as plain booleans (map lookups and defers cost in the benchmarks).
var noop, headersMode, lifecycle bool
var pendingCalls = map[uint32]uint32{} // http/grpc token -> stream context id
var queueToken, ticksID, reqID, histID uint32
var rootID uint32

func header(mt uint32, k string) (string, uint32) {
	st := getHeader(mt, k, &retPtr, &retSize)
	if st != 0 {
		return "", st
	}
	return take(), 0
}

func prop(path ...string) (string, uint32) {
	st := getProperty(strings.Join(path, "\x00"), &retPtr, &retSize)
	if st != 0 {
		return "", st
	}
	return take(), 0
}

func guard(name string) {
	if r := recover(); r != nil {
		logf(5, "panic in "+name)
	}
}

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

// mallocCalls counts host allocations through the malloc export, which a host must
// prefer to proxy_on_memory_allocate (cpp-host's WasmBase::getFunctions).
var mallocCalls int

//go:wasmexport malloc
func malloc(size uint32) uint32 {
	mallocCalls++
	return onAlloc(size)
}

//go:wasmexport proxy_on_memory_allocate
func onAlloc(size uint32) uint32 {
	if size <= 1024 {
		if arenaOff+size > uint32(len(arena)) {
			arenaOff = 0
		}
		p := uint32(uintptr(unsafe.Pointer(&arena[arenaOff])))
		arenaOff += size
		return p
	}
	b := make([]byte, size)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	allocs[p] = b
	return uint32(p)
}

//go:wasmexport proxy_on_context_create
func onCreate(id, parent uint32) {
	if noop || headersMode {
		return
	}
	defer guard("create")
	if parent == 0 {
		rootID = id
	}
	if lifecycle {
		logf(2, "create "+strconv.Itoa(int(id))+" "+strconv.Itoa(int(parent)))
	}
}

//go:wasmexport proxy_on_vm_start
func onVMStart(id, size uint32) uint32 {
	defer guard("vm_start")
	return 1
}

//go:wasmexport proxy_on_configure
func onConfigure(id, size uint32) uint32 {
	defer guard("configure")
	if getBuffer(7, 0, size, &retPtr, &retSize) != 0 {
		logf(5, "no plugin config")
		return 0
	}
	for _, m := range strings.Fields(take()) {
		modes[m] = true
	}
	noop, headersMode, lifecycle = modes["noop"], modes["headers"], modes["lifecycle"]
	if modes["fail-config"] {
		logf(5, "rules[2].limit: must be > 0, got -1")
		return 0
	}
	if modes["tick"] {
		setTick(1000)
		defineMetric(0, "ticks", &ticksID)
	}
	if modes["queue"] {
		registerQueue("q", &queueToken)
	}
	defineMetric(0, "requests", &reqID)
	defineMetric(2, "sizes", &histID)
	return 1
}

//go:wasmexport proxy_on_tick
func onTick(id uint32) {
	defer guard("tick")
	incMetric(ticksID, 1)
	getTime(unsafe.Pointer(&retU64))
	logf(2, "tick "+strconv.FormatUint(retU64, 10))
}

//go:wasmexport proxy_on_queue_ready
func onQueueReady(id, token uint32) {
	defer guard("queue")
	for dequeue(token, &retPtr, &retSize) == 0 {
		logf(2, "dequeued "+take())
	}
}

var pairsOut []byte

func encodePairs(kv ...string) string {
	pairsOut = pairsOut[:0]
	pairsOut = binary.LittleEndian.AppendUint32(pairsOut, uint32(len(kv)/2))
	for _, s := range kv {
		pairsOut = binary.LittleEndian.AppendUint32(pairsOut, uint32(len(s)))
	}
	for _, s := range kv {
		pairsOut = append(pairsOut, s...)
		pairsOut = append(pairsOut, 0)
	}
	return string(pairsOut)
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, n, eos uint32) uint32 {
	if noop {
		return 0
	}
	if modes["trap"] {
		trapNow()
	}
	defer guard("request_headers")
	if lifecycle {
		logf(2, "request_headers "+strconv.Itoa(int(id))+" "+strconv.Itoa(int(n))+" "+strconv.Itoa(int(eos)))
	}
	if headersMode {
		header(0, ":path")
		header(0, ":method")
		header(0, "user-agent")
		addHeader(0, "x-added", "1")
		return 0
	}
	incMetric(reqID, 1)
	recordMetric(histID, uint64(n))
	if modes["badptr"] {
		addHeader(0, "x-badptr", strconv.Itoa(int(proxyLogRaw(2, 0xFFFFFF00, 0x1000))))
	}
	if modes["deny"] {
		sendLocal(403, "denied by rawguest", "denied", encodePairs("x-deny", "yes"), 0xFFFFFFFF)
		return 1
	}
	if modes["grpcdeny"] {
		sendLocal(401, "no", "bad token", "", 16)
		return 1
	}
	if modes["echo"] {
		path, _ := header(0, ":path")
		_, st := header(2, ":status")
		addHeader(0, "x-path-seen", path)
		addHeader(0, "x-resp-status", strconv.Itoa(int(st)))
		replaceHeader(0, "X-Replace", "new")
		removeHeader(0, "x-remove")
		_, st = header(0, "missing")
		addHeader(0, "x-missing-status", strconv.Itoa(int(st)))
	}
	if modes["malloc"] {
		before := mallocCalls
		header(0, ":path") // the host copies the value out through an allocation
		addHeader(0, "x-malloc-calls", strconv.Itoa(mallocCalls-before))
	}
	if modes["wasi"] {
		addHeader(0, "x-wasi", wasiResults())
	}
	if modes["props"] {
		for _, p := range [][]string{{"request", "path"}, {"request", "url_path"}, {"request", "method"}, {"request", "headers", "user-agent"},
			{"plugin_name"}, {"plugin_root_id"}, {"plugin_vm_id"}, {"source", "address"}, {"node", "id"}, {"xds", "node", "id"}, {"xds", "node", "metadata", "REGION"},
			{"connection", "mtls"}, {"custom", "thing"}} {
			v, st := prop(p...)
			if st != 0 {
				v = "status:" + strconv.Itoa(int(st))
			}
			addHeader(0, "x-prop-"+strings.Join(p, "."), v)
		}
		v, _ := prop("source", "port")
		if len(v) == 8 {
			addHeader(0, "x-prop-source.port", strconv.FormatUint(binary.LittleEndian.Uint64([]byte(v)), 10))
		}
		setProperty("my.prop", "set-value")
		v, _ = prop("my.prop")
		addHeader(0, "x-prop-my.prop", v)
	}
	if modes["queue"] {
		path, _ := header(0, ":path")
		enqueue(queueToken, path)
	}
	if modes["shared"] {
		_, st := prop("x")
		_ = st
		cur := ""
		retAux = 0
		if getShared("hits", &retPtr, &retSize, &retAux) == 0 {
			cur = take()
		}
		n, _ := strconv.Atoi(cur)
		cas := retAux
		if setShared("hits", strconv.Itoa(n+1), cas) != 0 {
			logf(4, "cas mismatch")
		}
	}
	if modes["callout"] {
		var token uint32
		st := httpCall("svc", encodePairs(":method", "GET", ":path", "/check", ":authority", "svc.local", "x-from", "rawguest"), "", "", 5000, &token)
		if st != 0 {
			addHeader(0, "x-callout-error", strconv.Itoa(int(st)))
			return 0
		}
		pendingCalls[token] = id
		return 1
	}
	if modes["grpc"] || modes["grpcproto"] {
		var token uint32
		svc := "grpcsvc"
		if modes["grpcproto"] {
			// A serialized GrpcService{envoy_grpc{cluster_name: "grpcsvc"}}.
			svc = "\x0a\x09\x0a\x07grpcsvc"
		}
		st := grpcCall(svc, "test.Echo", "Unary", encodePairs("x-md", "v"), "hello", 5000, &token)
		if st != 0 {
			addHeader(0, "x-grpc-error", strconv.Itoa(int(st)))
			return 0
		}
		pendingCalls[token] = id
		return 1
	}
	if modes["grpcstream"] {
		var token uint32
		st := grpcStream("grpcsvc", "test.Echo", "Stream", "", &token)
		if st != 0 {
			addHeader(0, "x-grpc-error", strconv.Itoa(int(st)))
			return 0
		}
		grpcSend(token, "a", 0)
		grpcSend(token, "b", 1)
		pendingCalls[token] = id
		return 1
	}
	if modes["pause"] {
		return 1
	}
	if modes["close"] {
		closeStream(0)
		return 0
	}
	return 0
}

// trapNow panics outside any recover: the Go runtime exits, which traps the VM.
func trapNow() {
	var p *int
	println(*p)
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(id, token, nh, bodySize, nt uint32) {
	defer guard("http_call_response")
	stream, ok := pendingCalls[token]
	if !ok {
		return
	}
	delete(pendingCalls, token)
	status, _ := header(6, ":status")
	body := ""
	if bodySize > 0 && getBuffer(4, 0, bodySize, &retPtr, &retSize) == 0 {
		body = take()
	}
	var code uint32
	getStatus(&code, &retPtr, &retSize)
	msg := take()
	setEffective(stream)
	addHeader(0, "x-callout-status", status)
	addHeader(0, "x-callout-body", body)
	addHeader(0, "x-callout-counts", strconv.Itoa(int(nh))+"/"+strconv.Itoa(int(bodySize))+"/"+strconv.Itoa(int(nt)))
	addHeader(0, "x-callout-get-status", strconv.Itoa(int(code))+":"+msg)
	if status == "403" {
		sendLocal(403, "callout_denied", "callout said no", "", 0xFFFFFFFF)
		return
	}
	continueStream(0)
}

var grpcLog []string

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func onGrpcInitial(id, token, n uint32) {
	defer guard("grpc_initial")
	v, _ := header(4, "x-initial")
	grpcLog = append(grpcLog, "initial:"+v)
}

//go:wasmexport proxy_on_grpc_receive
func onGrpcReceive(id, token, size uint32) {
	defer guard("grpc_receive")
	getBuffer(5, 0, size, &retPtr, &retSize)
	grpcLog = append(grpcLog, "msg:"+take())
	if token%2 == 1 {
		finishGrpc(token)
	}
}

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func onGrpcTrailing(id, token, n uint32) {
	defer guard("grpc_trailing")
	v, _ := header(5, "x-trailer")
	grpcLog = append(grpcLog, "trailing:"+v)
}

//go:wasmexport proxy_on_grpc_close
func onGrpcClose(id, token, status uint32) {
	defer guard("grpc_close")
	var code uint32
	getStatus(&code, &retPtr, &retSize)
	grpcLog = append(grpcLog, "close:"+strconv.Itoa(int(status))+":"+take())
	finishGrpc(token)
}

func finishGrpc(token uint32) {
	stream, ok := pendingCalls[token]
	if !ok {
		return
	}
	delete(pendingCalls, token)
	setEffective(stream)
	addHeader(0, "x-grpc-log", strings.Join(grpcLog, ","))
	grpcLog = nil
	continueStream(0)
}

//go:wasmexport proxy_on_request_body
func onRequestBody(id, size, eos uint32) uint32 {
	defer guard("request_body")
	if lifecycle {
		logf(2, "request_body "+strconv.Itoa(int(id))+" "+strconv.Itoa(int(size))+" "+strconv.Itoa(int(eos)))
	}
	if modes["body"] {
		getBuffer(0, 0, size, &retPtr, &retSize)
		b := take()
		setBuffer(0, 0, size, strings.ToUpper(b))
	}
	if modes["maps"] {
		// Request headers are writable here only while this plugin holds them.
		b := ""
		if getBuffer(0, 0, size, &retPtr, &retSize) == 0 {
			b = take()
		}
		st := replaceHeader(0, "x-in-body", pluginName()+":"+b)
		logf(2, "body-replace "+strconv.Itoa(int(st)))
	}
	if modes["bodypause"] {
		return 1
	}
	return 0
}

//go:wasmexport proxy_on_request_trailers
func onRequestTrailers(id, n uint32) uint32 {
	if lifecycle {
		logf(2, "request_trailers "+strconv.Itoa(int(id))+" "+strconv.Itoa(int(n)))
	}
	return 0
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(id, n, eos uint32) uint32 {
	if noop || headersMode {
		return 0
	}
	defer guard("response_headers")
	if lifecycle {
		logf(2, "response_headers "+strconv.Itoa(int(id))+" "+strconv.Itoa(int(n))+" "+strconv.Itoa(int(eos)))
	}
	addHeader(2, "x-resp-by", pluginName())
	if modes["maps"] {
		_, st := header(0, ":path")
		addHeader(2, "x-reqmap", pluginName()+":"+strconv.Itoa(int(st)))
	}
	if modes["resphold"] {
		return 1
	}
	if modes["deny-response"] {
		sendLocal(502, "resp_denied", "bad upstream", "", 0xFFFFFFFF)
	}
	return 0
}

func pluginName() string {
	v, _ := prop("plugin_name")
	return v
}

//go:wasmexport proxy_on_response_body
func onResponseBody(id, size, eos uint32) uint32 {
	defer guard("response_body")
	if lifecycle {
		logf(2, "response_body "+strconv.Itoa(int(id))+" "+strconv.Itoa(int(size))+" "+strconv.Itoa(int(eos)))
	}
	if modes["body"] {
		setBuffer(1, 0, size, "replaced")
	}
	if modes["maps"] {
		st := replaceHeader(2, "x-resp-in-body", pluginName())
		logf(2, "resp-body-replace "+strconv.Itoa(int(st)))
	}
	return 0
}

//go:wasmexport proxy_on_response_trailers
func onResponseTrailers(id, n uint32) uint32 { return 0 }

//go:wasmexport proxy_on_done
func onDone(id uint32) uint32 {
	if !lifecycle {
		return 1
	}
	defer guard("done")
	{
		logf(2, "done "+strconv.Itoa(int(id)))
	}
	return 1
}

//go:wasmexport proxy_on_log
func onLog(id uint32) {
	if !lifecycle {
		return
	}
	defer guard("log")
	{
		code, _ := prop("response", "code")
		c := uint64(0)
		if len(code) == 8 {
			c = binary.LittleEndian.Uint64([]byte(code))
		}
		logf(2, "log "+strconv.Itoa(int(id))+" "+strconv.FormatUint(c, 10))
	}
}

//go:wasmexport proxy_on_delete
func onDelete(id uint32) {
	if !lifecycle {
		return
	}
	defer guard("delete")
	{
		logf(2, "delete "+strconv.Itoa(int(id)))
	}
}

package testenv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/tetratelabs/wazero/api"
)

// vmOf returns the plugin whose context is current in the calling VM.
func vmOf(ctx context.Context) *vm {
	in, _ := ctx.Value(vmKey{}).(*inst)
	if in == nil {
		return nil
	}
	return in.vms[in.cur.plugin]
}

// guard turns a host call body into a GoModuleFunc that never panics: a bug becomes
// InternalFailure and a log line.
func guard(name string, body func(v *vm, st []uint64) abi.Status) api.GoModuleFunc {
	return func(ctx context.Context, _ api.Module, st []uint64) {
		v := vmOf(ctx)
		if v == nil {
			st[0] = uint64(abi.StatusInternalFailure)
			return
		}
		defer func() {
			if r := recover(); r != nil {
				v.logf(abi.LogError, "testenv: host call %s failed: %v", name, r)
				st[0] = uint64(abi.StatusInternalFailure)
			}
		}()
		st[0] = uint64(body(v, st))
	}
}

func envFn(name string, nparams int, body func(v *vm, st []uint64) abi.Status) hostFunc {
	return hostFunc{module: envModule, name: name, params: i32s(nparams), results: i32s(1), fn: guard(name, body)}
}

func u32(x uint64) uint32 { return uint32(x) }

// lowerKey copies b lowercased into the VM's scratch buffer.
func (v *vm) lowerKey(b []byte) []byte {
	v.lower = v.lower[:0]
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		v.lower = append(v.lower, c)
	}
	return v.lower
}

// headerMap resolves a map type for the effective context, like Envoy's
// Context::getMap/getConstMap. A stream's request/response headers and trailers are
// available to a plugin from the callback that receives them until it lets them go on:
// returning Continue from that callback, or proxy_continue_stream (which, as in Envoy,
// drops the plugin's request maps whichever direction it names). A plugin that stopped
// its headers and then continued from its body or trailers callback keeps them (Envoy
// never clears that pointer): changes made before they went on reach the next plugins,
// later changes are lost. During proxy_on_log request headers, response headers and
// response trailers are readable by every plugin; nothing is writable. Callout maps are
// available during their callback.
func (v *vm) headerMap(mt abi.MapType) (m *[]abi.Pair, mutable bool) {
	ref := v.cur
	s := ref.s
	switch mt {
	case abi.MapRequestHeaders:
		if s != nil {
			if s.stage == stLog {
				return &s.reqHeaders, false
			}
			if ref.maps&mReqHeaders != 0 {
				return &s.reqHeaders, true
			}
		}
	case abi.MapRequestTrailers:
		if s != nil && ref.maps&mReqTrailers != 0 {
			return &s.reqTrailers, s.stage != stLog
		}
		if s != nil && s.addTrailers(ref, stReq) {
			return &s.reqTrailers, true
		}
	case abi.MapResponseHeaders:
		if s != nil {
			if s.stage == stLog {
				if len(s.respHeaders) > 0 {
					return &s.respHeaders, false
				}
			} else if ref.maps&mRespHeaders != 0 {
				return &s.respHeaders, true
			}
		}
	case abi.MapResponseTrailers:
		if s != nil {
			if s.stage == stLog {
				if s.hasRespTrail {
					return &s.respTrailers, false
				}
			} else if ref.maps&mRespTrailers != 0 {
				return &s.respTrailers, true
			} else if s.addTrailers(ref, stResp) {
				return &s.respTrailers, true
			}
		}
	case abi.MapGrpcInitialMetadata:
		if v.grpcInit != nil {
			return &v.grpcInit, false
		}
	case abi.MapGrpcTrailingMetadata:
		if v.grpcTrail != nil {
			return &v.grpcTrail, false
		}
	case abi.MapHttpCallHeaders:
		if v.httpResp != nil {
			return &v.httpResp.headers, false
		}
	case abi.MapHttpCallTrailers:
		if v.httpResp != nil {
			return &v.httpResp.trailers, false
		}
	}
	return nil, false
}

// edited is called after a header map was changed: an edit of the request headers
// clears the stream's route cache, as Envoy's Context::addHeaderMapValue,
// replaceHeaderMapValue, removeHeaderMapValue and setHeaderMapPairs do
// (clearRouteCache on WasmHeaderMapType::RequestHeaders).
func (v *vm) edited(m *[]abi.Pair) {
	if s := v.cur.s; s != nil && m == &s.reqHeaders {
		s.clearRouteCache()
	}
}

func (v *vm) inLogPhase() bool { return v.cur.s != nil && v.cur.s.stage == stLog }

// readKV reads a lowercased key and a value from guest memory into one allocation.
func (v *vm) readKV(kp, ks, vp, vs uint32) (string, string, bool) {
	k, ok := v.read(kp, ks)
	if !ok {
		return "", "", false
	}
	val, ok := v.read(vp, vs)
	if !ok {
		return "", "", false
	}
	var b strings.Builder
	b.Grow(len(k) + len(val))
	b.Write(v.lowerKey(k))
	b.Write(val)
	all := b.String()
	return all[:len(k)], all[len(k):], true
}

func envFuncs() []hostFunc {
	return []hostFunc{
		envFn("proxy_log", 3, func(v *vm, st []uint64) abi.Status {
			msg, ok := v.read(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			lvl := abi.LogLevel(u32(st[0]))
			if lvl > abi.LogCritical {
				return abi.StatusBadArgument
			}
			if lvl >= v.h.logLevel {
				v.h.log(v.name, v.w.id, lvl, string(msg))
			}
			return abi.StatusOK
		}),
		envFn("proxy_get_log_level", 1, func(v *vm, st []uint64) abi.Status {
			if !v.putU32(u32(st[0]), uint32(v.h.logLevel)) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_set_effective_context", 1, func(v *vm, st []uint64) abi.Status {
			id := u32(st[0])
			if ref := v.streamCtx(id); ref != nil {
				v.cur = ref
				return abi.StatusOK
			}
			return abi.StatusBadArgument
		}),
		envFn("proxy_get_property", 4, func(v *vm, st []uint64) abi.Status {
			path, ok := v.read(u32(st[0]), u32(st[1]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			val, status := v.property(path)
			if status != abi.StatusOK {
				return status
			}
			return v.copyOut(val, u32(st[2]), u32(st[3]))
		}),
		envFn("proxy_set_property", 4, func(v *vm, st []uint64) abi.Status {
			path, ok := v.readString(u32(st[0]), u32(st[1]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			val, ok := v.read(u32(st[2]), u32(st[3]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			s := v.cur.s
			if s == nil {
				return abi.StatusNotFound
			}
			if s.props == nil {
				s.props = map[string][]byte{}
			}
			s.props[path] = append([]byte(nil), val...)
			return abi.StatusOK
		}),
		envFn("proxy_continue_stream", 1, func(v *vm, st []uint64) abi.Status {
			return v.continueStream(abi.StreamType(u32(st[0])))
		}),
		envFn("proxy_close_stream", 1, func(v *vm, st []uint64) abi.Status {
			switch abi.StreamType(u32(st[0])) {
			case abi.StreamRequest, abi.StreamResponse:
				if s := v.cur.s; s != nil && s.stage < stLog {
					s.pendingReset = true
					s.requestResume()
				}
				return abi.StatusOK
			case abi.StreamDownstream, abi.StreamUpstream:
				return abi.StatusOK
			}
			return abi.StatusBadArgument
		}),
		envFn("proxy_send_local_response", 8, func(v *vm, st []uint64) abi.Status {
			details, ok1 := v.read(u32(st[1]), u32(st[2]))
			d := strings.Map(func(r rune) rune {
				if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v' {
					return '_'
				}
				return r
			}, string(details))
			body, ok2 := v.read(u32(st[3]), u32(st[4]))
			body = append([]byte(nil), body...)
			hb, ok3 := v.read(u32(st[5]), u32(st[6]))
			if !ok1 || !ok2 || !ok3 {
				return abi.StatusInvalidMemoryAccess
			}
			hdrs, err := abi.DecodePairs(hb)
			if err != nil {
				return abi.StatusBadArgument
			}
			for i := range hdrs {
				hdrs[i].Key = lowerASCII(hdrs[i].Key)
			}
			s := v.cur.s
			if s == nil || (s.local != nil && !s.localDone) || s.stage >= stLog {
				// Root context: Envoy has no stream to answer (no-op). A second
				// reply in the same callback: Envoy runs both deferred
				// sendLocalReply calls; the second finds the first one's complete
				// response and changes nothing, so it is ignored here. A reply while
				// an earlier local reply is still going through the response
				// callbacks replaces it directly, or resets the stream once its
				// headers reached the client (FilterManager::sendLocalReply).
				return abi.StatusOK
			}
			s.local = &localReply{status: int(u32(st[0])), details: d, body: body, headers: hdrs, grpcStatus: u32(st[7])}
			s.localDone = false
			s.requestResume()
			return abi.StatusOK
		}),
		envFn("proxy_get_header_map_value", 5, func(v *vm, st []uint64) abi.Status {
			m, _ := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil {
				if v.inLogPhase() {
					return abi.StatusNotFound
				}
				return abi.StatusBadArgument
			}
			k, ok := v.read(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			key := v.lowerKey(k)
			for _, p := range *m {
				if p.Key == string(key) {
					return v.copyOutString(p.Value, u32(st[3]), u32(st[4]))
				}
			}
			return abi.StatusNotFound
		}),
		envFn("proxy_add_header_map_value", 5, func(v *vm, st []uint64) abi.Status {
			m, mut := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil || !mut {
				return abi.StatusBadArgument
			}
			k, val, ok := v.readKV(u32(st[1]), u32(st[2]), u32(st[3]), u32(st[4]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			addHeader(m, k, val, inlineFor(abi.MapType(u32(st[0]))))
			v.edited(m)
			return abi.StatusOK
		}),
		envFn("proxy_replace_header_map_value", 5, func(v *vm, st []uint64) abi.Status {
			m, mut := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil || !mut {
				return abi.StatusBadArgument
			}
			k, val, ok := v.readKV(u32(st[1]), u32(st[2]), u32(st[3]), u32(st[4]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			replaceHeader(m, k, val)
			v.edited(m)
			return abi.StatusOK
		}),
		envFn("proxy_remove_header_map_value", 3, func(v *vm, st []uint64) abi.Status {
			m, mut := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil || !mut {
				return abi.StatusBadArgument
			}
			k, ok := v.read(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			removeHeader(m, string(v.lowerKey(k)))
			v.edited(m)
			return abi.StatusOK
		}),
		envFn("proxy_get_header_map_pairs", 3, func(v *vm, st []uint64) abi.Status {
			m, _ := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil || len(*m) == 0 {
				return v.copyOut(nil, u32(st[1]), u32(st[2]))
			}
			v.scratch = abi.AppendPairs(v.scratch[:0], *m)
			return v.copyOut(v.scratch, u32(st[1]), u32(st[2]))
		}),
		envFn("proxy_set_header_map_pairs", 3, func(v *vm, st []uint64) abi.Status {
			m, mut := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil || !mut {
				return abi.StatusBadArgument
			}
			b, ok := v.read(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			pairs, err := abi.DecodePairs(b)
			if err != nil {
				return abi.StatusBadArgument
			}
			// Envoy's setHeaderMapPairs: remove everything, then addCopy each pair.
			*m = (*m)[:0]
			inline := inlineFor(abi.MapType(u32(st[0])))
			for _, p := range pairs {
				addHeader(m, lowerASCII(p.Key), p.Value, inline)
			}
			v.edited(m)
			return abi.StatusOK
		}),
		envFn("proxy_get_header_map_size", 2, func(v *vm, st []uint64) abi.Status {
			m, mut := v.headerMap(abi.MapType(u32(st[0])))
			if m == nil || !mut {
				return abi.StatusBadArgument
			}
			n := 0
			for _, p := range *m {
				n += len(p.Key) + len(p.Value)
			}
			if !v.putU32(u32(st[1]), uint32(n)) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_get_buffer_status", 3, func(v *vm, st []uint64) abi.Status {
			b, _, found := v.buffer(abi.BufferType(u32(st[0])))
			if !found {
				return abi.StatusNotFound
			}
			if !v.putU32(u32(st[1]), uint32(len(*b))) || !v.putU32(u32(st[2]), 0) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_get_buffer_bytes", 5, func(v *vm, st []uint64) abi.Status {
			b, _, found := v.buffer(abi.BufferType(u32(st[0])))
			if !found {
				return abi.StatusNotFound
			}
			start, length := uint64(u32(st[1])), uint64(u32(st[2]))
			size := uint64(len(*b))
			if start > size {
				length = 0
			} else if start+length > size {
				length = size - start
			}
			if length == 0 {
				return v.copyOut(nil, u32(st[3]), u32(st[4]))
			}
			return v.copyOut((*b)[start:start+length], u32(st[3]), u32(st[4]))
		}),
		envFn("proxy_set_buffer_bytes", 5, func(v *vm, st []uint64) abi.Status {
			b, mut, found := v.buffer(abi.BufferType(u32(st[0])))
			if !found {
				return abi.StatusNotFound
			}
			if !mut {
				return abi.StatusBadArgument
			}
			data, ok := v.read(u32(st[3]), u32(st[4]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			return setBuffer(b, int(u32(st[1])), int(u32(st[2])), data)
		}),
		envFn("proxy_http_call", 10, func(v *vm, st []uint64) abi.Status {
			return v.httpCall(st)
		}),
		envFn("proxy_grpc_call", 12, func(v *vm, st []uint64) abi.Status {
			return v.grpcCallStart(st)
		}),
		envFn("proxy_grpc_stream", 9, func(v *vm, st []uint64) abi.Status {
			return v.grpcStreamStart(st)
		}),
		envFn("proxy_grpc_send", 4, func(v *vm, st []uint64) abi.Status {
			msg, ok := v.read(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			return v.grpcSend(u32(st[0]), append([]byte(nil), msg...), u32(st[3]) != 0)
		}),
		envFn("proxy_grpc_cancel", 1, func(v *vm, st []uint64) abi.Status {
			return v.grpcCancel(u32(st[0]))
		}),
		envFn("proxy_grpc_close", 1, func(v *vm, st []uint64) abi.Status {
			return v.grpcClose(u32(st[0]))
		}),
		envFn("proxy_set_tick_period_milliseconds", 1, func(v *vm, st []uint64) abi.Status {
			v.setTick(time.Duration(u32(st[0])) * time.Millisecond)
			return abi.StatusOK
		}),
		envFn("proxy_get_current_time_nanoseconds", 1, func(v *vm, st []uint64) abi.Status {
			if !v.putU64(u32(st[0]), uint64(v.h.clock.Now().UnixNano())) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_define_metric", 4, func(v *vm, st []uint64) abi.Status {
			name, ok := v.readString(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			id, status := v.defineMetric(abi.MetricType(u32(st[0])), name)
			if status != abi.StatusOK {
				return status
			}
			if !v.putU32(u32(st[3]), id) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		{module: envModule, name: "proxy_increment_metric", params: []api.ValueType{i32, i64}, results: i32s(1),
			fn: guard("proxy_increment_metric", func(v *vm, st []uint64) abi.Status {
				return v.incrementMetric(u32(st[0]), int64(st[1]))
			})},
		{module: envModule, name: "proxy_record_metric", params: []api.ValueType{i32, i64}, results: i32s(1),
			fn: guard("proxy_record_metric", func(v *vm, st []uint64) abi.Status {
				return v.recordMetric(u32(st[0]), st[1])
			})},
		envFn("proxy_get_metric", 2, func(v *vm, st []uint64) abi.Status {
			val, status := v.getMetric(u32(st[0]))
			if status != abi.StatusOK {
				return status
			}
			if !v.putU64(u32(st[1]), val) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_get_shared_data", 5, func(v *vm, st []uint64) abi.Status {
			key, ok := v.readString(u32(st[0]), u32(st[1]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			val, cas, found := v.h.shared.get(v.vmID, key)
			if !found {
				return abi.StatusNotFound
			}
			if status := v.copyOut(val, u32(st[2]), u32(st[3])); status != abi.StatusOK {
				return status
			}
			if !v.putU32(u32(st[4]), cas) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_set_shared_data", 5, func(v *vm, st []uint64) abi.Status {
			key, ok := v.readString(u32(st[0]), u32(st[1]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			val, ok := v.read(u32(st[2]), u32(st[3]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			return v.h.shared.set(v.vmID, key, val, u32(st[4]))
		}),
		envFn("proxy_register_shared_queue", 3, func(v *vm, st []uint64) abi.Status {
			name, ok := v.readString(u32(st[0]), u32(st[1]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			token := v.h.queues.register(v, name)
			if !v.putU32(u32(st[2]), token) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_resolve_shared_queue", 5, func(v *vm, st []uint64) abi.Status {
			vmID, ok1 := v.readString(u32(st[0]), u32(st[1]))
			name, ok2 := v.readString(u32(st[2]), u32(st[3]))
			if !ok1 || !ok2 {
				return abi.StatusInvalidMemoryAccess
			}
			if vmID == "" {
				// cpp-host's resolve_shared_queue: an empty vm_id means the caller's.
				vmID = v.vmID
			}
			token, found := v.h.queues.resolve(vmID, name)
			if !found {
				return abi.StatusNotFound
			}
			if !v.putU32(u32(st[4]), token) {
				return abi.StatusInvalidMemoryAccess
			}
			return abi.StatusOK
		}),
		envFn("proxy_enqueue_shared_queue", 3, func(v *vm, st []uint64) abi.Status {
			data, ok := v.read(u32(st[1]), u32(st[2]))
			if !ok {
				return abi.StatusInvalidMemoryAccess
			}
			return v.h.queues.enqueue(u32(st[0]), append([]byte(nil), data...))
		}),
		envFn("proxy_dequeue_shared_queue", 3, func(v *vm, st []uint64) abi.Status {
			data, status := v.h.queues.dequeue(u32(st[0]))
			if status != abi.StatusOK {
				return status
			}
			return v.copyOut(data, u32(st[1]), u32(st[2]))
		}),
		envFn("proxy_done", 0, func(v *vm, st []uint64) abi.Status {
			return abi.StatusOK
		}),
		envFn("proxy_get_status", 3, func(v *vm, st []uint64) abi.Status {
			if !v.putU32(u32(st[0]), v.status) {
				return abi.StatusInvalidMemoryAccess
			}
			return v.copyOutString(v.statusMsg, u32(st[1]), u32(st[2]))
		}),
		envFn("proxy_call_foreign_function", 6, func(v *vm, st []uint64) abi.Status {
			return abi.StatusNotFound
		}),
	}
}

// Inline headers of Envoy's header maps (header_map_impl.h INLINE_REQ_HEADERS,
// INLINE_RESP_HEADERS, INLINE_REQ_RESP_HEADERS and the O(1) custom headers common
// extensions register, like authorization): an add to one that exists appends to its
// value with "," (HeaderMapImpl::insertByKey, appendToHeader) instead of adding a
// second entry.
var (
	inlineCommon = []string{"connection", "content-type", "content-length", "keep-alive", "proxy-connection",
		"proxy-status", "x-request-id", "transfer-encoding", "upgrade", "via", "x-envoy-decorator-operation"}
	inlineRequest = append([]string{":authority", ":path", ":method", ":scheme", ":protocol", "user-agent",
		"authorization", "expect", "te", "grpc-timeout", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
		"x-forwarded-client-cert", "x-client-trace-id", "x-envoy-internal", "x-envoy-original-path",
		"x-envoy-expected-rq-timeout-ms", "x-envoy-max-retries", "x-envoy-retry-on", "x-envoy-retry-grpc-on",
		"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-external-address",
		"x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node", "x-envoy-force-trace"}, inlineCommon...)
	inlineResponse = append([]string{":status", "date", "server", "location", "etag", "grpc-status", "grpc-message",
		"x-envoy-upstream-service-time", "x-envoy-overloaded", "x-envoy-ratelimited", "x-envoy-degraded",
		"x-envoy-upstream-canary", "x-envoy-immediate-health-check-fail", "x-envoy-upstream-healthchecked-cluster"}, inlineCommon...)
)

// inlineFor returns the inline header names of a map type (nil: none, e.g. callouts).
func inlineFor(mt abi.MapType) []string {
	switch mt {
	case abi.MapRequestHeaders:
		return inlineRequest
	case abi.MapResponseHeaders:
		return inlineResponse
	}
	return nil
}

// addHeader is Envoy's HeaderMapImpl::addCopy: an inline header that exists gets
// ",value" appended; anything else is a new entry, pseudo-headers after the last
// pseudo-header, others at the end (HeaderList::insert).
func addHeader(m *[]abi.Pair, k, val string, inline []string) {
	if slices.Contains(inline, k) {
		for i := range *m {
			if (*m)[i].Key == k {
				(*m)[i].Value += "," + val
				return
			}
		}
	}
	insertHeader(m, abi.Pair{Key: k, Value: val})
}

func insertHeader(m *[]abi.Pair, p abi.Pair) {
	if strings.HasPrefix(p.Key, ":") {
		i := 0
		for i < len(*m) && strings.HasPrefix((*m)[i].Key, ":") {
			i++
		}
		*m = slices.Insert(*m, i, p)
		return
	}
	*m = append(*m, p)
}

// replaceHeader is Envoy's setCopy (http_set_copy_replace_all_headers, on by default):
// remove every entry of k, then add one, which therefore moves to the end (or after
// the pseudo-headers).
func replaceHeader(m *[]abi.Pair, k, val string) {
	removeHeader(m, k)
	insertHeader(m, abi.Pair{Key: k, Value: val})
}

func removeHeader(m *[]abi.Pair, k string) {
	out := (*m)[:0]
	for _, p := range *m {
		if p.Key != k {
			out = append(out, p)
		}
	}
	*m = out
}

var emptyBuf []byte

// buffer resolves a buffer type for the effective context: the body (mutable) from the
// plugin's body callback until it lets the body go on (Continue, or for the request
// proxy_continue_stream), else an empty body;
// callout buffers during their callback; configurations (plugin configuration only
// during proxy_on_configure, as in Envoy).
func (v *vm) buffer(bt abi.BufferType) (b *[]byte, mutable, found bool) {
	ref := v.cur
	s := ref.s
	switch bt {
	case abi.BufferRequestBody:
		if s != nil && ref.maps&mReqBody != 0 && s.stage == stReq {
			if b := s.bodyBuffer(ref); b != nil {
				return b, true, true
			}
		}
		e := emptyBuf[:0:0]
		return &e, false, true
	case abi.BufferResponseBody:
		if s != nil && ref.maps&mRespBody != 0 && s.stage == stResp {
			if b := s.bodyBuffer(ref); b != nil {
				return b, true, true
			}
		}
		e := emptyBuf[:0:0]
		return &e, false, true
	case abi.BufferHttpCallBody:
		if v.httpResp != nil {
			return &v.httpResp.body, false, true
		}
	case abi.BufferGrpcReceive:
		if v.grpcInRecv {
			return &v.grpcRecv, false, true
		}
		e := emptyBuf[:0:0]
		return &e, false, true
	case abi.BufferVMConfiguration:
		c := v.h.plugins[v.plugin].VMConfig
		return &c, false, true
	case abi.BufferPluginConfig:
		if v.configuring {
			c := v.config
			return &c, false, true
		}
	}
	return nil, false, false
}

// setBuffer applies Envoy's Buffer::copyFrom rules: start 0 drains length bytes (at
// most all) and prepends data, so (0, 0) prepends, (0, n < size) replaces the first n
// bytes and (0, >= size) replaces everything; start >= size appends; anything else (a
// splice in the middle) is BadArgument.
func setBuffer(b *[]byte, start, length int, data []byte) abi.Status {
	size := len(*b)
	switch {
	case start == 0 && length < size:
		nb := make([]byte, 0, len(data)+size-length)
		*b = append(append(nb, data...), (*b)[length:]...)
	case start == 0:
		*b = append([]byte(nil), data...)
	case start >= size && start != 0:
		nb := make([]byte, 0, len(data)+size)
		*b = append(append(nb, *b...), data...)
	default:
		return abi.StatusBadArgument
	}
	return abi.StatusOK
}

// continueStream implements proxy_continue_stream: the calling plugin releases the
// frames it holds in the named direction (Envoy's continueDecoding/continueEncoding),
// once the current guest call returns. Called inside the callback that then returns
// Pause, it cancels the pause. Like Envoy it also drops the plugin's request maps. A
// plugin that holds nothing, or a direction that is not running, makes it a no-op.
func (v *vm) continueStream(t abi.StreamType) abi.Status {
	ref := v.cur
	s := ref.s
	switch t {
	case abi.StreamRequest, abi.StreamResponse:
	case abi.StreamDownstream:
		return abi.StatusOK
	case abi.StreamUpstream:
		return abi.StatusUnimplemented
	default:
		return abi.StatusBadArgument
	}
	if s == nil {
		return abi.StatusOK
	}
	ref.maps &^= mReq
	if (t == abi.StreamRequest && s.stage != stReq) || (t == abi.StreamResponse && s.stage != stResp) {
		return abi.StatusOK
	}
	if s.inCall && s.callee == ref.plugin {
		s.continued = true
		return abi.StatusOK
	}
	if ref.sent < ref.got {
		ref.want = true
		s.requestResume()
	}
	return abi.StatusOK
}

var _ = fmt.Sprintf

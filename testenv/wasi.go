package testenv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// WASI errno values used here.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNosys   = 52
)

var monoStart = time.Now()

func wasiFn(name string, nparams int, body func(v *vm, mod api.Module, st []uint64) uint32) hostFunc {
	return hostFunc{module: wasiModule, name: name, params: i32s(nparams), results: i32s(1),
		fn: func(ctx context.Context, mod api.Module, st []uint64) {
			v := vmOf(ctx)
			if v == nil {
				st[0] = errnoFault
				return
			}
			defer func() {
				if r := recover(); r != nil {
					v.logf(abi.LogError, "testenv: wasi call %s failed: %v", name, r)
					st[0] = errnoFault
				}
			}()
			st[0] = uint64(body(v, mod, st))
		}}
}

func zeroSizes(v *vm, _ api.Module, st []uint64) uint32 {
	if !v.putU32(u32(st[0]), 0) || !v.putU32(u32(st[1]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

// wasiFuncs is the WASI subset proxy-wasm-cpp-host implements, with its behaviour:
// no arguments, environment or preopened directories; stdout and stderr become log
// lines (info and error); only stdio exists as file descriptors.
func wasiFuncs() []hostFunc {
	return []hostFunc{
		wasiFn("args_sizes_get", 2, zeroSizes),
		wasiFn("args_get", 2, func(*vm, api.Module, []uint64) uint32 { return errnoSuccess }),
		wasiFn("environ_sizes_get", 2, zeroSizes),
		wasiFn("environ_get", 2, func(*vm, api.Module, []uint64) uint32 { return errnoSuccess }),
		{module: wasiModule, name: "clock_time_get", params: []api.ValueType{i32, i64, i32}, results: i32s(1),
			fn: func(ctx context.Context, _ api.Module, st []uint64) {
				v := vmOf(ctx)
				if v == nil {
					st[0] = errnoFault
					return
				}
				var t int64
				switch u32(st[0]) {
				case 0: // realtime
					t = v.h.clock.Now().UnixNano()
				case 1, 2, 3: // monotonic, process and thread CPU time
					t = int64(time.Since(monoStart)) + 1
				default:
					st[0] = errnoInval
					return
				}
				if !v.putU64(u32(st[2]), uint64(t)) {
					st[0] = errnoFault
					return
				}
				st[0] = errnoSuccess
			}},
		wasiFn("random_get", 2, func(v *vm, _ api.Module, st []uint64) uint32 {
			buf, ok := v.read(u32(st[0]), u32(st[1]))
			if !ok {
				return errnoFault
			}
			_, _ = rand.Read(buf)
			return errnoSuccess
		}),
		wasiFn("fd_write", 4, func(v *vm, _ api.Module, st []uint64) uint32 {
			fd := u32(st[0])
			if fd != 1 && fd != 2 {
				return errnoBadf
			}
			iovs, n := u32(st[1]), u32(st[2])
			var b strings.Builder
			for i := uint32(0); i < n; i++ {
				iov, ok := v.read(iovs+8*i, 8)
				if !ok {
					return errnoFault
				}
				p, l := binary.LittleEndian.Uint32(iov), binary.LittleEndian.Uint32(iov[4:])
				data, ok := v.read(p, l)
				if !ok {
					return errnoFault
				}
				b.Write(data)
			}
			level := abi.LogInfo
			if fd == 2 {
				level = abi.LogError
			}
			msg := strings.TrimRight(b.String(), "\n")
			if msg != "" {
				v.h.log(v.name, v.w.id, level, msg)
			}
			if !v.putU32(u32(st[3]), uint32(b.Len())) {
				return errnoFault
			}
			return errnoSuccess
		}),
		wasiFn("fd_read", 4, func(*vm, api.Module, []uint64) uint32 { return errnoBadf }),
		wasiFn("fd_close", 1, func(*vm, api.Module, []uint64) uint32 { return errnoBadf }),
		{module: wasiModule, name: "fd_seek", params: []api.ValueType{i32, i64, i32, i32}, results: i32s(1),
			fn: func(_ context.Context, _ api.Module, st []uint64) { st[0] = errnoBadf }},
		// fd_fdstat_get answers like proxy-wasm-cpp-host: stdout and stderr only, file
		// type and flags zero (in particular no FDFLAG_NONBLOCK, so Go's os does not
		// register them with its poller), rights_base FD_WRITE.
		wasiFn("fd_fdstat_get", 2, func(v *vm, _ api.Module, st []uint64) uint32 {
			fd := u32(st[0])
			if fd != 1 && fd != 2 {
				return errnoBadf
			}
			var stat [24]byte
			stat[8] = 64 // fs_rights_base: FD_WRITE
			if !v.mem.Write(u32(st[1]), stat[:]) {
				return errnoFault
			}
			return errnoSuccess
		}),
		wasiFn("fd_fdstat_set_flags", 2, func(*vm, api.Module, []uint64) uint32 { return errnoNosys }),
		wasiFn("fd_prestat_get", 2, func(*vm, api.Module, []uint64) uint32 { return errnoBadf }),
		wasiFn("fd_prestat_dir_name", 3, func(*vm, api.Module, []uint64) uint32 { return errnoBadf }),
		wasiFn("sched_yield", 0, func(*vm, api.Module, []uint64) uint32 { return errnoSuccess }),
		wasiFn("poll_oneoff", 4, pollOneoff),
		{module: wasiModule, name: "proc_exit", params: i32s(1), results: nil,
			fn: func(_ context.Context, _ api.Module, st []uint64) {
				panic(sys.NewExitError(u32(st[0])))
			}},
	}
}

// pollOneoff waits for the earliest clock subscription (real time) and reports every
// subscription as ready; fd subscriptions complete at once.
func pollOneoff(v *vm, _ api.Module, st []uint64) uint32 {
	if v.h.opts.PollOneoffENOSYS {
		return errnoNosys
	}
	in, out, n, neventsPtr := u32(st[0]), u32(st[1]), u32(st[2]), u32(st[3])
	if n == 0 {
		return errnoInval
	}
	subs, ok := v.read(in, 48*n)
	if !ok {
		return errnoFault
	}
	subs = append([]byte(nil), subs...)
	var wait time.Duration = -1
	for i := uint32(0); i < n; i++ {
		sub := subs[48*i:]
		if sub[8] == 0 { // clock
			timeout := binary.LittleEndian.Uint64(sub[24:])
			flags := binary.LittleEndian.Uint16(sub[40:])
			d := time.Duration(timeout)
			if flags&1 != 0 { // absolute
				d = time.Duration(int64(timeout) - (int64(time.Since(monoStart)) + 1))
			}
			if d < 0 {
				d = 0
			}
			if wait < 0 || d < wait {
				wait = d
			}
		}
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	var ev [32]byte
	for i := uint32(0); i < n; i++ {
		sub := subs[48*i:]
		clear(ev[:])
		copy(ev[:8], sub[:8])
		ev[10] = sub[8]
		if !v.mem.Write(out+32*i, ev[:]) {
			return errnoFault
		}
	}
	if !v.putU32(neventsPtr, n) {
		return errnoFault
	}
	return errnoSuccess
}

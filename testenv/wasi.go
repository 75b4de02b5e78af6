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
	errnoNotsup  = 58
)

// randomGetMax is proxy-wasm-cpp-host's PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES
// (include/proxy-wasm/limits.h): a larger random_get is EINVAL.
const randomGetMax = 64 << 10

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

// wasiFuncs is the WASI subset proxy-wasm-cpp-host implements (src/exports.cc,
// wasi_unstable_*), with its results: no arguments, environment or preopened
// directories; stdout and stderr become log lines (info and error); fd_fdstat_get
// knows stdout and stderr only; fd_read is ENOSYS; fd_seek and fd_close succeed without
// doing anything (cpp-host logs them through Context::error, a trace line in Envoy);
// clock_time_get knows the realtime and monotonic clocks (ENOTSUP for the CPU-time
// ones); random_get refuses more than 64 KiB (EINVAL); poll_oneoff returns at once
// with no events (see pollOneoff).
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
				case 1: // monotonic
					t = int64(time.Since(monoStart)) + 1
				default: // process and thread CPU time are not supported
					st[0] = errnoNotsup
					return
				}
				if !v.putU64(u32(st[2]), uint64(t)) {
					st[0] = errnoFault
					return
				}
				st[0] = errnoSuccess
			}},
		wasiFn("random_get", 2, func(v *vm, _ api.Module, st []uint64) uint32 {
			if u32(st[1]) > randomGetMax {
				return errnoInval
			}
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
		wasiFn("fd_read", 4, func(*vm, api.Module, []uint64) uint32 { return errnoNosys }),
		wasiFn("fd_close", 1, func(v *vm, _ api.Module, _ []uint64) uint32 {
			v.logf(abi.LogTrace, "wasi_unstable fd_close")
			return errnoSuccess
		}),
		{module: wasiModule, name: "fd_seek", params: []api.ValueType{i32, i64, i32, i32}, results: i32s(1),
			fn: func(ctx context.Context, _ api.Module, st []uint64) {
				if v := vmOf(ctx); v != nil {
					v.logf(abi.LogTrace, "wasi_unstable fd_seek")
				}
				st[0] = errnoSuccess
			}},
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

// pollOneoff answers like proxy-wasm-cpp-host after its #533: success at once, no
// events (nevents 0), whatever the subscriptions; the Go runtime's usleep and netpoll
// accept that. Options.PollOneoffENOSYS answers ENOSYS instead, like cpp-host before
// #533.
func pollOneoff(v *vm, _ api.Module, st []uint64) uint32 {
	if v.h.opts.PollOneoffENOSYS {
		return errnoNosys
	}
	if !v.putU32(u32(st[3]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

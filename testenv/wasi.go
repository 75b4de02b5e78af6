package testenv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/tetratelabs/wazero/api"
)

// WASI errno values used here.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNoent   = 44
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

// wasiFnT is wasiFn with explicit parameter types (WASI calls with i64 parameters).
func wasiFnT(name string, params []api.ValueType, body func(v *vm, st []uint64) uint32) hostFunc {
	f := wasiFn(name, 0, func(v *vm, _ api.Module, st []uint64) uint32 { return body(v, st) })
	f.params = params
	return f
}

// stdio reports whether fd is stdout or stderr, the only descriptors cpp-host knows.
func stdio(fd uint32) bool { return fd == 1 || fd == 2 }

// constErrno answers errno whatever the arguments.
func constErrno(name string, errno uint32, params ...api.ValueType) hostFunc {
	return wasiFnT(name, params, func(*vm, []uint64) uint32 { return errno })
}

// stdioErrno answers 0 for stdout/stderr (first argument), EBADF for anything else.
func stdioErrno(name string, params ...api.ValueType) hostFunc {
	return wasiFnT(name, params, func(_ *vm, st []uint64) uint32 {
		if !stdio(u32(st[0])) {
			return errnoBadf
		}
		return errnoSuccess
	})
}

// wasiFuncs533 are the WASI calls proxy-wasm-cpp-host added in #533 (52a0291's
// src/exports.cc, wasi_unstable_*), with cpp-host's results and signatures. No file
// system or sockets: hints and syncs on stdout/stderr succeed, file and socket calls
// answer ENOTSUP (ENOSYS for fd_pread, 20 for fd_readdir, BADF for
// fd_filestat_get, NOENT for path_open, which is older), and out-parameters are zeroed
// as cpp-host zeroes them. path_link and path_symlink take one parameter fewer than
// WASI preview1 (no new_path_len), as cpp-host declares them: a module importing the
// preview1 shape fails to link on both hosts.
func wasiFuncs533() []hostFunc {
	return []hostFunc{
		wasiFnT("clock_res_get", i32s(2), func(v *vm, st []uint64) uint32 {
			if id := u32(st[0]); id != 0 && id != 1 {
				return errnoNotsup
			}
			if !v.putU64(u32(st[1]), 1) {
				return errnoFault
			}
			return errnoSuccess
		}),
		constErrno("fd_advise", errnoSuccess, i32, i64, i64, i32),
		stdioErrno("fd_allocate", i32, i64, i64),
		stdioErrno("fd_datasync", i32),
		stdioErrno("fd_fdstat_set_rights", i32, i64, i64),
		constErrno("fd_filestat_get", errnoBadf, i32, i32),
		stdioErrno("fd_filestat_set_size", i32, i64),
		stdioErrno("fd_filestat_set_times", i32, i64, i64, i32),
		constErrno("fd_pread", errnoNosys, i32, i32, i32, i64, i32),
		wasiFnT("fd_pwrite", []api.ValueType{i32, i32, i32, i64, i32}, func(v *vm, st []uint64) uint32 {
			// fd_write's path (cpp-host's writevImpl); the offset is ignored.
			return v.writev(u32(st[0]), u32(st[1]), u32(st[2]), u32(st[4]))
		}),
		wasiFnT("fd_readdir", []api.ValueType{i32, i32, i32, i64, i32}, func(v *vm, st []uint64) uint32 {
			if !v.putU32(u32(st[4]), 0) {
				return errnoFault
			}
			// cpp-host returns 20 with the comment "ENOTDIR"; in WASI preview1 20 is
			// EEXIST (ENOTDIR is 54). What matters is that it is not success.
			return 20
		}),
		wasiFnT("fd_renumber", i32s(2), func(_ *vm, st []uint64) uint32 {
			if !stdio(u32(st[0])) || !stdio(u32(st[1])) {
				return errnoBadf
			}
			return errnoNotsup
		}),
		stdioErrno("fd_sync", i32),
		wasiFnT("fd_tell", i32s(2), func(v *vm, st []uint64) uint32 {
			if !stdio(u32(st[0])) {
				return errnoBadf
			}
			if !v.putU64(u32(st[1]), 0) {
				return errnoFault
			}
			return errnoSuccess
		}),
		constErrno("path_create_directory", errnoNotsup, i32s(3)...),
		constErrno("path_filestat_get", errnoNotsup, i32s(5)...),
		constErrno("path_filestat_set_times", errnoNotsup, i32, i32, i32, i32, i64, i64, i32),
		constErrno("path_link", errnoNotsup, i32s(6)...),
		wasiFnT("path_readlink", i32s(6), func(v *vm, st []uint64) uint32 {
			if !v.putU32(u32(st[5]), 0) {
				return errnoFault
			}
			return errnoNotsup
		}),
		constErrno("path_remove_directory", errnoNotsup, i32s(3)...),
		constErrno("path_rename", errnoNotsup, i32s(6)...),
		constErrno("path_symlink", errnoNotsup, i32s(4)...),
		constErrno("path_unlink_file", errnoNotsup, i32s(3)...),
		wasiFnT("sock_accept", i32s(3), func(v *vm, st []uint64) uint32 {
			if !v.putU64(u32(st[2]), 0) { // cpp-host writes a 64-bit zero here
				return errnoFault
			}
			return errnoNotsup
		}),
		wasiFnT("sock_recv", i32s(6), func(v *vm, st []uint64) uint32 {
			if !v.putU32(u32(st[4]), 0) || !v.mem.WriteUint16Le(u32(st[5]), 0) {
				return errnoFault
			}
			return errnoNotsup
		}),
		wasiFnT("sock_send", i32s(5), func(v *vm, st []uint64) uint32 {
			if !v.putU32(u32(st[4]), 0) {
				return errnoFault
			}
			return errnoNotsup
		}),
		constErrno("sock_shutdown", errnoNotsup, i32s(2)...),
		constErrno("path_open", errnoNoent, i32, i32, i32, i32, i32, i64, i64, i32, i32),
	}
}

// environSizesGet writes the number of environment strings and the bytes they take
// with their NUL terminators (cpp-host's wasi_unstable_environ_sizes_get).
func environSizesGet(v *vm, _ api.Module, st []uint64) uint32 {
	size := 0
	for _, e := range v.env {
		size += len(e) + 1
	}
	if !v.putU32(u32(st[0]), uint32(len(v.env))) || !v.putU32(u32(st[1]), uint32(size)) {
		return errnoFault
	}
	return errnoSuccess
}

// environGet writes a pointer to each environment string into the array at st[0] and
// the strings, each NUL-terminated, one after the other from st[1]
// (cpp-host's wasi_unstable_environ_get; pointers are 32-bit words).
func environGet(v *vm, _ api.Module, st []uint64) uint32 {
	array, buf := u32(st[0]), u32(st[1])
	for _, e := range v.env {
		if !v.putU32(array, buf) || !v.mem.Write(buf, append([]byte(e), 0)) {
			return errnoFault
		}
		array += 4
		buf += uint32(len(e)) + 1
	}
	return errnoSuccess
}

func zeroSizes(v *vm, _ api.Module, st []uint64) uint32 {
	if !v.putU32(u32(st[0]), 0) || !v.putU32(u32(st[1]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

// wasiFuncs is the WASI subset proxy-wasm-cpp-host implements (src/exports.cc,
// wasi_unstable_*), with its results: no arguments or preopened directories; the
// environment of Plugin.Env (cpp-host's WasmBase::envs, from Envoy's
// vm_config.environment_variables); stdout and stderr become log lines (info and error); fd_fdstat_get
// knows stdout and stderr only; fd_read is ENOSYS; fd_seek and fd_close succeed without
// doing anything (cpp-host logs them through Context::error, a trace line in Envoy);
// clock_time_get knows the realtime and monotonic clocks (ENOTSUP for the CPU-time
// ones); random_get refuses more than 64 KiB (EINVAL); poll_oneoff returns at once
// with no events (see pollOneoff); and the calls of wasiFuncs533.
func wasiFuncs() []hostFunc {
	return append(wasiFuncs533(), []hostFunc{
		wasiFn("args_sizes_get", 2, zeroSizes),
		wasiFn("args_get", 2, func(*vm, api.Module, []uint64) uint32 { return errnoSuccess }),
		wasiFn("environ_sizes_get", 2, environSizesGet),
		wasiFn("environ_get", 2, environGet),
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
			return v.writev(u32(st[0]), u32(st[1]), u32(st[2]), u32(st[3]))
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
		// proc_exit does not end the VM: cpp-host's wasi_unstable_proc_exit only calls
		// ContextBase::error("wasi_unstable proc_exit"), which Envoy's Context::error
		// logs at trace level, and returns to the guest (the cpp-host differential
		// TestFailurePolicy shows it on every era). A Go runtime that exits after a
		// fatal error traps right after (unreachable), and that fails the VM.
		{module: wasiModule, name: "proc_exit", params: i32s(1), results: nil,
			fn: func(ctx context.Context, _ api.Module, _ []uint64) {
				if v := vmOf(ctx); v != nil {
					v.h.log(v.name, v.w.id, abi.LogTrace, "wasi_unstable proc_exit")
				}
			}},
	}...)
}

// writev is cpp-host's writevImpl (fd_write, fd_pwrite): stdout and stderr become log
// lines (info and error) without their trailing newline; other descriptors are EBADF.
func (v *vm) writev(fd, iovs, n, nwritten uint32) uint32 {
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
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
	// cpp-host's writevImpl: a write of n > 0 bytes is one log line without its one
	// trailing newline (a lone "\n" is an empty line).
	if b.Len() > 0 {
		v.h.log(v.name, v.w.id, level, strings.TrimSuffix(b.String(), "\n"))
	}
	if !v.putU32(nwritten, uint32(b.Len())) {
		return errnoFault
	}
	return errnoSuccess
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

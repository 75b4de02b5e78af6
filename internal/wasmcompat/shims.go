package wasmcompat

// WASIModule is the import module of the WASI calls the rewrite replaces.
const WASIModule = "wasi_snapshot_preview1"

// shim is a WASI import the rewrite replaces by a function inside the module, with the
// answer proxy-wasm-cpp-host gives since #533 (52a0291, src/exports.cc): the same
// results, the same memory writes, the same errno when the pointer is out of bounds.
type shim struct {
	name string
	typ  funcType
	// body is the function body: locals (none) and code.
	body []byte
	// why says what older hosts do with the import (docs, errors).
	why string
}

// inBounds32 pushes (i32) whether the n bytes at the address in local idx lie inside
// memory 0: addr + n <= memory.size * 64 KiB, computed in i64 (no wrap-around).
func inBounds32(idx, n byte) []byte {
	return []byte{
		0x20, idx, // local.get idx
		0xad,    // i64.extend_i32_u
		0x42, n, // i64.const n (n < 64)
		0x7c,       // i64.add
		0x3f, 0x00, // memory.size 0
		0xad,       // i64.extend_i32_u
		0x42, 0x10, // i64.const 16
		0x86, // i64.shl
		0x58, // i64.le_u
	}
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var (
	i32x2 = []byte{valI32, valI32}
	i32x4 = []byte{valI32, valI32, valI32, valI32}
	i32x1 = []byte{valI32}
)

// shims lists what the rewrite replaces, in the order the new functions are appended.
// Errno values are WASI's: 8 EBADF, 21 EFAULT, 52 ENOSYS.
var shims = []shim{
	{
		name: "sched_yield",
		typ:  funcType{results: i32x1},
		// return 0 (single-threaded: yielding is vacuously done)
		body: []byte{0x00, 0x41, 0x00, 0x0b},
		why:  "missing before cpp-host #427 (Envoy ≤ 1.32)",
	},
	{
		name: "poll_oneoff",
		typ:  funcType{params: i32x4, results: i32x1},
		// (in, out, nsubscriptions, nevents_ptr): no events. If nevents_ptr is in bounds,
		// store 0 there and return 0, else return EFAULT.
		body: concat([]byte{0x00},
			inBounds32(3, 4),
			[]byte{
				0x04, valI32, // if (result i32)
				0x20, 0x03, 0x41, 0x00, 0x36, 0x02, 0x00, // i32.store [nevents_ptr] = 0
				0x41, 0x00, // i32.const 0
				0x05,       // else
				0x41, 0x15, // i32.const 21 (EFAULT)
				0x0b, // end
				0x0b, // end
			}),
		why: "missing before cpp-host #427 (Envoy ≤ 1.32), answers ENOSYS before #533 (Envoy 1.33–1.38), which the Go runtime treats as fatal; restricted during proxy_on_memory_allocate before #533",
	},
	{
		name: "fd_fdstat_set_flags",
		typ:  funcType{params: i32x2, results: i32x1},
		// (fd, flags): no flag has an effect in proxy-wasm: ENOSYS, as every cpp-host
		// that has the call answers (Go's syscall init ignores the result).
		body: []byte{0x00, 0x41, 0x34, 0x0b},
		why:  "missing before cpp-host #427 (Envoy ≤ 1.32); called by Go's syscall package during _initialize",
	},
	{
		name: "fd_fdstat_get",
		typ:  funcType{params: i32x2, results: i32x1},
		// (fd, stat_ptr): EBADF unless fd is 1 or 2; for those, the 24-byte fdstat
		// {filetype 0, flags 0, rights_base FD_WRITE (64), rights_inheriting 0} when it
		// fits in memory (cpp-host ignores a failed write), then 0.
		body: concat([]byte{0x00,
			0x20, 0x00, 0x41, 0x01, 0x46, // fd == 1
			0x20, 0x00, 0x41, 0x02, 0x46, // fd == 2
			0x72, 0x45, // or, eqz
			0x04, 0x40, 0x41, 0x08, 0x0f, 0x0b, // if: return 8 (EBADF)
		},
			inBounds32(1, 24),
			[]byte{
				0x04, 0x40, // if
				0x20, 0x01, 0x42, 0x00, 0x37, 0x03, 0x00, // i64.store [stat_ptr] = 0
				0x20, 0x01, 0x42, 0xc0, 0x00, 0x37, 0x03, 0x08, // i64.store [stat_ptr+8] = 64
				0x20, 0x01, 0x42, 0x00, 0x37, 0x03, 0x10, // i64.store [stat_ptr+16] = 0
				0x0b,       // end
				0x41, 0x00, // i32.const 0
				0x0b, // end
			}),
		why: "restricted during _initialize before cpp-host #427 (Envoy ≤ 1.32, enforced by the V8 engine), where Go's syscall package calls it; the same answer on every era",
	},
}

// Shims lists the WASI imports the rewrite replaces, with what older hosts do with
// each (for docs and the CLI's report).
func Shims() [][2]string {
	var out [][2]string
	for _, s := range shims {
		out = append(out, [2]string{s.name, s.why})
	}
	return out
}

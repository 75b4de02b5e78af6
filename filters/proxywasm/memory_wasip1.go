//go:build wasip1

package proxywasm

import "unsafe"

// Guest memory handed to the host.
//
// The host returns variable-size results (header values, bodies, properties) by calling
// proxy_on_memory_allocate from inside a host call and writing into the returned block
// after that export has returned. Those blocks come from a bump arena that every host
// call wrapper resets before it calls the host and copies out of right after, so a
// result costs no Go allocation beyond the copy the caller keeps. Blocks that do not fit
// the arena are allocated on the heap and kept referenced in overflow until the next
// reset, so the GC cannot free them before the wrapper has claimed them (Go's GC does
// not move heap objects, so their addresses stay valid).
//
// Caveat: the guest is single-threaded, and a host call never re-enters a wrapper
// between allocating a result and returning it, so one arena is enough.

const arenaSize = 64 << 10

var (
	arena     = make([]byte, arenaSize)
	arenaBase = uint32(uintptr(unsafe.Pointer(&arena[0])))
	arenaUsed uint32
	overflow  [][]byte

	// Out-parameter slots for host calls: package-level so taking their address does
	// not make a local escape to the heap on every call.
	retData, retSize, retU32, retCas uint32
	retU64                           uint64
)

// resetArena forgets every block handed out so far. Called by each wrapper before a
// host call that may allocate.
func resetArena() {
	arenaUsed = 0
	for i := range overflow {
		overflow[i] = nil
	}
	overflow = overflow[:0]
}

//lint:ignore U1000 called by the host through //go:wasmexport, not from Go
//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer {
	aligned := (size + 7) &^ 7
	if size > 0 && uint64(arenaUsed)+uint64(aligned) <= arenaSize {
		p := unsafe.Pointer(&arena[arenaUsed])
		arenaUsed += aligned
		return p
	}
	b := make([]byte, max(size, 1))
	overflow = append(overflow, b)
	return unsafe.Pointer(&b[0])
}

// claim returns the bytes the host wrote at addr (a block from proxyOnMemoryAllocate),
// or nil if addr is not such a block. The slice aliases the arena: copy it before the
// next host call.
func claim(addr, size uint32) []byte {
	if size == 0 {
		return nil
	}
	if addr >= arenaBase && uint64(addr-arenaBase)+uint64(size) <= uint64(arenaUsed) {
		off := addr - arenaBase
		return arena[off : off+size : off+size]
	}
	for _, b := range overflow {
		base := uint32(uintptr(unsafe.Pointer(&b[0])))
		if addr >= base && uint64(addr-base)+uint64(size) <= uint64(len(b)) {
			off := addr - base
			return b[off : off+size : off+size]
		}
	}
	return nil
}

// claimed returns the result the host left in retData/retSize.
func claimed() []byte { return claim(retData, retSize) }

// bytesPtr returns the (pointer, size) pair of b for a host call.
func bytesPtr(b []byte) (unsafe.Pointer, uint32) {
	if len(b) == 0 {
		return nil, 0
	}
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

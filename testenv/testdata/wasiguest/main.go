// Command wasiguest imports every WASI function proxy-wasm-cpp-host provides since its
// #533 (with cpp-host's signatures) and reports what each returned, so testenv's
// answers can be compared with the host library's (testenv/cpphost). On each request it
// calls them and puts "name=errno[/value]" pairs in the x-wasi response header.
package main

import (
	"fmt"
	"strings"
	"unsafe"

	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func main() {} // never runs: a c-shared module starts from init

//go:wasmimport wasi_snapshot_preview1 clock_res_get
func clockResGet(id uint32, res unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_advise
func fdAdvise(fd uint32, off, n uint64, advice uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_allocate
func fdAllocate(fd uint32, off, n uint64) uint32

//go:wasmimport wasi_snapshot_preview1 fd_datasync
func fdDatasync(fd uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_fdstat_set_rights
func fdFdstatSetRights(fd uint32, base, inh uint64) uint32

//go:wasmimport wasi_snapshot_preview1 fd_filestat_get
func fdFilestatGet(fd uint32, buf unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_filestat_set_size
func fdFilestatSetSize(fd uint32, size uint64) uint32

//go:wasmimport wasi_snapshot_preview1 fd_filestat_set_times
func fdFilestatSetTimes(fd uint32, atim, mtim uint64, flags uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_pread
func fdPread(fd uint32, iovs unsafe.Pointer, n uint32, off uint64, nread unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_pwrite
func fdPwrite(fd uint32, iovs unsafe.Pointer, n uint32, off uint64, nwritten unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_readdir
func fdReaddir(fd uint32, buf unsafe.Pointer, n uint32, cookie uint64, nread unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_renumber
func fdRenumber(fd, to uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_sync
func fdSync(fd uint32) uint32

//go:wasmimport wasi_snapshot_preview1 fd_tell
func fdTell(fd uint32, off unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_create_directory
func pathCreateDirectory(fd uint32, p unsafe.Pointer, n uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_filestat_get
func pathFilestatGet(fd, flags uint32, p unsafe.Pointer, n uint32, buf unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_filestat_set_times
func pathFilestatSetTimes(fd, flags uint32, p unsafe.Pointer, n uint32, atim, mtim uint64, fst uint32) uint32

// path_link and path_symlink: cpp-host declares one parameter fewer than WASI
// preview1 (no new_path_len); a module must import them with cpp-host's shape.
//
//go:wasmimport wasi_snapshot_preview1 path_link
func pathLink(oldFd, oldFlags uint32, oldPath unsafe.Pointer, oldLen, newFd uint32, newPath unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(fd, dirflags uint32, p unsafe.Pointer, n, oflags uint32, base, inh uint64, fdflags uint32, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_readlink
func pathReadlink(fd uint32, p unsafe.Pointer, n uint32, buf unsafe.Pointer, bufLen uint32, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_remove_directory
func pathRemoveDirectory(fd uint32, p unsafe.Pointer, n uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_rename
func pathRename(fd uint32, p unsafe.Pointer, n, newFd uint32, np unsafe.Pointer, nn uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_symlink
func pathSymlink(p unsafe.Pointer, n, fd uint32, np unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 path_unlink_file
func pathUnlinkFile(fd uint32, p unsafe.Pointer, n uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_accept
func sockAccept(fd, flags uint32, out unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sock_recv
func sockRecv(fd uint32, iovs unsafe.Pointer, n, flags uint32, nread, oflags unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sock_send
func sockSend(fd uint32, iovs unsafe.Pointer, n, flags uint32, nsent unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sock_shutdown
func sockShutdown(fd, how uint32) uint32

func init() {
	pw.SetHttpContext(func(uint32) pw.HttpContext { return stream{} })
}

type stream struct{ pw.DefaultHttpContext }

func (stream) OnHttpResponseHeaders(int, bool) pw.Action {
	var out []string
	add := func(name string, errno uint32, val ...uint64) {
		s := fmt.Sprintf("%s=%d", name, errno)
		for _, v := range val {
			s += fmt.Sprintf("/%d", v)
		}
		out = append(out, s)
	}
	path := []byte("x")
	p := unsafe.Pointer(&path[0])
	var u64 uint64 = 77
	var u32a, u32b uint32 = 77, 77
	buf := make([]byte, 64)
	b := unsafe.Pointer(&buf[0])
	msg := []byte("pwrite\n")
	iov := [2]uint32{uint32(uintptr(unsafe.Pointer(&msg[0]))), uint32(len(msg))}

	add("clock_res_get.0", clockResGet(0, unsafe.Pointer(&u64)), u64)
	add("clock_res_get.2", clockResGet(2, unsafe.Pointer(&u64)))
	add("fd_advise", fdAdvise(5, 0, 1, 0))
	add("fd_allocate.1", fdAllocate(1, 0, 1))
	add("fd_allocate.5", fdAllocate(5, 0, 1))
	add("fd_datasync", fdDatasync(2))
	add("fd_fdstat_set_rights", fdFdstatSetRights(7, 0, 0))
	add("fd_filestat_get", fdFilestatGet(1, b))
	add("fd_filestat_set_size", fdFilestatSetSize(1, 0))
	add("fd_filestat_set_times", fdFilestatSetTimes(9, 0, 0, 0))
	add("fd_pread", fdPread(1, b, 0, 0, unsafe.Pointer(&u32a)))
	u32a = 77
	add("fd_pwrite", fdPwrite(2, unsafe.Pointer(&iov), 1, 0, unsafe.Pointer(&u32a)), uint64(u32a))
	u32a = 77
	add("fd_readdir", fdReaddir(3, b, 64, 0, unsafe.Pointer(&u32a)), uint64(u32a))
	add("fd_renumber", fdRenumber(1, 2))
	add("fd_sync", fdSync(3))
	u64 = 77
	add("fd_tell", fdTell(1, unsafe.Pointer(&u64)), u64)
	add("fd_tell.4", fdTell(4, unsafe.Pointer(&u64)))
	add("path_create_directory", pathCreateDirectory(3, p, 1))
	add("path_filestat_get", pathFilestatGet(3, 0, p, 1, b))
	add("path_filestat_set_times", pathFilestatSetTimes(3, 0, p, 1, 0, 0, 0))
	add("path_link", pathLink(3, 0, p, 1, 3, p))
	add("path_open", pathOpen(3, 0, p, 1, 0, 0, 0, 0, unsafe.Pointer(&u32a)))
	u32a = 77
	add("path_readlink", pathReadlink(3, p, 1, b, 64, unsafe.Pointer(&u32a)), uint64(u32a))
	add("path_remove_directory", pathRemoveDirectory(3, p, 1))
	add("path_rename", pathRename(3, p, 1, 3, p, 1))
	add("path_symlink", pathSymlink(p, 1, 3, p))
	add("path_unlink_file", pathUnlinkFile(3, p, 1))
	u64 = 77
	add("sock_accept", sockAccept(3, 0, unsafe.Pointer(&u64)), u64)
	u32a, u32b = 77, 77
	add("sock_recv", sockRecv(3, b, 0, 0, unsafe.Pointer(&u32a), unsafe.Pointer(&u32b)), uint64(u32a), uint64(u32b))
	u32a = 77
	add("sock_send", sockSend(3, b, 0, 0, unsafe.Pointer(&u32a)), uint64(u32a))
	add("sock_shutdown", sockShutdown(3, 0))
	_ = pw.ResponseHeaders.Replace("x-wasi", strings.Join(out, " "))
	return pw.Continue
}

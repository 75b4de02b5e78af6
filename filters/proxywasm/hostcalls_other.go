//go:build !wasip1

package proxywasm

import (
	"fmt"
	"unsafe"
)

// Native stand-ins for the host functions of hostcalls_wasip1.go, so that the whole API
// compiles on every GOOS (go doc, gopls, go vet, native tests of pure code). Each
// answers statusNotInHost, which the API turns into ErrNotInHost; the two whose API
// cannot return an error (Log, Now) panic with it.

func notInHost(call string) { panic(fmt.Errorf("proxywasm: %s: %w", call, ErrNotInHost)) }

func proxy_log(uint32, string) uint32 { notInHost("Log"); return statusNotInHost }
func proxy_get_current_time_nanoseconds(unsafe.Pointer) uint32 {
	notInHost("Now")
	return statusNotInHost
}

func proxy_get_log_level(*uint32) uint32                                     { return statusNotInHost }
func proxy_set_tick_period_milliseconds(uint32) uint32                       { return statusNotInHost }
func proxy_get_header_map_pairs(uint32, *uint32, *uint32) uint32             { return statusNotInHost }
func proxy_set_header_map_pairs(uint32, unsafe.Pointer, uint32) uint32       { return statusNotInHost }
func proxy_get_header_map_size(uint32, *uint32) uint32                       { return statusNotInHost }
func proxy_get_header_map_value(uint32, string, *uint32, *uint32) uint32     { return statusNotInHost }
func proxy_add_header_map_value(uint32, string, string) uint32               { return statusNotInHost }
func proxy_replace_header_map_value(uint32, string, string) uint32           { return statusNotInHost }
func proxy_remove_header_map_value(uint32, string) uint32                    { return statusNotInHost }
func proxy_get_buffer_bytes(uint32, uint32, uint32, *uint32, *uint32) uint32 { return statusNotInHost }
func proxy_get_buffer_status(uint32, *uint32, *uint32) uint32                { return statusNotInHost }
func proxy_set_buffer_bytes(uint32, uint32, uint32, unsafe.Pointer, uint32) uint32 {
	return statusNotInHost
}
func proxy_get_property(string, *uint32, *uint32) uint32       { return statusNotInHost }
func proxy_set_property(string, unsafe.Pointer, uint32) uint32 { return statusNotInHost }
func proxy_send_local_response(uint32, string, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32) uint32 {
	return statusNotInHost
}
func proxy_continue_stream(uint32) uint32                                 { return statusNotInHost }
func proxy_close_stream(uint32) uint32                                    { return statusNotInHost }
func proxy_get_shared_data(string, *uint32, *uint32, *uint32) uint32      { return statusNotInHost }
func proxy_set_shared_data(string, unsafe.Pointer, uint32, uint32) uint32 { return statusNotInHost }
func proxy_register_shared_queue(string, *uint32) uint32                  { return statusNotInHost }
func proxy_resolve_shared_queue(string, string, *uint32) uint32           { return statusNotInHost }
func proxy_enqueue_shared_queue(uint32, unsafe.Pointer, uint32) uint32    { return statusNotInHost }
func proxy_dequeue_shared_queue(uint32, *uint32, *uint32) uint32          { return statusNotInHost }
func proxy_define_metric(uint32, string, *uint32) uint32                  { return statusNotInHost }
func proxy_increment_metric(uint32, int64) uint32                         { return statusNotInHost }
func proxy_record_metric(uint32, uint64) uint32                           { return statusNotInHost }
func proxy_get_metric(uint32, unsafe.Pointer) uint32                      { return statusNotInHost }
func proxy_http_call(string, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32, *uint32) uint32 {
	return statusNotInHost
}
func proxy_grpc_call(string, string, string, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32, *uint32) uint32 {
	return statusNotInHost
}
func proxy_grpc_stream(string, string, string, unsafe.Pointer, uint32, *uint32) uint32 {
	return statusNotInHost
}
func proxy_grpc_send(uint32, unsafe.Pointer, uint32, uint32) uint32 { return statusNotInHost }
func proxy_grpc_cancel(uint32) uint32                               { return statusNotInHost }
func proxy_grpc_close(uint32) uint32                                { return statusNotInHost }
func proxy_get_status(*uint32, *uint32, *uint32) uint32             { return statusNotInHost }
func proxy_set_effective_context(uint32) uint32                     { return statusNotInHost }
func proxy_done() uint32                                            { return statusNotInHost }

// Native stand-ins for memory_wasip1.go and the stream state of exports_wasip1.go: no
// host ever writes results here or runs a stream.

var retData, retSize, retU32, retCas uint32
var retU64 uint64

func streamEnded(uint32) {}
func resetArena()        {}
func claimed() []byte    { return nil }

func bytesPtr(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

//go:build wasip1

package proxywasm

import "unsafe"

// The proxy-wasm ABI v0.2.1 host functions, as proxy-wasm-cpp-host exports them to
// Envoy's Wasm VMs. A string parameter is lowered by the Go toolchain to the
// (pointer, size) pair the ABI expects; out-parameters are package-level slots (see
// memory_wasip1.go) so that taking their address does not allocate. hostcalls_other.go
// has their native stand-ins.

//go:wasmimport env proxy_log
func proxy_log(level uint32, msg string) uint32

//go:wasmimport env proxy_get_log_level
func proxy_get_log_level(retLevel *uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxy_get_current_time_nanoseconds(retTime unsafe.Pointer) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxy_set_tick_period_milliseconds(period uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxy_get_header_map_pairs(mapType uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxy_set_header_map_pairs(mapType uint32, data unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_header_map_size
func proxy_get_header_map_size(mapType uint32, retSize *uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxy_get_header_map_value(mapType uint32, key string, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxy_add_header_map_value(mapType uint32, key string, value string) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxy_replace_header_map_value(mapType uint32, key string, value string) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxy_remove_header_map_value(mapType uint32, key string) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxy_get_buffer_bytes(bufferType uint32, start uint32, length uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_get_buffer_status
func proxy_get_buffer_status(bufferType uint32, retLength *uint32, retFlags *uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxy_set_buffer_bytes(bufferType uint32, start uint32, length uint32, data unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_get_property
func proxy_get_property(path string, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_property
func proxy_set_property(path string, value unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxy_send_local_response(status uint32, details string, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpcStatus uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxy_continue_stream(streamType uint32) uint32

//go:wasmimport env proxy_close_stream
func proxy_close_stream(streamType uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxy_get_shared_data(key string, retData *uint32, retSize *uint32, retCas *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxy_set_shared_data(key string, value unsafe.Pointer, size uint32, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxy_register_shared_queue(name string, retID *uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxy_resolve_shared_queue(vmID string, name string, retID *uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxy_enqueue_shared_queue(queueID uint32, value unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxy_dequeue_shared_queue(queueID uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_define_metric
func proxy_define_metric(metricType uint32, name string, retID *uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxy_increment_metric(metricID uint32, offset int64) uint32

//go:wasmimport env proxy_record_metric
func proxy_record_metric(metricID uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxy_get_metric(metricID uint32, retValue unsafe.Pointer) uint32

//go:wasmimport env proxy_http_call
func proxy_http_call(cluster string, headers unsafe.Pointer, headersSize uint32, body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeoutMs uint32, retToken *uint32) uint32

//go:wasmimport env proxy_grpc_call
func proxy_grpc_call(service string, serviceName string, method string, metadata unsafe.Pointer, metadataSize uint32, msg unsafe.Pointer, msgSize uint32, timeoutMs uint32, retToken *uint32) uint32

//go:wasmimport env proxy_grpc_stream
func proxy_grpc_stream(service string, serviceName string, method string, metadata unsafe.Pointer, metadataSize uint32, retToken *uint32) uint32

//go:wasmimport env proxy_grpc_send
func proxy_grpc_send(token uint32, msg unsafe.Pointer, msgSize uint32, endStream uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxy_grpc_cancel(token uint32) uint32

//go:wasmimport env proxy_grpc_close
func proxy_grpc_close(token uint32) uint32

//go:wasmimport env proxy_get_status
func proxy_get_status(retCode *uint32, retData *uint32, retSize *uint32) uint32

//go:wasmimport env proxy_set_effective_context
func proxy_set_effective_context(contextID uint32) uint32

//go:wasmimport env proxy_done
func proxy_done() uint32

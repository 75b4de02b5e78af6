package proxywasm

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/meshplug/meshplug/filters/abi"
)

// ErrNotInHost is the error of every host call made outside a proxy-wasm host: in a
// native build (go test, go vet, gopls) the API exists so that filter code compiles
// and pure code can be tested without build tags, but only a GOOS=wasip1 module
// loaded by Envoy or testenv can reach a host. Calls that cannot return an error (Log,
// Now, HeaderMap.Get) panic with it instead.
var ErrNotInHost = errors.New("proxywasm: only inside a proxy-wasm host (a GOOS=wasip1 module loaded by Envoy or testenv)")

// Pair is one header (or gRPC metadata) entry, re-exported from abi so that filters
// need not import abi to build headers.
type Pair = abi.Pair

// currentContextID is the context the host is calling into right now.
var currentContextID uint32

// CurrentContextID returns the id of the context the current callback runs for (0
// outside a callback).
func CurrentContextID() uint32 { return currentContextID }

// status turns a host call's status into an error: nil for OK, an abi.Status, or
// ErrNotInHost in a native build (see statusErr).
func status(s uint32) error {
	if s == 0 {
		return nil
	}
	return statusErr(s)
}

// statusNotInHost is what the native stand-ins of the host calls return (see
// hostcalls_other.go); no proxy-wasm status has this value.
const statusNotInHost = 0xFFFF_FF00

func statusErr(s uint32) error {
	if s == statusNotInHost {
		return ErrNotInHost
	}
	return abi.Status(s)
}

// ---- logging, time, timers ----

// Log writes msg to the host's log at level. Envoy prefixes it with the plugin name.
func Log(level abi.LogLevel, msg string) { proxy_log(uint32(level), msg) }

// LogTrace, LogDebug, LogInfo, LogWarn, LogError and LogCritical log msg at their level.
func LogTrace(msg string)    { Log(abi.LogTrace, msg) }
func LogDebug(msg string)    { Log(abi.LogDebug, msg) }
func LogInfo(msg string)     { Log(abi.LogInfo, msg) }
func LogWarn(msg string)     { Log(abi.LogWarn, msg) }
func LogError(msg string)    { Log(abi.LogError, msg) }
func LogCritical(msg string) { Log(abi.LogCritical, msg) }

// Logf formats only when the host would keep the line (see LogLevel).
func Logf(level abi.LogLevel, format string, args ...any) {
	if l, err := LogLevel(); err == nil && level < l {
		return
	}
	Log(level, fmt.Sprintf(format, args...))
}

// LogTracef, LogDebugf, LogInfof, LogWarnf, LogErrorf and LogCriticalf are Logf at
// their level.
func LogTracef(format string, args ...any)    { Logf(abi.LogTrace, format, args...) }
func LogDebugf(format string, args ...any)    { Logf(abi.LogDebug, format, args...) }
func LogInfof(format string, args ...any)     { Logf(abi.LogInfo, format, args...) }
func LogWarnf(format string, args ...any)     { Logf(abi.LogWarn, format, args...) }
func LogErrorf(format string, args ...any)    { Logf(abi.LogError, format, args...) }
func LogCriticalf(format string, args ...any) { Logf(abi.LogCritical, format, args...) }

// LogLevel returns the host's current log level for this plugin.
func LogLevel() (abi.LogLevel, error) {
	err := status(proxy_get_log_level(&retU32))
	return abi.LogLevel(retU32), err
}

// Now returns the host's wall-clock time (the testenv host may run a fake clock).
func Now() time.Time {
	if proxy_get_current_time_nanoseconds(unsafe.Pointer(&retU64)) != 0 {
		return time.Now()
	}
	return time.Unix(0, int64(retU64))
}

// SetTickPeriod makes the host call OnTick of the current plugin every d (rounded
// down to milliseconds, see TickPeriodMillis); 0 stops the ticks.
func SetTickPeriod(d time.Duration) error {
	return status(proxy_set_tick_period_milliseconds(TickPeriodMillis(d)))
}

// MaxTickPeriod is the longest tick period the ABI can express (abi.MaxTickPeriodMillis
// milliseconds, about 49.7 days).
const MaxTickPeriod = abi.MaxTickPeriodMillis * time.Millisecond

// TickPeriodMillis is d as proxy_set_tick_period_milliseconds takes it: whole
// milliseconds, clamped to MaxTickPeriodMillis rather than cut to 32 bits (a period of
// 2^32 ms must not become 0, "stop ticking", nor 2^32+1 ms become 1 ms), and a
// positive d below 1 ms is 1 ms (not 0). A guest that waits longer re-arms on the tick.
func TickPeriodMillis(d time.Duration) uint32 {
	switch {
	case d <= 0:
		return 0
	case d < time.Millisecond:
		return 1
	case d >= MaxTickPeriod:
		return abi.MaxTickPeriodMillis
	}
	return uint32(d / time.Millisecond)
}

// PluginDone tells the host that a plugin whose OnPluginDone returned false has
// finished shutting down.
func PluginDone() error { return status(proxy_done()) }

// SetEffectiveContext makes later host calls act on context id (a stream, typically,
// from a callout callback). The binding does this itself before callout callbacks.
func SetEffectiveContext(id uint32) error { return status(proxy_set_effective_context(id)) }

// ---- header maps ----

// HeaderMap names one of the host's header maps. Names are lowercase in Envoy; the
// pseudo-headers (:method, :path, :authority, :scheme, :status) are in the maps.
type HeaderMap abi.MapType

const (
	RequestHeaders              = HeaderMap(abi.MapRequestHeaders)
	RequestTrailers             = HeaderMap(abi.MapRequestTrailers)
	ResponseHeaders             = HeaderMap(abi.MapResponseHeaders)
	ResponseTrailers            = HeaderMap(abi.MapResponseTrailers)
	GrpcReceiveInitialMetadata  = HeaderMap(abi.MapGrpcInitialMetadata)
	GrpcReceiveTrailingMetadata = HeaderMap(abi.MapGrpcTrailingMetadata)
	HttpCallResponseHeaders     = HeaderMap(abi.MapHttpCallHeaders)
	HttpCallResponseTrailers    = HeaderMap(abi.MapHttpCallTrailers)
)

// Get returns the value of header name and whether the host has it: ok is false when
// the header is absent, or when the map does not exist in this callback (Envoy answers
// NotFound or BadArgument; either way there is no such header here). This is
// meshplug's one convention for an absent header: testenv.Headers.Get and
// abi.PairsView.Get report it the same way. A header present with an empty value is
// ("", true).
//
// Caveats: a repeated header gives its first value, as Envoy does
// (Context::getHeaderMapValue); read every copy with GetAll or AppendAll. Outside a
// proxy-wasm host Get panics with ErrNotInHost.
func (m HeaderMap) Get(name string) (value string, ok bool) {
	resetArena()
	switch s := proxy_get_header_map_value(uint32(m), name, &retData, &retSize); s {
	case 0:
		return string(claimed()), true
	case statusNotInHost:
		panic(fmt.Errorf("proxywasm: HeaderMap.Get(%q): %w", name, ErrNotInHost))
	}
	return "", false
}

// GetAll returns every entry of the map, in order.
func (m HeaderMap) GetAll() ([]Pair, error) {
	resetArena()
	if s := proxy_get_header_map_pairs(uint32(m), &retData, &retSize); s != 0 {
		return nil, statusErr(s)
	}
	return abi.DecodePairs(claimed())
}

// AppendAll appends the map's proxy-wasm encoding to dst and returns it as a view:
// one host call, and no allocation once dst has grown to fit. Look headers up with
// the view's Get; its strings alias dst, so they are valid until dst is reused.
func (m HeaderMap) AppendAll(dst []byte) (abi.PairsView, error) {
	resetArena()
	if s := proxy_get_header_map_pairs(uint32(m), &retData, &retSize); s != 0 {
		return nil, statusErr(s)
	}
	return abi.PairsView(append(dst, claimed()...)), nil
}

// SetAll replaces the whole map with pairs.
func (m HeaderMap) SetAll(pairs []Pair) error {
	p, n := bytesPtr(abi.EncodePairs(pairs))
	return status(proxy_set_header_map_pairs(uint32(m), p, n))
}

// Size returns the size in bytes of the map's encoding (proxy_get_header_map_size).
func (m HeaderMap) Size() (int, error) {
	err := status(proxy_get_header_map_size(uint32(m), &retU32))
	return int(retU32), err
}

// Add appends a value for name, keeping existing ones.
func (m HeaderMap) Add(name, value string) error {
	return status(proxy_add_header_map_value(uint32(m), name, value))
}

// Replace sets name to value, replacing every existing value (adding it if absent).
func (m HeaderMap) Replace(name, value string) error {
	return status(proxy_replace_header_map_value(uint32(m), name, value))
}

// Remove deletes every value of name; removing a missing header is not an error.
func (m HeaderMap) Remove(name string) error {
	return status(proxy_remove_header_map_value(uint32(m), name))
}

// ---- buffers ----

// Buffer names one of the host's byte buffers.
type Buffer abi.BufferType

const (
	RequestBody          = Buffer(abi.BufferRequestBody)
	ResponseBody         = Buffer(abi.BufferResponseBody)
	HttpCallResponseBody = Buffer(abi.BufferHttpCallBody)
	GrpcReceiveBuffer    = Buffer(abi.BufferGrpcReceive)
	VMConfiguration      = Buffer(abi.BufferVMConfiguration)
	PluginConfiguration  = Buffer(abi.BufferPluginConfig)
)

// LoadPluginConfig reads the plugin configuration (Envoy's Wasm plugin `configuration`,
// Istio's `pluginConfig`) and parses it with parse. On failure it logs the problem at
// critical level, prefixed with filter, and returns ok == false: return false from
// OnPluginStart then, so that the host refuses the configuration (Envoy rejects the
// update) instead of serving with a half-understood one.
func LoadPluginConfig[T any](filter string, parse func([]byte) (T, error)) (cfg T, ok bool) {
	raw, err := PluginConfiguration.Bytes()
	if err != nil {
		LogCriticalf("%s: reading the plugin configuration: %v", filter, err)
		return cfg, false
	}
	if cfg, err = parse(raw); err != nil {
		LogCriticalf("%s: invalid configuration: %v", filter, err)
		return cfg, false
	}
	return cfg, true
}

// Get returns up to length bytes from offset start. An empty buffer returns
// (nil, nil) — Envoy reports it as NotFound or Empty depending on the buffer, which
// this hides.
func (b Buffer) Get(start, length int) ([]byte, error) {
	if start < 0 || length < 0 {
		return nil, abi.StatusBadArgument
	}
	resetArena()
	s := proxy_get_buffer_bytes(uint32(b), uint32(start), uint32(length), &retData, &retSize)
	switch abi.Status(s) {
	case abi.StatusOK:
		return append([]byte(nil), claimed()...), nil
	case abi.StatusNotFound, abi.StatusEmpty:
		return nil, nil
	default:
		return nil, statusErr(s)
	}
}

// Bytes returns the whole buffer.
func (b Buffer) Bytes() ([]byte, error) {
	n, _, err := b.Status()
	if err != nil || n == 0 {
		// Some buffers (configuration) may not report a status: read what there is.
		return b.Get(0, 1<<30)
	}
	return b.Get(0, n)
}

// Status returns the buffer's length and flags.
func (b Buffer) Status() (length int, flags uint32, err error) {
	s := proxy_get_buffer_status(uint32(b), &retSize, &retU32)
	if abi.Status(s) == abi.StatusNotFound || abi.Status(s) == abi.StatusEmpty {
		return 0, 0, nil
	}
	return int(retSize), retU32, status(s)
}

// Set replaces length bytes at start with data (proxy_set_buffer_bytes). In Envoy,
// start 0 with length 0 prepends, start ≥ size appends, and start 0 with length ≥
// size replaces the whole buffer.
func (b Buffer) Set(start, length int, data []byte) error {
	p, n := bytesPtr(data)
	return status(proxy_set_buffer_bytes(uint32(b), uint32(start), uint32(length), p, n))
}

// Replace replaces the whole buffer with data.
func (b Buffer) Replace(data []byte) error {
	n, _, err := b.Status()
	if err != nil {
		return err
	}
	return b.Set(0, max(n, 1<<30), data)
}

// Append adds data at the end of the buffer.
func (b Buffer) Append(data []byte) error {
	n, _, err := b.Status()
	if err != nil {
		return err
	}
	return b.Set(n, 0, data)
}

// ---- properties ----

// GetProperty returns the value of the property at path, e.g. GetProperty("request",
// "path"). Strings come raw, integers as 8 little-endian bytes, booleans as 1 byte.
func GetProperty(path ...string) ([]byte, error) {
	resetArena()
	if s := proxy_get_property(strings.Join(path, "\x00"), &retData, &retSize); s != 0 {
		return nil, statusErr(s)
	}
	return append([]byte(nil), claimed()...), nil
}

// GetPropertyString returns a string property.
func GetPropertyString(path ...string) (string, error) {
	resetArena()
	if s := proxy_get_property(strings.Join(path, "\x00"), &retData, &retSize); s != 0 {
		return "", statusErr(s)
	}
	return string(claimed()), nil
}

// SetProperty sets the property at path for the current stream.
func SetProperty(path []string, value []byte) error {
	p, n := bytesPtr(value)
	return status(proxy_set_property(strings.Join(path, "\x00"), p, n))
}

// ---- streams and local responses ----

// SendHttpResponse ends the current stream with a local reply: status, response code
// details (e.g. "auth_denied"), headers and body. grpcStatus is abi.GrpcStatusNone for
// a plain HTTP reply; otherwise Envoy answers a gRPC request with that grpc-status (and
// the body as grpc-message). Return Pause from the callback after calling it.
func SendHttpResponse(statusCode uint32, details string, headers []Pair, body []byte, grpcStatus uint32) error {
	bp, bn := bytesPtr(body)
	return sendHttpResponse(statusCode, details, headers, bp, bn, grpcStatus)
}

// replyHeaders is the buffer local replies encode their headers into, reused so that a
// reply allocates nothing for them (the guest is single-threaded). A reply takes it
// for the duration of its host call: one sent from inside that call (a host that runs
// other callbacks of this VM before returning) encodes into a buffer of its own.
var replyHeaders []byte

func sendHttpResponse(statusCode uint32, details string, headers []Pair, body unsafe.Pointer, bodySize uint32, grpcStatus uint32) error {
	streamEnded(currentContextID)
	enc := replyHeaders
	replyHeaders = nil
	// An encoded empty map is 4 zero bytes; some hosts refuse size 0.
	enc = abi.AppendPairs(enc[:0], headers)
	hp, hn := bytesPtr(enc)
	st := proxy_send_local_response(statusCode, details, body, bodySize, hp, hn, grpcStatus)
	replyHeaders = enc
	return status(st)
}

// SendLocalReply ends the current stream with a local reply of status, body and
// headers (e.g. Pair{Key: "content-type", Value: "application/json"}): the common case
// of SendHttpResponse, with response code details "meshplug_local_reply". It is
// gRPC-aware: when the request is gRPC (content-type application/grpc...), Envoy
// answers with a trailers-only response whose grpc-status is the gRPC status Envoy
// maps status to (abi.GrpcStatusForHTTP) and whose grpc-message is body. Return Pause
// from the callback after calling it.
//
// Caveat: it reads the request's content-type, so call it while the request headers
// are readable (request callbacks and callout callbacks of a paused request); later,
// use SendHttpResponse.
func SendLocalReply(statusCode int, body string, headers ...Pair) error {
	grpcStatus := uint32(abi.GrpcStatusNone)
	resetArena() // the content-type, read without a copy (and without Get's panic natively)
	if proxy_get_header_map_value(uint32(RequestHeaders), "content-type", &retData, &retSize) == 0 && isGRPC(string(claimed())) {
		grpcStatus = abi.GrpcStatusForHTTP(statusCode)
	}
	var bp unsafe.Pointer // the body is read in place: no copy of the string
	if len(body) > 0 {
		bp = unsafe.Pointer(unsafe.StringData(body))
	}
	return sendHttpResponse(uint32(statusCode), "meshplug_local_reply", headers, bp, uint32(len(body)), grpcStatus)
}

// isGRPC reports whether a content-type is gRPC's: application/grpc, optionally
// followed by +proto, +json, ... or parameters.
func isGRPC(contentType string) bool {
	const g = "application/grpc"
	return strings.HasPrefix(contentType, g) &&
		(len(contentType) == len(g) || contentType[len(g)] == '+' || contentType[len(g)] == ';')
}

// ResumeHttpRequest continues a paused request (proxy_continue_stream).
func ResumeHttpRequest() error { return status(proxy_continue_stream(uint32(abi.StreamRequest))) }

// ResumeHttpResponse continues a paused response.
func ResumeHttpResponse() error { return status(proxy_continue_stream(uint32(abi.StreamResponse))) }

// ResetHttpStream resets the current stream (proxy_close_stream on the request side).
func ResetHttpStream() error { return status(proxy_close_stream(uint32(abi.StreamRequest))) }

// ---- shared data and queues ----

// GetSharedData returns the value of key in the VM-id-wide shared data and its CAS
// token. A missing key is abi.StatusNotFound.
func GetSharedData(key string) (value []byte, cas uint32, err error) {
	resetArena()
	if s := proxy_get_shared_data(key, &retData, &retSize, &retCas); s != 0 {
		return nil, 0, statusErr(s)
	}
	return append([]byte(nil), claimed()...), retCas, nil
}

// AppendSharedData is GetSharedData appending the value to dst: no allocation once
// dst has room (the value aliases dst's array). On error it returns dst unchanged.
func AppendSharedData(dst []byte, key string) (value []byte, cas uint32, err error) {
	resetArena()
	if s := proxy_get_shared_data(key, &retData, &retSize, &retCas); s != 0 {
		return dst, 0, abi.Status(s)
	}
	return append(dst, claimed()...), retCas, nil
}

// SetSharedData stores value under key. cas 0 writes unconditionally; otherwise the
// write happens only if the key's CAS token still equals cas, else
// abi.StatusCasMismatch. Caveat: a key that does not exist is created whatever cas
// says (proxy-wasm-cpp-host SharedData::set), so two VMs that both read "not found"
// and write both succeed; create with a non-zero cas that no live entry holds (e.g.
// the cas of another key) to make the second creation fail instead.
func SetSharedData(key string, value []byte, cas uint32) error {
	p, n := bytesPtr(value)
	return status(proxy_set_shared_data(key, p, n, cas))
}

// RegisterSharedQueue registers (or finds) the queue name in this VM's vm_id and
// makes this plugin receive OnQueueReady for it.
func RegisterSharedQueue(name string) (uint32, error) {
	err := status(proxy_register_shared_queue(name, &retU32))
	return retU32, err
}

// ResolveSharedQueue finds a queue registered by a VM with vmID.
func ResolveSharedQueue(vmID, name string) (uint32, error) {
	err := status(proxy_resolve_shared_queue(vmID, name, &retU32))
	return retU32, err
}

// EnqueueSharedQueue appends data to a queue.
func EnqueueSharedQueue(id uint32, data []byte) error {
	p, n := bytesPtr(data)
	return status(proxy_enqueue_shared_queue(id, p, n))
}

// DequeueSharedQueue takes the oldest item; an empty queue is abi.StatusEmpty.
func DequeueSharedQueue(id uint32) ([]byte, error) {
	resetArena()
	if s := proxy_dequeue_shared_queue(id, &retData, &retSize); s != 0 {
		return nil, statusErr(s)
	}
	return append([]byte(nil), claimed()...), nil
}

// ---- metrics ----

// Counter, Gauge and Histogram are metrics defined in the host's stats store. Envoy
// names them as given (in Istio, stats must match the proxy's stats inclusion list to
// be exported).
type (
	Counter   uint32
	Gauge     uint32
	Histogram uint32
)

func defineMetric(t abi.MetricType, name string) (uint32, error) {
	err := status(proxy_define_metric(uint32(t), name, &retU32))
	return retU32, err
}

// DefineCounter defines (or finds) a counter.
func DefineCounter(name string) (Counter, error) {
	id, err := defineMetric(abi.MetricCounter, name)
	return Counter(id), err
}

// DefineGauge defines (or finds) a gauge.
func DefineGauge(name string) (Gauge, error) {
	id, err := defineMetric(abi.MetricGauge, name)
	return Gauge(id), err
}

// DefineHistogram defines (or finds) a histogram.
func DefineHistogram(name string) (Histogram, error) {
	id, err := defineMetric(abi.MetricHistogram, name)
	return Histogram(id), err
}

// MetricDefs defines a filter's metrics at plugin start and keeps the first error (with
// the metric's name), so that a list of definitions reads as one block:
//
//	var d pw.MetricDefs
//	m.allowed = d.Counter("meshplug.x.allowed")
//	m.active = d.Gauge("meshplug.x.active")
//	if err := d.Err(); err != nil { ... refuse the configuration ... }
//
// The zero value is ready to use and defines the names as given; ScopedMetrics makes
// them unique per plugin.
type MetricDefs struct {
	err error
	// prefix, scope: a name starting with prefix gets scope inserted after it.
	prefix, scope string
}

// ScopedMetrics returns MetricDefs that keep two plugins of one filter apart: a name
// starting with prefix (the filter's, e.g. "meshplug.auth.") gets the current plugin's
// name (the plugin_name property: Envoy's plugin name, Istio's
// "<namespace>.<WasmPlugin name>") inserted after prefix, so plugin "default.api"
// defines "meshplug.auth.default.api.allowed" for "meshplug.auth.allowed". Envoy (and
// testenv) keep one stat per name in a proxy, whatever the VM: without a scope, two
// auth plugins, bundled or not, would add into each other's counters. A plugin named
// like its filter (name, e.g. "auth", or prefix without its dot, "meshplug.auth", as
// the envoy.yaml and EnvoyFilter renderings name it), or unnamed, keeps the names as
// given: one plugin per filter reads the documented names.
func ScopedMetrics(prefix, name string) MetricDefs {
	d := MetricDefs{prefix: prefix}
	plugin, err := GetPropertyString("plugin_name")
	if err != nil {
		d.err = fmt.Errorf("reading the plugin_name property: %w", err)
		return d
	}
	if plugin != "" && plugin != name && plugin+"." != prefix {
		d.scope = plugin + "."
	}
	return d
}

// Name is name as d defines it (see ScopedMetrics).
func (d *MetricDefs) Name(name string) string {
	if d.scope == "" || !strings.HasPrefix(name, d.prefix) {
		return name
	}
	return d.prefix + d.scope + name[len(d.prefix):]
}

func (d *MetricDefs) keep(name string, err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%s: %w", name, err)
	}
}

// Counter defines (or finds) a counter.
func (d *MetricDefs) Counter(name string) Counter {
	name = d.Name(name)
	c, err := DefineCounter(name)
	d.keep(name, err)
	return c
}

// Gauge defines (or finds) a gauge.
func (d *MetricDefs) Gauge(name string) Gauge {
	name = d.Name(name)
	g, err := DefineGauge(name)
	d.keep(name, err)
	return g
}

// Histogram defines (or finds) a histogram.
func (d *MetricDefs) Histogram(name string) Histogram {
	name = d.Name(name)
	h, err := DefineHistogram(name)
	d.keep(name, err)
	return h
}

// Err is the first error of the definitions made so far, or nil.
func (d *MetricDefs) Err() error { return d.err }

func (c Counter) Increment(delta uint64) error {
	return status(proxy_increment_metric(uint32(c), int64(delta)))
}
func (c Counter) Value() (uint64, error)  { return getMetric(uint32(c)) }
func (g Gauge) Add(delta int64) error     { return status(proxy_increment_metric(uint32(g), delta)) }
func (g Gauge) Set(v uint64) error        { return status(proxy_record_metric(uint32(g), v)) }
func (g Gauge) Value() (uint64, error)    { return getMetric(uint32(g)) }
func (h Histogram) Record(v uint64) error { return status(proxy_record_metric(uint32(h), v)) }

func getMetric(id uint32) (uint64, error) {
	err := status(proxy_get_metric(id, unsafe.Pointer(&retU64)))
	return retU64, err
}

// GetStatus returns the status of the last gRPC callout event (proxy_get_status).
func GetStatus() (code uint32, message string, err error) {
	resetArena()
	if s := proxy_get_status(&retU32, &retData, &retSize); s != 0 {
		return 0, "", statusErr(s)
	}
	return retU32, string(claimed()), nil
}

// RunAs runs f as context id: host calls inside f act on that context (through
// proxy_set_effective_context), and callouts dispatched inside f belong to it, so their
// callbacks run as id. The previous context is restored afterwards.
//
// Use it to resume a parked stream from a plugin-level callback, or to dispatch a
// callout that must outlive the stream that triggered it (a stream's pending callouts
// are dropped when the stream ends).
func RunAs(id uint32, f func()) error {
	prev := currentContextID
	if err := SetEffectiveContext(id); err != nil {
		return err
	}
	currentContextID = id
	defer func() {
		currentContextID = prev
		SetEffectiveContext(prev)
	}()
	f()
	return nil
}

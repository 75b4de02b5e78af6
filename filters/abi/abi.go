// Package abi defines the constants and wire encodings of the proxy-wasm ABI v0.2.1
// that both sides share: the guest binding in filters/proxywasm and the wazero host in
// testenv. It has no ABI calls of its own and compiles for wasip1 and natively.
//
// Caveat: only the parts of the ABI that Envoy (proxy-wasm-cpp-host) implements are
// listed; foreign functions and metadata callbacks are left out on purpose.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Status is the result code of every host call (WasmResult in proxy-wasm-cpp-host).
type Status uint32

const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusBadExpression        Status = 5
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusResultMismatch       Status = 9
	StatusInternalFailure      Status = 10
	StatusBrokenConnection     Status = 11
	StatusUnimplemented        Status = 12
)

var statusNames = [...]string{
	"ok", "not found", "bad argument", "serialization failure", "parse failure",
	"bad expression", "invalid memory access", "empty", "cas mismatch",
	"result mismatch", "internal failure", "broken connection", "unimplemented",
}

// Error makes a non-OK Status usable as an error, so callers can write
// errors.Is(err, abi.StatusNotFound).
func (s Status) Error() string { return "proxy-wasm: " + s.String() }

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint32(s))
}

// Action is what a stream callback returns (FilterHeadersStatus / FilterDataStatus /
// FilterTrailersStatus in Envoy, narrowed to the two values filters use).
type Action uint32

const (
	ActionContinue Action = 0
	// ActionPause stops iteration until the plugin calls proxy_continue_stream (or
	// sends a local response). For bodies it means StopIterationAndBuffer.
	ActionPause Action = 1
)

// MapType selects a header map in the header-map host calls.
type MapType uint32

const (
	MapRequestHeaders       MapType = 0
	MapRequestTrailers      MapType = 1
	MapResponseHeaders      MapType = 2
	MapResponseTrailers     MapType = 3
	MapGrpcInitialMetadata  MapType = 4
	MapGrpcTrailingMetadata MapType = 5
	MapHttpCallHeaders      MapType = 6
	MapHttpCallTrailers     MapType = 7
)

// BufferType selects a buffer in the buffer host calls.
type BufferType uint32

const (
	BufferRequestBody     BufferType = 0
	BufferResponseBody    BufferType = 1
	BufferDownstreamData  BufferType = 2
	BufferUpstreamData    BufferType = 3
	BufferHttpCallBody    BufferType = 4
	BufferGrpcReceive     BufferType = 5
	BufferVMConfiguration BufferType = 6
	BufferPluginConfig    BufferType = 7
	BufferCallData        BufferType = 8
)

// StreamType selects the direction in proxy_continue_stream / proxy_close_stream.
type StreamType uint32

const (
	StreamRequest    StreamType = 0
	StreamResponse   StreamType = 1
	StreamDownstream StreamType = 2
	StreamUpstream   StreamType = 3
)

// MetricType is the kind passed to proxy_define_metric.
type MetricType uint32

const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

// MaxTickPeriodMillis is the longest period proxy_set_tick_period_milliseconds can
// express (its argument is a uint32 of milliseconds, about 49.7 days). A guest that
// waits longer sets this period and re-arms on the tick.
const MaxTickPeriodMillis = 1<<32 - 1

// LogLevel is the level passed to proxy_log and returned by proxy_get_log_level.
type LogLevel uint32

const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)

var levelNames = [...]string{"trace", "debug", "info", "warn", "error", "critical"}

func (l LogLevel) String() string {
	if int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", uint32(l))
}

// GrpcStatus codes used by local replies and gRPC callouts (google.rpc.Code).
const (
	GrpcOK               = 0
	GrpcPermissionDenied = 7
	GrpcUnavailable      = 14
	GrpcUnauthenticated  = 16
	// GrpcStatusNone, passed as grpc_status to proxy_send_local_response, means "not a
	// gRPC reply": Envoy then derives nothing from it.
	GrpcStatusNone = 0xFFFFFFFF
)

// IsGRPCContentType reports whether a content-type is gRPC's as Envoy decides it
// (Grpc::Common::hasGrpcContentType, which makes local replies trailers-only):
// exactly application/grpc, or application/grpc+<subtype>. application/grpc-web is not.
func IsGRPCContentType(contentType string) bool {
	return len(contentType) >= 16 && contentType[:16] == "application/grpc" &&
		(len(contentType) == 16 || contentType[16] == '+')
}

// GrpcStatusForHTTP maps an HTTP status to the gRPC status Envoy gives a gRPC client
// that receives it (Grpc::Utility::httpToGrpcStatus): 400→13 INTERNAL,
// 401→16 UNAUTHENTICATED, 403→7 PERMISSION_DENIED, 404→12 UNIMPLEMENTED,
// 429/502/503/504→14 UNAVAILABLE, 200→0, anything else→2 UNKNOWN.
func GrpcStatusForHTTP(status int) uint32 {
	switch status {
	case 200:
		return GrpcOK
	case 400:
		return 13
	case 401:
		return GrpcUnauthenticated
	case 403:
		return GrpcPermissionDenied
	case 404:
		return 12
	case 429, 502, 503, 504:
		return GrpcUnavailable
	}
	return 2
}

// ErrMalformedPairs is returned by DecodePairs for input that is not a valid encoding.
var ErrMalformedPairs = errors.New("malformed header map encoding")

// Pair is one header (or metadata) entry. Names are lowercase in Envoy's maps.
type Pair struct {
	Key, Value string
}

// EncodedPairsSize is the size of EncodePairs' output for pairs.
func EncodedPairsSize(pairs []Pair) int {
	n := 4
	for _, p := range pairs {
		n += 8 + len(p.Key) + 1 + len(p.Value) + 1
	}
	return n
}

// AppendPairs appends the proxy-wasm encoding of pairs to dst: a little-endian uint32
// count, then a (key size, value size) uint32 pair per entry, then each key and value
// followed by a NUL byte.
func AppendPairs(dst []byte, pairs []Pair) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(pairs)))
	for _, p := range pairs {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.Key)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p.Value)))
	}
	for _, p := range pairs {
		dst = append(dst, p.Key...)
		dst = append(dst, 0)
		dst = append(dst, p.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// EncodePairs returns the proxy-wasm encoding of pairs (see AppendPairs).
func EncodePairs(pairs []Pair) []byte {
	return AppendPairs(make([]byte, 0, EncodedPairsSize(pairs)), pairs)
}

// DecodePairs parses the proxy-wasm encoding of a header map. An empty input decodes
// to no pairs (hosts pass a zero-size map that way).
func DecodePairs(b []byte) ([]Pair, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, ErrMalformedPairs
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n)*8 > uint64(len(b)-4) {
		return nil, ErrMalformedPairs
	}
	sizes := b[4 : 4+8*n]
	data := b[4+8*n:]
	pairs := make([]Pair, n)
	for i := range pairs {
		ks := uint64(binary.LittleEndian.Uint32(sizes[8*i:]))
		vs := uint64(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if ks+vs+2 > uint64(len(data)) || data[ks] != 0 || data[ks+vs+1] != 0 {
			return nil, ErrMalformedPairs
		}
		pairs[i] = Pair{Key: string(data[:ks]), Value: string(data[ks+1 : ks+1+vs])}
		data = data[ks+vs+2:]
	}
	return pairs, nil
}

// PairsView reads a header map in its proxy-wasm encoding without decoding it: Get
// scans the encoding and returns a string that aliases the view's bytes. It is how a
// guest reads many headers with one host call and no allocation.
//
// Caveat: the strings returned alias the view's memory: they are valid only while
// the bytes are not reused. Copy (strings.Clone) what must outlive them.
type PairsView []byte

// Get returns the value of the first entry named name.
func (v PairsView) Get(name string) (string, bool) {
	value, _, found := v.scan(name, true)
	return value, found
}

// Count returns how many entries are named name.
func (v PairsView) Count(name string) int {
	_, n, _ := v.scan(name, false)
	return n
}

// AppendValues appends the value of every entry named name, in order, to dst and
// returns it: how a guest sees all copies of a repeated header without allocating
// once dst has room. The strings alias the view like Get's.
func (v PairsView) AppendValues(dst []string, name string) []string {
	dst, _ = v.AppendValuesLike(dst, name)
	return dst
}

// AppendValuesLike is AppendValues that also reports like: the first entry name
// (as spelled) that is not name but equals it with ASCII case folded and '_' read as
// '-' (a spelling CGI-style upstreams read as the same header), "" if none. Like
// scan, it compares only names of name's length.
func (v PairsView) AppendValuesLike(dst []string, name string) (_ []string, like string) {
	size := len(v)
	if size < 4 {
		return dst, ""
	}
	base := unsafe.Pointer(unsafe.SliceData(v))
	n := int(le32(base, 0))
	if n < 0 || n > (size-4)/8 {
		return dst, ""
	}
	off := 4 + 8*n
	for i := 0; i < n; i++ {
		ks, vs := int(le32(base, 4+8*i)), int(le32(base, 8+8*i))
		if ks < 0 || vs < 0 || ks+vs+2 > size-off {
			return dst, like
		}
		if ks == len(name) {
			k := unsafe.String((*byte)(unsafe.Add(base, off)), ks)
			if ks == 0 || k == name {
				dst = append(dst, unsafeString(v[off+ks+1:off+ks+1+vs]))
			} else if like == "" && headerFold[k[0]] == headerFold[name[0]] && foldedEqual(k, name) {
				// (The first bytes compared here: most names of the same length
				// differ there, and a call costs more than that in a wasm guest.)
				like = k
			}
		}
		off += ks + vs + 2
	}
	return dst, like
}

// HeaderNameIs compares two header names ASCII case-insensitively with '_' read as
// '-' (the spellings CGI-style upstreams fold into one variable).
func HeaderNameIs(got, name string) bool {
	// (Small enough to inline: callers compare lengths first for free.)
	return len(got) == len(name) && foldedEqual(got, name)
}

// foldedEqual is HeaderNameIs for two names of the same length. Not inlined, so that
// HeaderNameIs is: most names of equal length differ at once, and a call costs more
// than that in a wasm guest.
//
//go:noinline
func foldedEqual(got, name string) bool {
	for i := 0; i < len(got) && i < len(name); i++ {
		if foldHeaderByte(got[i]) != foldHeaderByte(name[i]) {
			return false
		}
	}
	return true
}

// headerFold is foldHeaderByte as a table.
var headerFold = func() (t [256]byte) {
	for c := range 256 {
		t[c] = foldHeaderByte(byte(c))
	}
	return t
}()

func foldHeaderByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	} else if c == '_' {
		return '-'
	}
	return c
}

// AppendTo appends every entry to dst in order (repeated names once per copy) and
// returns it: one call and no allocation once dst has grown, the strings aliasing the
// view like Get's. For an encoding DecodePairs accepts, it appends exactly DecodePairs'
// pairs; a malformed one ends early, never reading out of bounds. (A loop over the
// result is much cheaper in a Go wasm guest than an iterator calling back per entry.)
func (v PairsView) AppendTo(dst []Pair) []Pair {
	for c := v.Cursor(); ; {
		k, val, ok := c.Next()
		if !ok {
			return dst
		}
		dst = append(dst, Pair{Key: k, Value: val})
	}
}

// scan walks the entries named name: the first one's value, and how many there are
// (it stops at the first when first is set). A malformed encoding ends the walk.
//
// It reads the sizes with plain pointer loads and compares names only when their
// lengths match: in a Go wasm guest, slicing and encoding/binary cost bounds checks
// the backend does not remove, and this runs several times per request.
func (v PairsView) scan(name string, first bool) (value string, count int, found bool) {
	size := len(v)
	if size < 4 {
		return "", 0, false
	}
	base := unsafe.Pointer(unsafe.SliceData(v))
	n := int(le32(base, 0))
	if n < 0 || n > (size-4)/8 {
		return "", 0, false
	}
	off := 4 + 8*n
	for i := 0; i < n; i++ {
		ks, vs := int(le32(base, 4+8*i)), int(le32(base, 8+8*i))
		if ks < 0 || vs < 0 || ks+vs+2 > size-off {
			return value, count, found
		}
		if ks == len(name) && (ks == 0 || unsafe.String((*byte)(unsafe.Add(base, off)), ks) == name) {
			if !found {
				value, found = unsafeString(v[off+ks+1:off+ks+1+vs]), true
			}
			count++
			if first {
				return value, count, found
			}
		}
		off += ks + vs + 2
	}
	return value, count, found
}

// le32 reads a little-endian uint32 at base+off (wasm and every host Go runs this
// code on are little-endian; bounds are the caller's).
// It is one unaligned load: the Go wasm backend does not merge four byte loads, and
// the scans below read two sizes per entry.
func le32(base unsafe.Pointer, off int) uint32 {
	return *(*uint32)(unsafe.Add(base, off))
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// PairsCursor walks the entries of a PairsView in order, without allocating (a range
// over an iterator function would allocate its closure when the function is not known
// statically). The strings returned alias the view's bytes.
type PairsCursor struct {
	v         PairsView
	i, n, off int
}

// Cursor returns a cursor at the first entry of v.
func (v PairsView) Cursor() PairsCursor {
	c := PairsCursor{v: v}
	if size := len(v); size >= 4 {
		n := int(le32(unsafe.Pointer(unsafe.SliceData(v)), 0))
		if n >= 0 && n <= (size-4)/8 {
			c.n, c.off = n, 4+8*n
		}
	}
	return c
}

// Next returns the next entry; ok is false at the end (or at a malformed entry).
func (c *PairsCursor) Next() (name, value string, ok bool) {
	if c.i >= c.n {
		return "", "", false
	}
	base := unsafe.Pointer(unsafe.SliceData(c.v))
	ks, vs := int(le32(base, 4+8*c.i)), int(le32(base, 8+8*c.i))
	if ks < 0 || vs < 0 || ks+vs+2 > len(c.v)-c.off {
		c.i = c.n
		return "", "", false
	}
	name = unsafeString(c.v[c.off : c.off+ks])
	value = unsafeString(c.v[c.off+ks+1 : c.off+ks+1+vs])
	c.i++
	c.off += ks + vs + 2
	return name, value, true
}

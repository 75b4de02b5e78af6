package proxywasm

import (
	"time"

	"github.com/meshplug/meshplug/filters/abi"
)

// Callouts: HTTP calls and gRPC calls/streams to clusters of the host.
//
// Tokens are kept VM-wide (like the Rust SDK does), with the context that made the
// call, so the callback runs as that context whatever context id the host passes.
// When a stream is deleted its pending callbacks are dropped: they would act on a
// stream that no longer exists.

type httpCall struct {
	contextID uint32
	callback  func(numHeaders, bodySize, numTrailers int)
}

type grpcCall struct {
	contextID uint32
	unary     func(status uint32, message string, response []byte)
	stream    GrpcStreamHandler
}

var (
	httpCalls = map[uint32]httpCall{}
	grpcCalls = map[uint32]grpcCall{}
)

// DispatchHttpCall sends an HTTP request to cluster. headers must contain :method,
// :path and :authority. callback runs when the response arrives (or the call failed:
// then numHeaders is 0 and there is no ":status"); inside it, read the response with
// HttpCallResponseHeaders, HttpCallResponseBody and HttpCallResponseTrailers. When
// called from a stream, the callback runs as that stream (ResumeHttpRequest and
// SendHttpResponse act on it).
func DispatchHttpCall(cluster string, headers []Pair, body []byte, trailers []Pair,
	timeout time.Duration, callback func(numHeaders, bodySize, numTrailers int)) (uint32, error) {
	hp, hn := bytesPtr(abi.EncodePairs(headers))
	bp, bn := bytesPtr(body)
	var tenc []byte
	if len(trailers) > 0 {
		tenc = abi.EncodePairs(trailers)
	}
	tp, tn := bytesPtr(tenc)
	if s := proxy_http_call(cluster, hp, hn, bp, bn, tp, tn, uint32(timeout/time.Millisecond), &retU32); s != 0 {
		return 0, statusErr(s)
	}
	httpCalls[retU32] = httpCall{contextID: currentContextID, callback: callback}
	return retU32, nil
}

// DispatchGrpcCall makes a unary gRPC call of service/method on cluster with a
// serialized request message. callback gets status 0 and the serialized response, or
// a non-zero gRPC status and its message.
func DispatchGrpcCall(cluster, service, method string, metadata []Pair, request []byte,
	timeout time.Duration, callback func(status uint32, message string, response []byte)) (uint32, error) {
	mp, mn := bytesPtr(encodeOptional(metadata))
	rp, rn := bytesPtr(request)
	if s := proxy_grpc_call(cluster, service, method, mp, mn, rp, rn, uint32(timeout/time.Millisecond), &retU32); s != 0 {
		return 0, statusErr(s)
	}
	grpcCalls[retU32] = grpcCall{contextID: currentContextID, unary: callback}
	return retU32, nil
}

// GrpcStreamHandler receives the events of a gRPC stream. Inside OnInitialMetadata
// and OnTrailingMetadata read GrpcReceiveInitialMetadata / GrpcReceiveTrailingMetadata;
// inside OnMessage read GrpcReceiveBuffer.
type GrpcStreamHandler interface {
	OnInitialMetadata(numHeaders int)
	OnMessage(size int)
	OnTrailingMetadata(numTrailers int)
	OnClose(status uint32, message string)
}

// GrpcStream is an open gRPC stream.
type GrpcStream uint32

// OpenGrpcStream opens a gRPC stream of service/method on cluster.
func OpenGrpcStream(cluster, service, method string, metadata []Pair, handler GrpcStreamHandler) (GrpcStream, error) {
	mp, mn := bytesPtr(encodeOptional(metadata))
	if s := proxy_grpc_stream(cluster, service, method, mp, mn, &retU32); s != 0 {
		return 0, statusErr(s)
	}
	grpcCalls[retU32] = grpcCall{contextID: currentContextID, stream: handler}
	return GrpcStream(retU32), nil
}

// Send sends one serialized message; endStream half-closes the stream.
func (s GrpcStream) Send(msg []byte, endStream bool) error {
	p, n := bytesPtr(msg)
	end := uint32(0)
	if endStream {
		end = 1
	}
	return status(proxy_grpc_send(uint32(s), p, n, end))
}

// Close closes the stream gracefully; OnClose is still delivered.
func (s GrpcStream) Close() error { return status(proxy_grpc_close(uint32(s))) }

// Cancel abandons the stream (or a unary call's token): no further callbacks.
func (s GrpcStream) Cancel() error {
	delete(grpcCalls, uint32(s))
	return status(proxy_grpc_cancel(uint32(s)))
}

// CancelGrpcCall abandons a unary call: its callback will not run.
func CancelGrpcCall(token uint32) error { return GrpcStream(token).Cancel() }

func encodeOptional(pairs []Pair) []byte {
	if len(pairs) == 0 {
		return nil
	}
	return abi.EncodePairs(pairs)
}

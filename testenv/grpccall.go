package testenv

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// rawCodec passes message bytes through unchanged (the guest serializes its protos).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(*[]byte); ok {
		return *b, nil
	}
	return nil, errors.New("testenv: raw codec wants *[]byte")
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return errors.New("testenv: raw codec wants *[]byte")
	}
	*b = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

type grpcConn struct{ cc *grpc.ClientConn }

func (c *grpcConn) close() { _ = c.cc.Close() }

func (h *Host) grpcConn(addr string) (*grpc.ClientConn, error) {
	h.grpcMu.Lock()
	defer h.grpcMu.Unlock()
	if h.grpcConns == nil {
		h.grpcConns = map[string]*grpcConn{}
	}
	if c, ok := h.grpcConns[addr]; ok {
		return c.cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	h.grpcConns[addr] = &grpcConn{cc: cc}
	return cc, nil
}

// grpcCall is an in-flight gRPC call (odd token) or stream (even token).
type grpcCall struct {
	stream       bool
	cluster      string // the service argument (Options.OnCallout)
	cancel       context.CancelFunc
	mu           sync.Mutex
	queue        []grpcOut
	wake         chan struct{}
	localClosed  bool
	remoteClosed bool
}

type grpcOut struct {
	msg       []byte
	closeSend bool
}

// grpcTarget resolves the `service` argument of proxy_grpc_call/proxy_grpc_stream: a
// cluster name from Options.Clusters (what newer Envoy accepts when the bytes are not a
// GrpcService proto), or a serialized envoy.config.core.v3.GrpcService whose
// envoy_grpc.cluster_name is in Options.Clusters or whose google_grpc.target_uri is
// dialled directly (see the body for the statuses of unknown clusters).
func (v *vm) grpcTarget(service []byte) (string, abi.Status) {
	if addr, ok := v.h.opts.Clusters[string(service)]; ok {
		return addr, abi.StatusOK
	}
	// Envoy's Context::grpcCall: bytes that do not parse as a GrpcService are a
	// cluster name, ParseFailure when no such cluster exists; a parsed GrpcService is
	// used with skip_cluster_check, so an unknown envoy_grpc cluster fails the
	// request at once (the async client's "Cluster not available") and the call
	// returns InternalFailure.
	valid := func(b []byte) bool {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return false
			}
			b = b[m:]
		}
		return true
	}
	field := func(b []byte, want protowire.Number) ([]byte, bool) {
		var found []byte
		ok := false
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return nil, false
			}
			b = b[n:]
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, false
			}
			if num == want && typ == protowire.BytesType {
				val, _ := protowire.ConsumeBytes(b)
				found, ok = val, true
			}
			b = b[m:]
		}
		return found, ok
	}
	if len(service) == 0 || !valid(service) {
		return "", abi.StatusParseFailure
	}
	if eg, ok := field(service, 1); ok {
		if name, ok := field(eg, 1); ok {
			if addr, ok := v.h.opts.Clusters[string(name)]; ok {
				return addr, abi.StatusOK
			}
		}
		return "", abi.StatusInternalFailure
	}
	if gg, ok := field(service, 2); ok {
		if uri, ok := field(gg, 1); ok && len(uri) > 0 {
			return string(uri), abi.StatusOK
		}
	}
	return "", abi.StatusInternalFailure
}

func pairsMD(pairs []abi.Pair) metadata.MD {
	md := metadata.MD{}
	for _, p := range pairs {
		k := lowerASCII(p.Key)
		if strings.HasPrefix(k, ":") {
			continue
		}
		md.Append(k, p.Value)
	}
	return md
}

func mdPairs(md metadata.MD) []abi.Pair {
	out := []abi.Pair{}
	for k, vs := range md {
		for _, val := range vs {
			out = append(out, abi.Pair{Key: k, Value: val})
		}
	}
	return out
}

// readGrpcArgs reads service, service name, method and initial metadata.
// sent is the call as the guest passed it (Options.OnCallout).
func (v *vm) readGrpcArgs(st []uint64) (addr, method string, md metadata.MD, sent CalloutRequest, status abi.Status) {
	svc, ok1 := v.read(u32(st[0]), u32(st[1]))
	svcName, ok2 := v.readString(u32(st[2]), u32(st[3]))
	meth, ok3 := v.readString(u32(st[4]), u32(st[5]))
	mb, ok4 := v.read(u32(st[6]), u32(st[7]))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return "", "", nil, sent, abi.StatusInvalidMemoryAccess
	}
	pairs, err := abi.DecodePairs(mb)
	if err != nil {
		return "", "", nil, sent, abi.StatusBadArgument
	}
	addr, status = v.grpcTarget(append([]byte(nil), svc...))
	if status != abi.StatusOK {
		return "", "", nil, sent, status
	}
	sent = CalloutRequest{Worker: v.w.id, Cluster: string(svc), Headers: pairs, Service: svcName, Method: meth}
	return addr, "/" + svcName + "/" + meth, pairsMD(pairs), sent, abi.StatusOK
}

func (v *vm) nextGrpcToken(stream bool) uint32 {
	for {
		v.nextGrpc++
		t := v.nextGrpc
		if t == 0 || (t%2 == 0) != stream {
			continue
		}
		if _, busy := v.grpcCalls[t]; !busy {
			return t
		}
	}
}

func grpcStatusOf(err error) (uint32, string) {
	if err == nil {
		return 0, ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return uint32(codes.DeadlineExceeded), err.Error()
	}
	s := status.Convert(err)
	return uint32(s.Code()), s.Message()
}

// grpcCallStart implements proxy_grpc_call. As in Envoy, the call belongs to the root
// context; success delivers only proxy_on_grpc_receive(root, token, size), failure only
// proxy_on_grpc_close(root, token, status) with the message in proxy_get_status.
// Caveat: the timeout is real time, even with a FakeClock.
func (v *vm) grpcCallStart(st []uint64) abi.Status {
	addr, method, md, sent, status := v.readGrpcArgs(st)
	if status != abi.StatusOK {
		return status
	}
	req, ok := v.read(u32(st[8]), u32(st[9]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	req = append([]byte(nil), req...)
	timeout := time.Duration(u32(st[10])) * time.Millisecond
	cc, err := v.h.grpcConn(addr)
	if err != nil {
		return abi.StatusInternalFailure
	}
	token := v.nextGrpcToken(false)
	rid := v.cur.root
	if !v.putU32(u32(st[11]), token) {
		return abi.StatusInvalidMemoryAccess
	}
	if f := v.h.opts.OnCallout; f != nil {
		sent.Kind, sent.Body, sent.TimeoutMS = "grpc", req, int64(u32(st[10]))
		f(sent)
	}
	ctx, cancel := context.WithCancel(v.h.calloutCtx)
	v.grpcCalls[token] = &grpcCall{cancel: cancel}
	go func() {
		defer cancel()
		cctx := metadata.NewOutgoingContext(ctx, md)
		if timeout > 0 {
			var c2 context.CancelFunc
			cctx, c2 = context.WithTimeout(cctx, timeout)
			defer c2()
		}
		var resp []byte
		err := cc.Invoke(cctx, method, &req, &resp, grpc.ForceCodec(rawCodec{}))
		code, msg := grpcStatusOf(err)
		// The deadline passed (the server, which got it as grpc-timeout rounded up, may
		// reset the stream before our context's timer fires).
		deadline, _ := cctx.Deadline()
		if err != nil && timeout > 0 && !time.Now().Before(deadline) {
			// Envoy's async client runs the call's timeout as its router's: the 504
			// "upstream request timeout" local reply (Router::Filter::
			// onUpstreamTimeoutAbort) reaches a gRPC request as grpc-status 14
			// (Grpc::Utility::httpToGrpcStatus) with that message.
			code, msg = uint32(codes.Unavailable), "upstream request timeout"
		}
		v.w.run(func() {
			if _, ok := v.grpcCalls[token]; !ok {
				return
			}
			delete(v.grpcCalls, token)
			v.onRoot(rid, func() {
				if err == nil {
					v.grpcRecv, v.grpcInRecv = resp, true
					v.call3(v.fns.onGrpcReceive, uint64(v.cur.id), uint64(token), uint64(len(resp)))
					v.grpcRecv, v.grpcInRecv = nil, false
					return
				}
				v.status, v.statusMsg = code, msg
				v.call3(v.fns.onGrpcClose, uint64(v.cur.id), uint64(token), uint64(code))
				v.statusMsg = ""
			})
		})
	}()
	return abi.StatusOK
}

// grpcStreamStart implements proxy_grpc_stream: callbacks to the root context in
// Envoy's order: initial metadata, each message, trailing metadata, then close(status).
func (v *vm) grpcStreamStart(st []uint64) abi.Status {
	addr, method, md, sent, status := v.readGrpcArgs(st)
	if status != abi.StatusOK {
		return status
	}
	cc, err := v.h.grpcConn(addr)
	if err != nil {
		return abi.StatusInternalFailure
	}
	token := v.nextGrpcToken(true)
	rid := v.cur.root
	if !v.putU32(u32(st[8]), token) {
		return abi.StatusInvalidMemoryAccess
	}
	ctx, cancel := context.WithCancel(v.h.calloutCtx)
	call := &grpcCall{stream: true, cancel: cancel, wake: make(chan struct{}, 1), cluster: sent.Cluster}
	v.grpcCalls[token] = call
	if f := v.h.opts.OnCallout; f != nil {
		sent.Kind = "grpc_stream"
		f(sent)
	}
	deliver := func(f func()) {
		v.w.run(func() {
			if v.grpcCalls[token] != call {
				return
			}
			v.onRoot(rid, f)
		})
	}
	go func() {
		cs, err := cc.NewStream(metadata.NewOutgoingContext(ctx, md),
			&grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			code, msg := grpcStatusOf(err)
			v.grpcStreamClosed(token, call, code, msg, deliver)
			return
		}
		go call.sender(ctx, cs)
		if hdr, err := cs.Header(); err == nil {
			pairs := mdPairs(hdr)
			deliver(func() {
				v.grpcInit = pairs
				v.call3(v.fns.onGrpcInitialMetadata, uint64(v.cur.id), uint64(token), uint64(len(pairs)))
				v.grpcInit = nil
			})
		}
		for {
			var msg []byte
			err := cs.RecvMsg(&msg)
			if err != nil {
				code, text := uint32(0), ""
				if err != io.EOF {
					code, text = grpcStatusOf(err)
				}
				if tr := mdPairs(cs.Trailer()); true {
					deliver(func() {
						v.grpcTrail = tr
						v.call3(v.fns.onGrpcTrailingMeta, uint64(v.cur.id), uint64(token), uint64(len(tr)))
						v.grpcTrail = nil
					})
				}
				v.grpcStreamClosed(token, call, code, text, deliver)
				return
			}
			deliver(func() {
				v.grpcRecv, v.grpcInRecv = msg, true
				v.call3(v.fns.onGrpcReceive, uint64(v.cur.id), uint64(token), uint64(len(msg)))
				v.grpcRecv, v.grpcInRecv = nil, false
			})
		}
	}()
	return abi.StatusOK
}

func (v *vm) grpcStreamClosed(token uint32, call *grpcCall, code uint32, msg string, deliver func(func())) {
	deliver(func() {
		v.status, v.statusMsg = code, msg
		v.call3(v.fns.onGrpcClose, uint64(v.cur.id), uint64(token), uint64(code))
		v.statusMsg = ""
		call.remoteClosed = true
		if call.localClosed && v.grpcCalls[token] == call {
			delete(v.grpcCalls, token)
		}
	})
}

func (c *grpcCall) push(o grpcOut) {
	c.mu.Lock()
	c.queue = append(c.queue, o)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *grpcCall) sender(ctx context.Context, cs grpc.ClientStream) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, o := range q {
			if o.msg != nil {
				m := o.msg
				if err := cs.SendMsg(&m); err != nil {
					return
				}
			}
			if o.closeSend {
				_ = cs.CloseSend()
				return
			}
		}
	}
}

// grpcSend implements proxy_grpc_send: BadArgument for a call token, NotFound for an
// unknown stream.
func (v *vm) grpcSend(token uint32, msg []byte, endStream bool) abi.Status {
	if token%2 == 1 {
		return abi.StatusBadArgument
	}
	c, ok := v.grpcCalls[token]
	if !ok || c.localClosed {
		return abi.StatusNotFound
	}
	if f := v.h.opts.OnCallout; f != nil {
		f(CalloutRequest{Worker: v.w.id, Kind: "grpc_send", Cluster: c.cluster, Body: msg, EndStream: endStream})
	}
	c.push(grpcOut{msg: msg, closeSend: endStream})
	if endStream {
		c.localClosed = true
	}
	return abi.StatusOK
}

// grpcCancel implements proxy_grpc_cancel: the call or stream is dropped without any
// further callback.
func (v *vm) grpcCancel(token uint32) abi.Status {
	c, ok := v.grpcCalls[token]
	if !ok {
		return abi.StatusNotFound
	}
	c.cancel()
	delete(v.grpcCalls, token)
	return abi.StatusOK
}

// grpcClose implements proxy_grpc_close: a call is cancelled; a stream is half-closed
// (its remaining callbacks still arrive).
func (v *vm) grpcClose(token uint32) abi.Status {
	c, ok := v.grpcCalls[token]
	if !ok {
		return abi.StatusNotFound
	}
	if !c.stream {
		c.cancel()
		delete(v.grpcCalls, token)
		return abi.StatusOK
	}
	if !c.localClosed {
		c.localClosed = true
		c.push(grpcOut{closeSend: true})
	}
	if c.remoteClosed {
		delete(v.grpcCalls, token)
	}
	return abi.StatusOK
}

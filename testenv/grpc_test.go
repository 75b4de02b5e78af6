package testenv

import (
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

func startGrpcEcho(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		md, _ := metadata.FromIncomingContext(ss.Context())
		_ = ss.SendHeader(metadata.Pairs("x-initial", "i1"))
		ss.SetTrailer(metadata.Pairs("x-trailer", "t1"))
		for {
			var b []byte
			if err := ss.RecvMsg(&b); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			out := []byte("echo:" + string(b))
			if method == "/test.Echo/Unary" && len(md.Get("x-md")) == 1 {
				out = append(out, "+md"...)
			}
			if err := ss.SendMsg(&out); err != nil {
				return err
			}
			if method == "/test.Echo/Unary" {
				return nil
			}
		}
	}))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

func TestGrpcCall(t *testing.T) {
	addr := startGrpcEcho(t)
	h := newHost(t, Options{Clusters: map[string]string{"grpcsvc": addr}}, raw(t, "a", "grpc"))
	resp := do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-grpc-log"); got != "msg:echo:hello+md" {
		t.Fatalf("x-grpc-log = %q (%v)", got, resp.Upstream.Headers)
	}
}

func TestGrpcStream(t *testing.T) {
	addr := startGrpcEcho(t)
	h := newHost(t, Options{Clusters: map[string]string{"grpcsvc": addr}}, raw(t, "a", "grpcstream"))
	resp := do(t, h, Request{})
	want := "initial:i1,msg:echo:a,msg:echo:b,trailing:t1,close:0:"
	if got, _ := resp.Upstream.Headers.Get("x-grpc-log"); got != want {
		t.Fatalf("x-grpc-log = %q, want %q", got, want)
	}
}

// TestGrpcServiceProto: a serialized GrpcService names its cluster in envoy_grpc; an
// unknown one is InternalFailure (Envoy's Context::grpcCall with skip_cluster_check:
// the request fails at once and sendRaw returns nothing).
func TestGrpcServiceProto(t *testing.T) {
	addr := startGrpcEcho(t)
	h := newHost(t, Options{Clusters: map[string]string{"grpcsvc": addr}}, raw(t, "a", "grpcproto"))
	resp := do(t, h, Request{})
	if got, ok := resp.Upstream.Headers.Get("x-grpc-error"); ok {
		t.Fatalf("known cluster in a GrpcService: x-grpc-error = %q", got)
	}
	h = newHost(t, Options{}, raw(t, "b", "grpcproto"))
	resp = do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-grpc-error"); got != "10" {
		t.Fatalf("x-grpc-error = %q, want 10 (InternalFailure)", got)
	}
}

func TestGrpcUnknownCluster(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "grpc"))
	resp := do(t, h, Request{})
	// Envoy's Context::grpcCall: a cluster name it does not know is ParseFailure.
	if got, _ := resp.Upstream.Headers.Get("x-grpc-error"); got != "4" {
		t.Fatalf("x-grpc-error = %q, want 4 (ParseFailure)", got)
	}
}

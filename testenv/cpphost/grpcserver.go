package cpphost

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rawCodec passes gRPC messages as bytes (*[]byte), so the loopback server answers with
// exactly the scenario's message, whatever the service.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "meshplug-cpphost-raw" }

// grpcServer starts a loopback gRPC server (h2c, as testenv's gRPC callouts speak)
// answering every unary method with answer(); it returns its address.
func grpcServer(t testing.TB, answer func() GrpcAnswer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			a := answer()
			if a.Code != 0 {
				return status.Error(codes.Code(a.Code), a.Message)
			}
			resp := a.Response
			return stream.SendMsg(&resp)
		}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

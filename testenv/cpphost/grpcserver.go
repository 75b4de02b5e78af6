package cpphost

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
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
// answering every method, unary or streaming, with answer() once the client's first
// message arrived; it returns its address.
func grpcServer(t testing.TB, answer func() GrpcAnswer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	md := func(pairs [][2]string) metadata.MD {
		m := metadata.MD{}
		for _, p := range pairs {
			m.Append(p[0], p[1])
		}
		return m
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			var req []byte
			if err := stream.RecvMsg(&req); err != nil {
				return err
			}
			a := answer()
			if a.Failure == "timeout" {
				// Nothing until the client's deadline cancels the call.
				<-stream.Context().Done()
				return stream.Context().Err()
			}
			if len(a.InitialMetadata) > 0 {
				if err := stream.SendHeader(md(a.InitialMetadata)); err != nil {
					return err
				}
			}
			for _, m := range a.Messages {
				if err := stream.SendMsg(&m); err != nil {
					return err
				}
			}
			stream.SetTrailer(md(a.TrailingMetadata))
			if a.Code != 0 {
				return status.Error(codes.Code(a.Code), a.Message)
			}
			if a.Messages != nil {
				return nil
			}
			resp := a.Response
			return stream.SendMsg(&resp)
		}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

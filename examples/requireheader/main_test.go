package main

import (
	"testing"

	"github.com/meshplug/meshplug/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequireHeader drives the compiled requireheader.wasm through testenv.
func TestRequireHeader(t *testing.T) {
	h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Wasm: testenv.MustBuildGuest(t, ".")})
	for _, tc := range []struct {
		name       string
		headers    [][2]string
		status     int
		upstream   bool
		grpcStatus string // grpc-status of a gRPC reply, "" for none
	}{
		{name: "present", headers: [][2]string{{"x-tenant", "acme"}}, status: 200, upstream: true},
		{name: "present but empty", headers: [][2]string{{"x-tenant", ""}}, status: 200, upstream: true},
		{name: "absent", headers: [][2]string{{"x-other", "1"}}, status: 400},
		{name: "absent, gRPC", headers: [][2]string{{"content-type", "application/grpc"}}, status: 200, grpcStatus: "13"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.MustDo(t, testenv.Request{Path: "/", Headers: tc.headers})
			assert.Equal(t, tc.status, resp.Status)
			assert.Equal(t, tc.upstream, resp.Upstream != nil, "reached the upstream")
			if tc.upstream {
				return
			}
			require.True(t, resp.LocalReply)
			assert.Equal(t, "meshplug_local_reply", resp.Details)
			if tc.grpcStatus != "" {
				all := append(append(testenv.Headers{}, resp.Headers...), resp.Trailers...)
				v, _ := all.Get("grpc-status")
				assert.Equal(t, tc.grpcStatus, v)
				v, _ = all.Get("grpc-message")
				assert.Contains(t, v, "missing_header")
				return
			}
			ct, _ := resp.Headers.Get("content-type")
			assert.Equal(t, "application/json", ct)
			assert.JSONEq(t, `{"error":"missing_header","header":"x-tenant"}`, string(resp.Body))
		})
	}
}

package cpphost

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The response path's buffer limit (Envoy's ActiveStreamEncoderFilter::
// responseDataTooLarge): a plugin buffering more than 1 MiB of the upstream's body gets
// the stream reset once the response headers reached the client, or a 500 "Internal
// Server Error" (response_payload_too_large) sent past the filters while a plugin still
// holds them (allow_on_headers_stop_iteration: the conformance guest's resp-buffer op
// pauses the response headers and buffers the body); at the limit the body goes on.
// The request side with allow_on_headers_stop_iteration too: the body op holds the
// request headers while it buffers the body, then writes them from the last body
// callback; above the limit, 413.
func TestResponseBufferLimit(t *testing.T) {
	wasm := BuildGuest(t, "../conformance/guest")
	// 1 MiB + 16 KiB + 1 in 16 KiB chunks: the plugin holds 1 MiB + 16 KiB before the
	// last chunk; 1 MiB + 1: it holds 1 MiB, then the last (1 byte) chunk ends it.
	over := strings.Repeat("z", 1<<20+16<<10+1)
	under := strings.Repeat("u", 1<<20+1)
	grpc := [2]string{"content-type", "application/grpc"}
	down := func(op, body string, h ...[2]string) Step {
		return Step{Request: &Request{Path: "/download", Headers: append([][2]string{{"x-op", op}}, h...)},
			Upstream: &Upstream{Status: 200, Body: body, Headers: [][2]string{{"x-up", "1"}}}}
	}
	up := func(op, body string) Step {
		return Step{Request: &Request{Method: "POST", Path: "/upload", Headers: [][2]string{{"x-op", op}}, Body: body},
			Upstream: &Upstream{Status: 200, Body: "ok"}}
	}
	type want struct {
		status  int
		reset   bool
		details string
		body    string // "" when not checked
	}
	for _, tc := range []struct {
		name  string
		allow bool
		steps []Step
		want  []want
	}{
		{
			name: "headers-sent",
			steps: []Step{
				down("response", over), down("response", over, grpc), down("response", under),
			},
			want: []want{{reset: true}, {reset: true}, {status: 200, body: strings.ToUpper(under)}},
		},
		{
			name:  "headers-held",
			allow: true,
			steps: []Step{
				down("resp-buffer", over), down("resp-buffer", over, grpc), down("resp-buffer", under),
				down("response", over),
				up("body", "abcdef"), up("body", over), up("body", under),
			},
			want: []want{
				{status: 500, details: "response_payload_too_large", body: "Internal Server Error"},
				{status: 200, details: "response_payload_too_large"}, // grpc-status 2 in the headers
				{status: 200, body: under},
				{reset: true},
				{status: 200}, {status: 413, details: "request_payload_too_large"}, {status: 200},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := Scenario{
				Plugins:                     []Plugin{{Name: "conformance", RootID: "conformance_root", VMID: "conf", Wasm: wasm, Config: `{}`}},
				AllowOnHeadersStopIteration: tc.allow,
				Steps:                       tc.steps,
			}
			ref := RunTestenv(t, sc)
			require.True(t, ref.Loaded(), "testenv loads: %+v", ref.Loads)
			require.Len(t, ref.Results, len(sc.Steps))
			for i, r := range ref.Results {
				w := tc.want[i]
				assert.Equal(t, w.status, r.Status, "testenv request %d: status", i)
				assert.Equal(t, w.reset, r.Reset, "testenv request %d: reset", i)
				assert.Equal(t, w.details, r.Details, "testenv request %d: details", i)
				if w.body != "" {
					assert.Equal(t, digest(w.body), digest(r.Body), "testenv request %d: body", i)
				}
			}
			for _, host := range []string{Host52a0291, Host3930b7b} {
				t.Run(host, func(t *testing.T) { Compare(t, ref, RunCppHost(t, host, sc)) })
			}
		})
	}
}

// gRPC streams (proxy_grpc_stream) and unary call timeouts, driven by the conformance
// guest: its grpc-stream op opens grpc.health.v1.Health/Watch, sends one request
// (end_stream) and reports the callbacks it got; after the first message it cancels the
// stream (no more callbacks); a stream the service fails, or ends without a message,
// gets initial metadata (empty: a trailers-only answer), trailing metadata and the close
// with the status. Its
// grpc-call op with a timeout the service lets pass gets Envoy's close: grpc-status 14
// "upstream request timeout".
func TestGrpcStreamsAndTimeouts(t *testing.T) {
	wasm := BuildGuest(t, "../conformance/guest")
	op := func(name string, a GrpcAnswer, h ...[2]string) Step {
		s := get("/op/"+name, append([][2]string{{"x-op", name}, {"x-cluster", "health"}, {"x-service", "ready"}}, h...)...)
		s.GrpcCallouts = map[string]GrpcAnswer{"health": a}
		return s
	}
	serving, notServing := []byte{0x08, 0x01}, []byte{0x08, 0x02} // HealthCheckResponse{status}
	sc := Scenario{
		Plugins: []Plugin{{Name: "conformance", RootID: "conformance_root", VMID: "conf", Wasm: wasm, Config: `{}`}},
		Steps: []Step{
			op("grpc-stream", GrpcAnswer{InitialMetadata: [][2]string{{"x-md", "1"}}, Messages: [][]byte{serving, notServing},
				TrailingMetadata: [][2]string{{"x-trailer", "2"}}}),
			op("grpc-stream", GrpcAnswer{Code: 14, Message: "health service down"}),
			op("grpc-stream", GrpcAnswer{Code: 5, Message: "unknown service", Messages: [][]byte{}}),
			op("grpc-stream", GrpcAnswer{Messages: [][]byte{}}), // ends OK without a message
			op("grpc-call", GrpcAnswer{Failure: "timeout"}, [2]string{"x-timeout-ms", "50"}),
			op("grpc-call", GrpcAnswer{Response: serving}, [2]string{"x-timeout-ms", "5000"}),
			op("grpc-call", GrpcAnswer{Code: 7, Message: "denied"}),
		},
	}
	want := RunTestenv(t, sc)
	require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
	require.Len(t, want.Results, 7)
	for i, w := range []map[string]any{
		{"open": "ok", "send": "ok", "events": []any{"initial_metadata", "message"}, "messages": []any{"0801/ok"},
			"cancel": "ok", "close_status": 0.0, "close_message": "cancelled by guest"},
		{"events": []any{"initial_metadata", "trailing_metadata", "close"}, "close_status": 14.0, "close_message": "health service down"},
		{"events": []any{"initial_metadata", "trailing_metadata", "close"}, "close_status": 5.0, "close_message": "unknown service"},
		{"events": []any{"initial_metadata", "trailing_metadata", "close"}, "close_status": 0.0, "close_message": ""},
		{"dispatch": "ok", "grpc_status": 14.0, "grpc_message": "upstream request timeout", "response_hex": ""},
		{"dispatch": "ok", "grpc_status": 0.0, "grpc_message": "", "response_hex": "0801"},
		{"dispatch": "ok", "grpc_status": 7.0, "grpc_message": "denied", "response_hex": ""},
	} {
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(want.Results[i].Body), &got), "testenv request %d: %s", i, want.Results[i].Body)
		for k, v := range w {
			assert.Equal(t, v, got[k], "testenv request %d: %s", i, k)
		}
	}
	for _, host := range []string{Host52a0291, Host3930b7b} {
		t.Run(host, func(t *testing.T) { Compare(t, want, RunCppHost(t, host, sc)) })
	}
}

// A response paused at its headers on an HTTP callout and resumed from the callout's
// callback (the conformance guest's resp-call op), Envoy's default
// StopAllIterationAndWatermark: the callback sees no body yet and writes a response
// header; the body, arrived meanwhile, then reaches the body callback in one piece
// (three 16 KiB chunks merged).
func TestResponsePausedOnCallout(t *testing.T) {
	wasm := BuildGuest(t, "../conformance/guest")
	call := func(body string) Step {
		return Step{Request: &Request{Path: "/r", Headers: [][2]string{{"x-op", "resp-call"}, {"x-cluster", "backend"}}},
			Upstream: &Upstream{Status: 200, Body: body}}
	}
	big := strings.Repeat("b", 40000)
	sc := Scenario{
		Plugins:  []Plugin{{Name: "conformance", RootID: "conformance_root", VMID: "conf", Wasm: wasm, Config: `{}`}},
		Callouts: map[string]CalloutAnswer{"backend": {Status: 200, Body: "pong"}},
		Steps:    []Step{call("ok"), call(big)},
	}
	want := RunTestenv(t, sc)
	require.True(t, want.Loaded(), "testenv loads: %+v", want.Loads)
	require.Len(t, want.Results, 2)
	for i, body := range []string{"ok", big} {
		r := want.Results[i]
		assert.Equal(t, 200, r.Status)
		assert.Equal(t, digest(body+"|body-callback resumed=true"), digest(r.Body), "request %d: one body callback, after the resume", i)
		assert.Contains(t, r.Headers, [2]string{"x-paused-body", "0/ok/calls=0"}, "request %d: what the callout's callback saw", i)
	}
	for _, host := range []string{Host52a0291, Host3930b7b} {
		t.Run(host, func(t *testing.T) { Compare(t, want, RunCppHost(t, host, sc)) })
	}
}

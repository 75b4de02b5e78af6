package conformance

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

// TestBodyChunks: bodies arrive in chunks (Options.RequestChunkSize), one body callback
// each; a plugin that pauses on a chunk gets the next callback with everything buffered
// so far (size and bytes), as Envoy's buffered body; one that continues streams chunk
// by chunk; chunks held behind a headers Pause come to the plugin as one.
func TestBodyChunks(t *testing.T) {
	t.Run("buffering plugin sees the accumulated body", func(t *testing.T) {
		h := start(t, setup{opts: testenv.Options{AllowOnHeadersStopIteration: true, RequestChunkSize: 4}})
		resp := do(t, h, testenv.Request{Method: "POST", Path: "/b", Body: []byte("hello world"), Headers: [][2]string{{"x-op", "body"}}})
		require.NotNil(t, resp.Upstream)
		up := resp.Upstream
		calls, _ := up.Headers.Get("x-body-calls")
		assert.Equal(t, "4,8,11", calls)
		seen, _ := up.Headers.Get("x-body-seen")
		assert.Equal(t, "hello world", seen)
		size, _ := up.Headers.Get("x-body-size")
		assert.Equal(t, "11/11", size)
		assert.Equal(t, "REPLACED:hello world:APPENDED", string(up.Body))
	})
	addr := backend(t)
	for _, tc := range []struct {
		name  string
		allow bool
		want  string
	}{
		{name: "streaming plugin gets each chunk", allow: true,
			want: "pay|body-callback resumed=falseloa|body-callback resumed=falsed|body-callback resumed=false"},
		{name: "chunks held behind a headers pause come as one", want: "payload|body-callback resumed=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, setup{opts: testenv.Options{AllowOnHeadersStopIteration: tc.allow, RequestChunkSize: 3,
				Clusters: map[string]string{"backend": addr}}})
			resp := do(t, h, testenv.Request{Method: "POST", Path: "/p", Body: []byte("payload"), Headers: [][2]string{
				{"x-op", "http-call"}, {"x-cluster", "backend"}, {"x-call-path", "/"}, {"x-resume", "1"}}})
			require.NotNil(t, resp.Upstream)
			assert.Equal(t, tc.want, string(resp.Upstream.Body))
		})
	}
	t.Run("response chunks", func(t *testing.T) {
		h := start(t, setup{opts: testenv.Options{ResponseChunkSize: 5, Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
			return &testenv.UpstreamResponse{Status: 200, Body: []byte("response body")}
		}}})
		resp := do(t, h, testenv.Request{Path: "/r", Headers: [][2]string{{"x-op", "response"}}})
		assert.Equal(t, "RESPONSE BODY", string(resp.Body))
	})
}

// TestBufferLimit: a body a plugin buffers (Pause from its body callback) beyond the
// buffer limit is answered like Envoy: 413 for a request, a reset for a response whose
// headers already went to the client.
func TestBufferLimit(t *testing.T) {
	body := []byte("hello world") // chunks of 4: the guest buffers 4, then 8 bytes
	for _, tc := range []struct {
		name   string
		opts   testenv.Options
		body   []byte
		status int
	}{
		{name: "at the limit", opts: testenv.Options{BufferLimitBytes: 8, RequestChunkSize: 4}, body: body, status: 200},
		{name: "above the limit", opts: testenv.Options{BufferLimitBytes: 7, RequestChunkSize: 4}, body: body, status: 413},
		{name: "no limit", opts: testenv.Options{BufferLimitBytes: -1, RequestChunkSize: 4}, body: body, status: 200},
		{name: "Envoy's default 1 MiB", opts: testenv.Options{RequestChunkSize: 64 << 10},
			body: bytes.Repeat([]byte("x"), 1<<20+(64<<10)+1), status: 413},
		{name: "Envoy's default 1 MiB, under", opts: testenv.Options{RequestChunkSize: 64 << 10},
			body: bytes.Repeat([]byte("x"), 1<<20+1), status: 200}, // buffers 1 MiB, continues at the end
		// Sent in one piece, the body still reaches the guest in 16 KiB chunks as
		// Envoy's HTTP/2 codec hands over DATA frames: the buffer limit applies.
		{name: "default chunks, one piece", opts: testenv.Options{},
			body: bytes.Repeat([]byte("x"), 2<<20), status: 413},
		{name: "one chunk on request (RequestChunkSize < 0)", opts: testenv.Options{RequestChunkSize: -1},
			body: bytes.Repeat([]byte("x"), 2<<20), status: 200}, // the guest continues at end of stream
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.AllowOnHeadersStopIteration = true
			tc.opts.Upstream = func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
				return &testenv.UpstreamResponse{Status: 200}
			}
			h := start(t, setup{opts: tc.opts})
			resp := do(t, h, testenv.Request{Method: "POST", Path: "/b", Body: tc.body, Headers: [][2]string{{"x-op", "body"}}})
			assert.Equal(t, tc.status, resp.Status)
			if tc.status == 413 {
				assert.True(t, resp.LocalReply)
				assert.Equal(t, "request_payload_too_large", resp.Details)
				assert.Equal(t, "Payload Too Large", string(resp.Body))
				assert.Nil(t, resp.Upstream)
			}
		})
	}
	t.Run("response above the limit, headers held", func(t *testing.T) {
		for _, limit := range []int{7, 13} {
			h := start(t, setup{opts: testenv.Options{AllowOnHeadersStopIteration: true, BufferLimitBytes: limit, ResponseChunkSize: 5,
				Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
					return &testenv.UpstreamResponse{Status: 200, Body: []byte("response body")}
				}}})
			resp := do(t, h, testenv.Request{Path: "/r", Headers: [][2]string{{"x-op", "resp-buffer"}}})
			if limit == 13 {
				assert.Equal(t, 200, resp.Status)
				assert.Equal(t, "response body", string(resp.Body))
				continue
			}
			assert.Equal(t, 500, resp.Status, "Envoy's responseDataTooLarge before the headers went out")
			assert.Equal(t, "response_payload_too_large", resp.Details)
			assert.Equal(t, "Internal Server Error", string(resp.Body))
		}
	})
	t.Run("response above the limit", func(t *testing.T) {
		h := start(t, setup{opts: testenv.Options{BufferLimitBytes: 7, ResponseChunkSize: 5, Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
			return &testenv.UpstreamResponse{Status: 200, Body: []byte("response body")}
		}}})
		resp := do(t, h, testenv.Request{Path: "/r", Headers: [][2]string{{"x-op", "response"}}})
		assert.True(t, resp.Reset, "headers already went to the client: Envoy resets")
	})
}

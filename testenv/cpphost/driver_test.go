package cpphost

import (
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

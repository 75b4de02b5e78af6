package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With Options.AsyncUpstream the stream waits for the upstream without holding its
// worker: a second stream on the same (only) worker completes while the first one's
// upstream has not answered; the late answer then goes through the response callbacks.
func TestAsyncUpstream(t *testing.T) {
	held := make(chan func(*UpstreamResponse), 4)
	h := newHost(t, Options{
		Workers: 1,
		AsyncUpstream: func(r *UpstreamRequest, w *UpstreamWriter) {
			if r.Path == "/slow" {
				held <- w.Respond
				return
			}
			go w.Respond(&UpstreamResponse{Status: 201, Body: []byte("fast " + r.Method)})
		},
	}, raw(t, "a", "lifecycle"))
	slow := h.Start(Request{Path: "/slow"})
	respond := <-held
	fast := do(t, h, Request{Method: "POST", Path: "/fast", Body: []byte("x")})
	assert.Equal(t, 201, fast.Status)
	assert.Equal(t, "fast POST", string(fast.Body))
	require.False(t, slow.Done(), "the slow stream must wait for its upstream")
	respond(&UpstreamResponse{Status: 202, Headers: [][2]string{{"X-Up", "1"}}, Body: []byte("slow")})
	respond(&UpstreamResponse{Status: 500}) // a second answer changes nothing
	resp, err := slow.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 202, resp.Status)
	assert.Equal(t, "slow", string(resp.Body))
	v, _ := resp.Headers.Get("x-up")
	assert.Equal(t, "1", v)
	assert.Contains(t, callbackOrder(h, "response_"), "a response_headers")

	// A reset while the upstream has not answered ends the stream; the late answer is
	// dropped.
	s := h.Start(Request{Path: "/slow"})
	respond = <-held
	s.Reset()
	resp, err = s.Wait(context.Background())
	require.NoError(t, err)
	assert.True(t, resp.Reset)
	respond(&UpstreamResponse{Status: 200})
	assert.Equal(t, 201, do(t, h, Request{Path: "/after"}).Status)
}

// Options.LogRequestHeaders reports request headers as the filters left them, also
// when a later filter answered with a local reply (Envoy's %REQ()% in access logs).
func TestLogRequestHeaders(t *testing.T) {
	h := newHost(t, Options{LogRequestHeaders: []string{"X-Added", "x-absent"}}, raw(t, "a", "headers"), raw(t, "b", "deny"))
	resp := do(t, h, Request{Headers: [][2]string{{"x-added", "client"}}})
	assert.Equal(t, 403, resp.Status)
	assert.Equal(t, []string{"client", "1"}, resp.LoggedHeaders.Values("x-added"))
	_, ok := resp.LoggedHeaders.Get("x-absent")
	assert.False(t, ok)
}

// A response written frame by frame goes through the response callbacks as each frame
// comes (end_of_stream only on the last), and reaches Request.OnResponseFrame before
// the next one is written.
func TestAsyncUpstreamStreamed(t *testing.T) {
	writers := make(chan *UpstreamWriter, 1)
	h := newHost(t, Options{
		AsyncUpstream: func(r *UpstreamRequest, w *UpstreamWriter) { writers <- w },
	}, raw(t, "a", "lifecycle"), raw(t, "b", "lifecycle"))
	frames := make(chan ResponseFrame, 8)
	s := h.Start(Request{Path: "/stream", OnResponseFrame: func(f ResponseFrame) { frames <- f }})
	w := <-writers
	w.Headers(200, [][2]string{{"X-Up", "1"}}, false)
	f := <-frames
	v, _ := f.Headers.Get("x-up")
	assert.Equal(t, "1", v)
	assert.False(t, f.End)
	w.Data([]byte("one"), false)
	f = <-frames
	assert.Equal(t, "one", string(f.Data))
	assert.False(t, f.End)
	require.False(t, s.Done())
	w.Data([]byte("two"), false)
	assert.Equal(t, "two", string((<-frames).Data))
	w.Trailers([][2]string{{"x-t", "9"}})
	f = <-frames
	assert.True(t, f.End)
	v, _ = f.Trailers.Get("x-t")
	assert.Equal(t, "9", v)
	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "onetwo", string(resp.Body))
	w.Data([]byte("late"), true) // after the end: ignored
	var eos []string
	for _, e := range h.Logs() {
		if strings.HasPrefix(e.Message, "response_body") {
			fs := strings.Fields(e.Message)
			eos = append(eos, e.Plugin+":"+fs[2]+":"+fs[3])
		}
	}
	// Each chunk reaches b then a (response order) without end_of_stream: the
	// trailers end the stream.
	assert.Equal(t, []string{"b:3:0", "a:3:0", "b:3:0", "a:3:0"}, eos)

	// A body ended by an empty last chunk: the plugins get an empty body callback with
	// end_of_stream.
	s = h.Start(Request{Path: "/stream2"})
	w = <-writers
	w.Headers(200, nil, false)
	w.Data([]byte("x"), false)
	w.Data(nil, true)
	resp, err = s.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "x", string(resp.Body))
	var last string
	for _, e := range h.Logs() {
		if strings.HasPrefix(e.Message, "response_body") && e.Plugin == "a" {
			last = e.Message
		}
	}
	assert.Regexp(t, `^response_body \d+ 0 1$`, last)
}

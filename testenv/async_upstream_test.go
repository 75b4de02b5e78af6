package testenv

import (
	"context"
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
		AsyncUpstream: func(r *UpstreamRequest, respond func(*UpstreamResponse)) {
			if r.Path == "/slow" {
				held <- respond
				return
			}
			go respond(&UpstreamResponse{Status: 201, Body: []byte("fast " + r.Method)})
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

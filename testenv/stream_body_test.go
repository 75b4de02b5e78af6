package testenv

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyLines lists "plugin request_body size eos" for the lifecycle log lines.
func bodyLines(h *Host) []string {
	var out []string
	for _, e := range h.Logs() {
		if f := strings.Fields(e.Message); len(f) == 4 && f[0] == "request_body" {
			out = append(out, e.Plugin+" "+f[2]+" "+f[3])
		}
	}
	return out
}

// feed copies what the test writes into a pipe into the stream chunk by chunk, as a
// gateway reading a client's upload does; it ends the body at EOF.
func feed(s *Stream, r io.Reader) {
	buf := make([]byte, 64)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.Data(append([]byte(nil), buf[:n]...), false)
		}
		if err != nil {
			s.Data(nil, true)
			return
		}
	}
}

// settle applies what was posted to the stream's worker (Data, Trailers) before the
// test looks: the worker drains its queue under its lock.
func settle(s *Stream) { s.w.run(nil) }

// With Request.OpenBody and an AsyncUpstream, the upstream is called when the headers
// leave the chain and reads each chunk as it leaves the chain: it has the first chunk
// while the client has not sent the second. Every chunk goes through each plugin's
// body callback on its own, end_of_stream on the last only.
func TestRequestBodyStreamsToUpstream(t *testing.T) {
	ups := make(chan *UpstreamRequest, 1)
	ws := make(chan *UpstreamWriter, 1)
	h := newHost(t, Options{AsyncUpstream: func(r *UpstreamRequest, w *UpstreamWriter) { ups <- r; ws <- w }},
		raw(t, "a", "lifecycle"), raw(t, "b", "lifecycle"))
	s := h.Start(Request{Method: "POST", Path: "/up", OpenBody: true})
	up := <-ups
	require.NotNil(t, up.BodyReader, "the upstream must stream the body")
	assert.Nil(t, up.Body)
	assert.Equal(t, "/up", up.Path)

	cr, cw := io.Pipe() // the client's upload, under the test's control
	go feed(s, cr)
	_, err := cw.Write([]byte("first"))
	require.NoError(t, err)
	got := make([]byte, 5)
	_, err = io.ReadFull(up.BodyReader, got)
	require.NoError(t, err)
	assert.Equal(t, "first", string(got), "the upstream reads the first chunk before the client sent the last")
	assert.False(t, s.Done())

	// An answer written while the body still streams waits for the request's end.
	w := <-ws
	w.Respond(&UpstreamResponse{Status: 201, Body: []byte("stored")})
	_, err = cw.Write([]byte("second"))
	require.NoError(t, err)
	require.NoError(t, cw.Close())
	rest, err := io.ReadAll(up.BodyReader)
	require.NoError(t, err)
	assert.Equal(t, "second", string(rest))

	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 201, resp.Status)
	assert.Equal(t, "stored", string(resp.Body))
	assert.Equal(t, []string{"a 5 0", "b 5 0", "a 6 0", "b 6 0", "a 0 1", "b 0 1"}, bodyLines(h))
	assert.Equal(t, []string{"b response_headers", "a response_headers"}, callbackOrder(h, "response_headers"))
}

// Trailers end a streamed body; the upstream sees them once the reader returned EOF.
// Without an AsyncUpstream the body is gathered and the Upstream called at the end.
func TestRequestBodyStreamTrailers(t *testing.T) {
	for _, async := range []bool{true, false} {
		ups := make(chan *UpstreamRequest, 1)
		opts := Options{Upstream: func(r *UpstreamRequest) *UpstreamResponse {
			ups <- r
			return &UpstreamResponse{Status: 200, Body: []byte(r.Body)}
		}}
		if async {
			opts = Options{AsyncUpstream: func(r *UpstreamRequest, w *UpstreamWriter) {
				ups <- r
				go func() {
					b, err := io.ReadAll(r.BodyReader)
					if err != nil {
						w.Reset()
						return
					}
					v, _ := r.Trailers.Get("x-sum")
					w.Respond(&UpstreamResponse{Status: 200, Body: []byte(string(b) + " " + v)})
				}()
			}}
		}
		h := newHost(t, opts, raw(t, "a", "lifecycle"))
		s := h.Start(Request{Method: "POST", OpenBody: true})
		s.Data([]byte("ab"), false)
		s.Data([]byte("cd"), false)
		s.Trailers([][2]string{{"X-Sum", "4"}})
		resp, err := s.Wait(context.Background())
		require.NoError(t, err)
		up := <-ups
		if async {
			assert.Equal(t, "abcd 4", string(resp.Body))
		} else {
			assert.Equal(t, "abcd", string(up.Body))
		}
		v, _ := up.Trailers.Get("x-sum")
		assert.Equal(t, "4", v, "async %v", async)
		assert.Equal(t, []string{"a 2 0", "a 2 0"}, bodyLines(h), "async %v", async)
		assert.Contains(t, callbackOrder(h, "request_trailers"), "a request_trailers")
	}
}

// A plugin that paused its request headers (StopAllIterationAndWatermark) holds the
// chunks that stream in meanwhile without body callbacks (for it or the plugins
// after it) and without passing them to the upstream; once it continues, it gets them
// as one buffered body, then they go on.
func TestRequestBodyStreamHeldByPausedHeaders(t *testing.T) {
	addr, release := blockingCallout(t)
	ups := make(chan *UpstreamRequest, 1)
	h := newHost(t, Options{Clusters: map[string]string{"svc": addr}, AsyncUpstream: func(r *UpstreamRequest, w *UpstreamWriter) {
		ups <- r
		go func() {
			b, err := io.ReadAll(r.BodyReader)
			if err != nil {
				w.Reset()
				return
			}
			w.Respond(&UpstreamResponse{Status: 200, Body: b})
		}()
	}}, raw(t, "a", "callout lifecycle"), raw(t, "b", "lifecycle"))
	s := h.Start(Request{Method: "POST", OpenBody: true})
	s.Data([]byte("one"), false)
	s.Data([]byte("two"), false)
	settle(s)
	assert.Empty(t, bodyLines(h), "no body callback while the headers are paused")
	assert.Empty(t, ups, "the upstream waits for the headers")
	release()
	up := <-ups
	s.Data([]byte("three"), true)
	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 200, resp.Status)
	assert.Equal(t, "onetwothree", string(resp.Body))
	v, _ := up.Headers.Get("x-callout-status")
	assert.Equal(t, "200", v)
	assert.Equal(t, []string{"a 6 0", "b 6 0", "a 5 1", "b 5 1"}, bodyLines(h))
}

// A plugin that buffers a streamed body (Pause from its body callback) over
// Options.BufferLimitBytes gets the 413 local reply; the upstream, already called with
// the headers, sees its body reader fail.
func TestRequestBodyStreamBufferLimit(t *testing.T) {
	ups := make(chan *UpstreamRequest, 1)
	h := newHost(t, Options{BufferLimitBytes: 8, AsyncUpstream: func(r *UpstreamRequest, w *UpstreamWriter) { ups <- r }},
		raw(t, "a", "bodypause lifecycle"))
	s := h.Start(Request{Method: "POST", OpenBody: true})
	up := <-ups
	s.Data([]byte("12345"), false)
	settle(s)
	assert.False(t, s.Done(), "5 bytes buffered are under the limit")
	s.Data([]byte("67890"), false)
	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 413, resp.Status)
	assert.Equal(t, "request_payload_too_large", resp.Details)
	_, err = io.ReadAll(up.BodyReader)
	assert.ErrorIs(t, err, ErrStreamEnded)
	s.Data([]byte("late"), true) // ignored after the stream ended
	settle(s)
	assert.Equal(t, []string{"a 5 0", "a 10 0"}, bodyLines(h))
}

//go:build wasip1

package main

import (
	"github.com/meshplug/meshplug/filters/abi"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
)

// stream is one HTTP request going through ratelimit; recycled by its plugin.
type stream struct {
	pw.DefaultHttpContext
	p   *plugin
	buf []byte // request headers, read with one host call
	req engine.Request
	v   engine.Verdict
	// headers are the rate limit headers for the response of an allowed request
	// (headers_on_allowed).
	headers []abi.Pair
}

// OnHttpRequestHeaders reads the request once, decides, and rejects or lets it pass.
func (s *stream) OnHttpRequestHeaders(int, bool) pw.Action {
	cfg := s.p.cfg
	view, err := pw.RequestHeaders.AppendAll(s.buf[:0])
	if err != nil {
		s.p.m.error.Increment(1)
		pw.LogErrorf("ratelimit: reading the request headers: %v (request allowed)", err)
		return pw.Continue
	}
	s.buf = view
	src := ""
	if cfg.NeedsClientAddress {
		src, _ = pw.GetPropertyString("source", "address")
	}
	s.req.Read(cfg, view, src)
	s.p.eng.Decide(&s.req, pw.Now().UnixNano(), &s.v)
	s.record()
	if s.v.Limited {
		resp := engine.Reject(cfg, &s.req, &s.v, s.headers)
		pw.LogDebugf("ratelimit: limited %s %s", s.req.Method, s.req.Path)
		if err := pw.SendHttpResponse(uint32(resp.Status), resp.Details, resp.Headers, resp.Body, resp.GRPCStatus); err != nil {
			pw.LogErrorf("ratelimit: sending the %d reply: %v", resp.Status, err)
		}
		s.headers = resp.Headers[:0] // sent: the reply must not get them twice
		return pw.Pause
	}
	if cfg.HeadersOnAllowed {
		s.headers = engine.AppendHeaders(s.headers[:0], cfg, &s.v)
	}
	return pw.Continue
}

// record updates the metrics and logs what the verdict says.
func (s *stream) record() {
	m, v := &s.p.m, &s.v
	for _, e := range v.Events {
		m.rules[e.Rule.Index][e.Event].Increment(1)
		if e.Event == engine.EventShadowLimited {
			pw.LogInfof("ratelimit: shadow: rule %s would limit %s %s", e.Rule.Name, s.req.Method, s.req.Path)
		}
	}
	if v.Retries > 0 {
		m.casRetries.Increment(uint64(v.Retries))
	}
	if v.Evicted > 0 {
		m.keysEvicted.Increment(uint64(v.Evicted))
	}
	if d := v.Added - v.Removed; d != 0 {
		m.keysTracked.Add(int64(d))
	}
	if v.Err != nil {
		m.error.Increment(1)
		pw.LogWarnf("ratelimit: %v (request allowed)", v.Err)
	}
}

// OnHttpResponseHeaders adds the rate limit headers of an allowed request.
func (s *stream) OnHttpResponseHeaders(int, bool) pw.Action {
	for _, h := range s.headers {
		if err := pw.ResponseHeaders.Replace(h.Key, h.Value); err != nil {
			pw.LogDebugf("ratelimit: adding %s: %v", h.Key, err)
		}
	}
	return pw.Continue
}

// OnHttpStreamDone recycles the stream.
func (s *stream) OnHttpStreamDone() {
	s.headers = s.headers[:0]
	s.req.Method, s.req.Path = "", ""
	s.p.free = append(s.p.free, s)
}

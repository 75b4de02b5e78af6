package glue

import (
	"github.com/meshplug/meshplug/filters/abi"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
	"github.com/meshplug/meshplug/filters/ratelimit/rls"
)

// stream is one HTTP request going through ratelimit; recycled by its plugin.
type stream struct {
	pw.DefaultHttpContext
	p   *plugin
	buf []byte // request headers, read with one host call
	req engine.Request
	v   engine.Verdict
	// headers are the rate limit headers for the response of an allowed request
	// (headers_on_allowed), and in the global mode the service's
	// response_headers_to_add.
	headers []abi.Pair

	// Global mode: the descriptors, the encoded request, the decoded response, the
	// pending call's token, and the callback (a method value made once per stream).
	d       engine.Descriptors
	msg     []byte
	resp    rls.Response
	token   uint32
	pending bool
	onReply func(status uint32, message string, response []byte)
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
	if cfg.Global != nil {
		return s.callService()
	}
	s.p.eng.Decide(&s.req, pw.Now().UnixNano(), &s.v)
	s.record()
	if s.v.Limited {
		s.reject(nil)
		return pw.Pause
	}
	if cfg.HeadersOnAllowed {
		s.headers = engine.AppendHeaders(s.headers[:0], cfg, &s.v)
	}
	return pw.Continue
}

// reject sends the rejection of s.v, with extra headers (the service's
// response_headers_to_add) after the rate limit headers.
func (s *stream) reject(extra []rls.Header) {
	resp := engine.Reject(s.p.cfg, &s.req, &s.v, s.headers)
	resp.Headers = engine.AppendServiceHeaders(resp.Headers, extra)
	pw.LogDebugf("ratelimit: limited %s %s (%s)", s.req.Method, s.req.Path, resp.Details)
	if err := pw.SendHttpResponse(uint32(resp.Status), resp.Details, resp.Headers, resp.Body, resp.GRPCStatus); err != nil {
		pw.LogErrorf("ratelimit: sending the %d reply: %v", resp.Status, err)
	}
	s.headers = resp.Headers[:0] // sent: the reply must not get them twice
}

// callService starts the global mode: the descriptors go to the rate limit service in
// a gRPC call, and the request waits (Pause) until reply resumes or answers it.
// Requests without descriptors, or denied for a missing key, do not wait.
func (s *stream) callService() pw.Action {
	cfg := s.p.cfg
	if cfg.Global.LocalPrecheck {
		// The local buckets first: a rejection here is final; a pass is not recorded
		// (the service's answer is).
		s.p.eng.Decide(&s.req, pw.Now().UnixNano(), &s.v)
		if s.v.Limited {
			s.record()
			s.p.m.precheckLimited.Increment(1)
			s.reject(nil)
			return pw.Pause
		}
		s.v.Events = s.v.Events[:0] // table metrics only
		s.record()
	}
	s.p.eng.Descriptors(&s.req, &s.d, &s.v)
	if s.v.Limited || len(s.d.Entries) == 0 {
		s.record()
		if s.v.Limited {
			s.reject(nil)
			return pw.Pause
		}
		return pw.Continue
	}
	// hits_addend 1: each request is one hit (Envoy sends 0, which the service reads
	// as 1, unless a hits_addend is configured).
	s.msg = rls.AppendRequest(s.msg[:0], cfg.Domain, s.d.Entries, 1)
	token, err := pw.DispatchGrpcCall(cfg.Global.Cluster, rls.Service, rls.Method, nil, s.msg, cfg.Global.Timeout, s.onReply)
	if err != nil {
		if s.failed("dispatching the call to cluster %q: %v", cfg.Global.Cluster, err) {
			return pw.Pause
		}
		return pw.Continue
	}
	s.token, s.pending = token, true
	return pw.Pause
}

// reply is the gRPC callback of callService; it runs as the stream, and resumes the
// request unless it answers it.
func (s *stream) reply(status uint32, message string, response []byte) {
	s.pending = false
	if s.answer(status, message, response) {
		return
	}
	if err := pw.ResumeHttpRequest(); err != nil {
		pw.LogErrorf("ratelimit: resuming the request: %v", err)
	}
}

// answer applies the service's reply; true when the request was rejected.
func (s *stream) answer(status uint32, message string, response []byte) (rejected bool) {
	if status != 0 {
		return s.failed("the service answered grpc-status %d: %s", status, message)
	}
	if err := s.resp.Decode(response); err != nil {
		return s.failed("%v", err)
	}
	if err := s.p.eng.DecideGlobal(&s.d, &s.resp, &s.v); err != nil {
		return s.failed("%v", err)
	}
	m := &s.p.m
	if s.resp.OverallCode == rls.CodeOverLimit {
		m.serviceOverLimit.Increment(1)
	} else {
		m.serviceOK.Increment(1)
	}
	s.record()
	if s.v.Limited {
		s.reject(s.resp.ResponseHeaders)
		return true
	}
	// request_headers_to_add replace what the client sent under those names: a client
	// must not be able to pre-set a header the service vouches for. (Envoy's filter
	// appends them instead: Filter::appendRequestHeaders, HeaderMapImpl::copyFrom.)
	for _, h := range engine.AppendServiceHeaders(s.headers[:0], s.resp.RequestHeaders) {
		if err := pw.RequestHeaders.Replace(h.Key, h.Value); err != nil {
			pw.LogDebugf("ratelimit: adding %s to the request: %v", h.Key, err)
		}
	}
	s.headers = s.headers[:0]
	if s.p.cfg.HeadersOnAllowed {
		s.headers = engine.AppendHeaders(s.headers, s.p.cfg, &s.v)
	}
	s.headers = engine.AppendServiceHeaders(s.headers, s.resp.ResponseHeaders)
	return false
}

// failed applies the failure mode after the service did not answer; true when the
// request was rejected (failure_mode_deny), false when it may pass. Always counted.
func (s *stream) failed(format string, args ...any) (rejected bool) {
	m := &s.p.m
	m.serviceError.Increment(1)
	s.p.eng.DecideFailure(&s.v)
	pw.LogDebugf("ratelimit: rate limit service: "+format, args...)
	if s.v.Limited {
		s.reject(nil)
		return true
	}
	m.serviceFailureModeAllowed.Increment(1)
	return false
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

// OnHttpStreamDone recycles the stream, abandoning a call still pending (the client
// went away before the service answered).
func (s *stream) OnHttpStreamDone() {
	if s.pending {
		_ = pw.CancelGrpcCall(s.token)
		s.pending = false
	}
	s.headers = s.headers[:0]
	s.req.Method, s.req.Path = "", ""
	s.p.streams.Put(s)
}

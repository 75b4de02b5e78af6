package glue

import (
	"strconv"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/httpreq"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

// stream is one HTTP request going through auth. Streams are recycled by their
// plugin (see plugin.NewHttpContext): an allocation costs about a microsecond in a Go
// wasm guest, so the per-request path makes none once warm.
type stream struct {
	pw.DefaultHttpContext
	p  *plugin
	id uint32

	parked   bool // waiting for a JWKS fetch
	parkedOn int  // provider index
	// pending is set while the decision waits for a callout (JWKS, ext_authz): the
	// body and trailers must then be held too, or Envoy would pass them — and with
	// them the held headers — upstream before the decision.
	pending bool
	req     engine.Request
	x       engine.Extracted // what the engine read from req (memory reused)
	// headers is the request header map as it arrived, read with one host call into
	// buf (reused across requests); req's and x's strings alias it.
	headers abi.PairsView
	buf     []byte
}

func newStream(p *plugin) *stream { return &stream{p: p} }

// OnHttpRequestHeaders removes every identity header a client may have sent, in any
// spelling (always, whatever the outcome), then decides.
//
// The headers are read with one host call and looked up locally: a host call that
// returns data costs about a microsecond in a Go guest (the host re-enters the guest
// to allocate), a scan of a few dozen headers far less.
func (s *stream) OnHttpRequestHeaders(int, bool) pw.Action {
	if !s.readHeaders() {
		return pw.Pause
	}
	for _, h := range s.x.IdentityHeaders() {
		pw.RequestHeaders.Remove(h)
	}
	return s.decide()
}

// readHeaders snapshots the request headers, points req at them and has the engine
// read them into x; on failure it answers 500 (fail closed) and returns false.
func (s *stream) readHeaders() bool {
	view, err := pw.RequestHeaders.AppendAll(s.buf[:0])
	if err != nil {
		pw.LogCriticalf("auth: reading the request headers: %v", err)
		s.denyReason(engine.ReasonInternalError)
		return false
	}
	s.headers, s.buf = view, view
	s.req.Method, _ = view.Get(":method")
	s.req.Path, _ = view.Get(":path")
	s.req.Headers, s.req.Now = view, pw.Now()
	s.p.eng.Read(&s.req, &s.x)
	return true
}

// OnHttpRequestBody holds the body while the decision is pending.
func (s *stream) OnHttpRequestBody(int, bool) pw.Action {
	if s.pending {
		return pw.Pause
	}
	return pw.Continue
}

// OnHttpRequestTrailers holds the trailers while the decision is pending.
func (s *stream) OnHttpRequestTrailers(int) pw.Action {
	if s.pending {
		return pw.Pause
	}
	return pw.Continue
}

// OnHttpStreamDone recycles the stream: the host sends it nothing more (its pending
// callouts are dropped with it).
func (s *stream) OnHttpStreamDone() {
	if s.parked {
		s.p.unpark(s)
	}
	s.headers, s.req.Headers, s.req.Method, s.req.Path, s.pending = nil, nil, "", "", false
	s.p.streams.Put(s)
}

// decide runs the engine and acts on its verdict; it returns the action for the
// request-headers callback.
func (s *stream) decide() pw.Action {
	v := s.p.eng.Decide(&s.x)
	switch v.Cache {
	case engine.CacheHit:
		s.p.m.cacheHit.Increment(1)
	case engine.CacheMiss:
		s.p.m.cacheMiss.Increment(1)
	}
	switch v.Kind {
	case engine.Allow:
		s.allow(&v)
		return pw.Continue
	case engine.FetchJWKS:
		if v.StartFetch {
			s.p.fetchJWKS(v.Provider)
		}
		// The fetch may have failed at dispatch and woken its waiters already: then
		// decide at once with what the failure left.
		if st := s.p.eng.Keys.State(v.Provider); st != nil && !st.InFlight(s.req.Now) {
			return s.decideAgainOnce()
		}
		s.p.park(s, v.Provider)
		s.pending = true
		return pw.Pause
	case engine.CallExtAuthz:
		return s.callExtAuthz(v.ExtAuthz)
	default:
		s.deny(&v)
		return pw.Pause
	}
}

// decideAgainOnce decides after a fetch that ended without a callback; a second
// FetchJWKS verdict is answered as keys unavailable rather than looping.
func (s *stream) decideAgainOnce() pw.Action {
	s.x.Now = pw.Now()
	v := s.p.eng.Decide(&s.x)
	switch v.Kind {
	case engine.Allow:
		s.allow(&v)
		return pw.Continue
	case engine.CallExtAuthz:
		return s.callExtAuthz(v.ExtAuthz)
	case engine.Deny:
		s.deny(&v)
		return pw.Pause
	}
	s.denyReason(engine.ReasonJWKSUnavailable)
	return pw.Pause
}

// resume decides a parked stream again, as that stream (see plugin.wake). The header
// snapshot is taken again: other streams may have run since.
func (s *stream) resume() {
	s.pending = false
	if !s.readHeaders() {
		return
	}
	if s.decide() == pw.Continue {
		if err := pw.ResumeHttpRequest(); err != nil {
			pw.LogErrorf("auth: resuming the request: %v", err)
		}
	}
}

// allow writes the identity hand-off and strips the credential when configured.
func (s *stream) allow(v *engine.Verdict) {
	s.p.m.allowed.Increment(1)
	if v.Reason != "" { // let through despite a failure (ext_authz failure_mode_allow)
		pw.LogWarnf("auth: %s: %s", v.Reason, v.Detail)
	}
	for _, h := range v.SetHeaders {
		pw.RequestHeaders.Replace(h.Name, h.Value)
	}
	for _, h := range v.ExtraHeaders {
		pw.RequestHeaders.Replace(h.Name, h.Value)
	}
	for _, h := range v.RemoveHeaders {
		pw.RequestHeaders.Remove(h)
	}
	if v.NewPath != "" {
		pw.RequestHeaders.Replace(":path", v.NewPath)
	}
}

// deny sends the verdict's reply: JSON with WWW-Authenticate for HTTP, a trailers-only
// gRPC status for gRPC requests when the config enables it.
func (s *stream) deny(v *engine.Verdict) {
	s.p.m.denied[v.Reason].Increment(1)
	pw.LogDebugf("auth: denied %s %s: %s: %s", s.req.Method, s.req.Path, v.Reason, v.Detail)
	r := v.Response
	headers := make([]abi.Pair, 0, len(r.Headers))
	for _, h := range r.Headers {
		headers = append(headers, abi.Pair{Key: h.Name, Value: h.Value})
	}
	body, grpc := []byte(r.Body), uint32(abi.GrpcStatusNone)
	if s.p.cfg.GRPC {
		if ct, _ := s.headers.Get("content-type"); httpreq.IsGRPC(ct) {
			body, grpc = []byte(r.GRPCMessage), uint32(r.GRPCStatus)
		}
	}
	if err := pw.SendHttpResponse(uint32(r.Status), "meshplug_auth_"+string(v.Reason), headers, body, grpc); err != nil {
		pw.LogErrorf("auth: sending the %d reply: %v", r.Status, err)
	}
}

func (s *stream) denyReason(r engine.Reason) {
	v := s.p.eng.DenyVerdict(r, &s.x)
	s.deny(&v)
}

// callExtAuthz asks the authorization service and pauses until it answers.
func (s *stream) callExtAuthz(x *engine.ExtAuthzRequest) pw.Action {
	headers := make([]abi.Pair, len(x.Headers))
	for i, h := range x.Headers {
		headers[i] = abi.Pair{Key: h.Name, Value: h.Value}
	}
	_, err := pw.DispatchHttpCall(x.Cluster, headers, nil, nil, x.Timeout, s.onExtAuthz)
	if err != nil {
		pw.LogWarnf("auth: ext_authz dispatch to cluster %q failed: %v", x.Cluster, err)
		return s.finishExtAuthz(engine.ExtAuthzResponse{})
	}
	s.pending = true
	return pw.Pause
}

func (s *stream) onExtAuthz(numHeaders, bodySize, _ int) {
	s.pending = false
	var resp engine.ExtAuthzResponse
	if numHeaders > 0 {
		pairs, _ := pw.HttpCallResponseHeaders.GetAll()
		for _, p := range pairs {
			if p.Key == ":status" {
				resp.Status, _ = strconv.Atoi(p.Value)
				continue
			}
			resp.Headers = append(resp.Headers, engine.Header{Name: p.Key, Value: p.Value})
		}
		resp.Body, _ = pw.HttpCallResponseBody.Get(0, min(bodySize, engine.MaxExtAuthzBody))
	}
	if s.finishExtAuthz(resp) == pw.Continue {
		if err := pw.ResumeHttpRequest(); err != nil {
			pw.LogErrorf("auth: resuming after ext_authz: %v", err)
		}
	}
}

func (s *stream) finishExtAuthz(resp engine.ExtAuthzResponse) pw.Action {
	v := s.p.eng.DecideExtAuthz(resp)
	if v.Kind == engine.Allow {
		s.allow(&v)
		return pw.Continue
	}
	s.deny(&v)
	return pw.Pause
}

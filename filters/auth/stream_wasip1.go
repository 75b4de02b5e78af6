//go:build wasip1

package main

import (
	"strconv"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/auth/engine"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

// stream is one HTTP request going through auth.
type stream struct {
	pw.DefaultHttpContext
	p  *plugin
	id uint32

	parked   bool // waiting for a JWKS fetch
	parkedOn int  // provider index
	req      engine.Request
}

// OnHttpRequestHeaders removes every identity header a client may have sent (always,
// whatever the outcome), then decides.
func (s *stream) OnHttpRequestHeaders(int, bool) pw.Action {
	for _, h := range s.p.cfg.IdentityHeaders {
		pw.RequestHeaders.Remove(h)
	}
	method, _ := pw.RequestHeaders.Get(":method")
	path, _ := pw.RequestHeaders.Get(":path")
	s.req = engine.Request{Method: method, Path: path, Header: header}
	return s.decide()
}

// header is the engine's view of the request headers: the live map.
func header(name string) (string, bool) {
	v, err := pw.RequestHeaders.Get(name)
	return v, err == nil
}

func (s *stream) OnHttpStreamDone() {
	if s.parked {
		s.p.unpark(s)
	}
}

// decide runs the engine and acts on its verdict; it returns the action for the
// request-headers callback.
func (s *stream) decide() pw.Action {
	s.req.Now = pw.Now()
	v := s.p.eng.Decide(&s.req)
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
	s.req.Now = pw.Now()
	v := s.p.eng.Decide(&s.req)
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

// resume decides a parked stream again, as that stream (see plugin.wake).
func (s *stream) resume() {
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
		if ct, _ := pw.RequestHeaders.Get("content-type"); engine.IsGRPC(ct) {
			body, grpc = []byte(r.GRPCMessage), uint32(r.GRPCStatus)
		}
	}
	if err := pw.SendHttpResponse(uint32(r.Status), "meshplug_auth_"+string(v.Reason), headers, body, grpc); err != nil {
		pw.LogErrorf("auth: sending the %d reply: %v", r.Status, err)
	}
}

func (s *stream) denyReason(r engine.Reason) {
	v := s.p.eng.DenyVerdict(r)
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
	return pw.Pause
}

func (s *stream) onExtAuthz(numHeaders, bodySize, _ int) {
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

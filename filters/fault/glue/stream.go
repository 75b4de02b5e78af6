package glue

import (
	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/fault/engine"
	"github.com/meshplug/meshplug/filters/httpreq"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

// stream is one HTTP request going through the fault filter. It is the engine's
// Request (over the request headers read with one host call) and its Slots. Streams
// are recycled by their plugin.
type stream struct {
	pw.DefaultHttpContext
	p  *plugin
	id uint32

	req httpreq.Request // the request headers, read with one host call
	buf []byte

	rule *config.Rule
	wait *engine.Delayed // non-nil while delayed
	// holds: the stream counts as an active fault.
	holds bool
}

// OnHttpRequestHeaders decides; a delayed request is paused until the tick resumes
// it, an aborted one answered at once.
//
// The random draws come first: when no rule could fault with them (a rule at 1% skips
// 99% of requests), the request is not even read.
func (s *stream) OnHttpRequestHeaders(int, bool) pw.Action {
	draws := engine.NewDraws(s.p.rng)
	if !engine.MayFault(s.p.cfg, draws) {
		return pw.Continue
	}
	if !s.readHeaders() {
		return pw.Continue // fail open
	}
	v := engine.Decide(s.p.cfg, s, draws, s)
	s.rule = v.Rule
	switch {
	case v.Delay > 0:
		s.p.m.delays.Increment(1)
		pw.LogDebugf("fault: %s: delaying stream %d by %s", v.Rule.Name, s.id, v.Delay)
		s.p.delay(s, v.Delay)
		return pw.Pause
	case v.Abort != nil:
		s.abort(v.Abort)
		return pw.Pause
	}
	return pw.Continue
}

func (s *stream) readHeaders() bool {
	view, err := pw.RequestHeaders.AppendAll(s.buf[:0])
	if err != nil {
		pw.LogErrorf("fault: reading the request headers: %v", err)
		return false
	}
	s.req.ReadHeaders(view)
	s.buf = view
	return true
}

// OnHttpRequestBody holds the body during a delay, like Envoy's fault filter
// (StopIterationAndWatermark from decodeData while the delay timer runs).
func (s *stream) OnHttpRequestBody(int, bool) pw.Action {
	if s.wait != nil {
		return pw.Pause
	}
	return pw.Continue
}

// OnHttpRequestTrailers holds the trailers during a delay.
func (s *stream) OnHttpRequestTrailers(int) pw.Action {
	if s.wait != nil {
		return pw.Pause
	}
	return pw.Continue
}

// afterDelay runs as the stream (from the tick) once its delay is due: Envoy's
// postDelayInjection, a fresh abort draw, else continue and give the slot back.
func (s *stream) afterDelay() {
	defer func() {
		// Fail open: a bug here must not leave the request paused for ever.
		if r := recover(); r != nil {
			pw.LogCriticalf("fault: panic resuming stream %d: %v", s.id, r)
			s.release()
			pw.ResumeHttpRequest()
		}
	}()
	if !s.readHeaders() {
		s.release()
		pw.ResumeHttpRequest()
		return
	}
	if rep := engine.AfterDelay(s.rule, s, s.p.rng.Uint64N(config.Million)); rep != nil {
		s.abort(rep)
		return
	}
	s.release()
	if err := pw.ResumeHttpRequest(); err != nil {
		pw.LogErrorf("fault: continuing stream %d: %v", s.id, err)
	}
}

func (s *stream) abort(rep *engine.Reply) {
	s.p.m.aborts.Increment(1)
	pw.LogDebugf("fault: %s: aborting stream %d with %d", s.rule.Name, s.id, rep.Status)
	if err := pw.SendHttpResponse(rep.Status, engine.Details, rep.Headers, rep.Body, rep.GRPCStatus); err != nil {
		pw.LogErrorf("fault: sending the abort reply: %v", err)
	}
}

// OnHttpStreamDone cleans up a stream reset or finished during its delay (it is never
// resumed later), gives its slot back and recycles it.
func (s *stream) OnHttpStreamDone() {
	if s.wait != nil {
		s.p.undelay(s)
	}
	s.release()
	s.req.ReadHeaders(nil)
	s.rule = nil
	s.p.streams.Put(s)
}

// TryAcquire is engine.Slots: Envoy's tryIncActiveFaults.
func (s *stream) TryAcquire(max uint64) bool {
	if s.holds {
		return true
	}
	if s.p.cfg.Capped {
		now := pw.Now()
		ok, err := s.p.counter.Acquire(max, now)
		if err != nil {
			pw.LogWarnf("fault: active-fault counter: %v (fault skipped)", err)
			return false
		}
		if !ok {
			s.p.m.overflow.Increment(1)
			return false
		}
		s.p.renewed = now // Acquire extended the lease
	}
	s.holds = true
	s.p.held++
	s.p.m.active.Add(1)
	return true
}

// release gives the stream's active-fault slot back, if it holds one.
func (s *stream) release() {
	if !s.holds {
		return
	}
	s.holds = false
	s.p.held--
	s.p.m.active.Add(-1)
	if s.p.cfg.Capped {
		if err := s.p.counter.Release(pw.Now()); err != nil {
			pw.LogWarnf("fault: active-fault counter: %v (slot leaked)", err)
		}
	}
}

// Header is engine.Request: all values joined by "," (Envoy's header matchers;
// httpreq.Request.Coalesced). The joined form is built only for a repeated header
// (rare).
func (s *stream) Header(name string) (string, bool) { return s.req.Coalesced(name) }

func (s *stream) FirstHeader(name string) (string, bool) { return s.req.View.Get(name) }

// UpstreamCluster is engine.Request: the xds.cluster_name attribute.
func (s *stream) UpstreamCluster() string {
	v, _ := pw.GetPropertyString("xds", "cluster_name")
	return v
}

// RouteName is engine.Request: the xds.route_name attribute.
func (s *stream) RouteName() string {
	v, _ := pw.GetPropertyString("xds", "route_name")
	return v
}

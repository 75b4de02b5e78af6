package glue

import (
	pw "github.com/meshplug/meshplug/filters/proxywasm"
	"github.com/meshplug/meshplug/filters/routehint/engine"
)

// stream is one HTTP request going through routehint. Streams are recycled by their
// plugin: the per-request path makes no allocation once warm (beyond percent-decoding
// a query and the echo header's value when several targets apply).
type stream struct {
	pw.DefaultHttpContext
	p    *plugin
	req  engine.Request
	v    engine.Verdict
	buf  []byte // the request header map, read with one host call
	echo string // chosen target names for the echo header
}

// OnHttpRequestHeaders removes the client's hint headers, decides, and sets the chosen
// target's hint headers. Editing the request headers is what makes Envoy pick the
// route again (ABI 0.2.1 modules: see README.md, "How the route is picked again").
func (s *stream) OnHttpRequestHeaders(int, bool) pw.Action {
	p := s.p
	view, err := pw.RequestHeaders.AppendAll(s.buf[:0])
	if err != nil {
		// Cannot see the headers: remove every configured hint name blindly (their
		// underscore spellings cannot be found without reading), and add no hint.
		pw.LogErrorf("routehint: reading the request headers: %v", err)
		for _, name := range p.cfg.HintNames {
			s.remove(name)
		}
		return pw.Continue
	}
	s.buf = view
	s.req.Read(p.cfg, view)
	for _, name := range s.req.Strip {
		s.remove(name)
	}
	if s.req.Spoofed {
		p.m.spoofed.Increment(1)
	}
	if p.cfg.NeedClientAddress {
		if addr, err := pw.GetPropertyString("source", "address"); err == nil {
			s.req.SetClientAddress(addr)
		}
	}
	p.eng.Decide(&s.req, &s.v)
	for _, h := range s.v.Headers {
		if err := pw.RequestHeaders.Replace(h.Name, h.Value); err != nil {
			pw.LogErrorf("routehint: setting %s: %v", h.Name, err)
		}
	}
	s.count()
	return pw.Continue
}

func (s *stream) remove(name string) {
	if err := pw.RequestHeaders.Remove(name); err != nil {
		pw.LogErrorf("routehint: removing %s: %v", name, err)
	}
}

// count updates the metrics and prepares the echo value.
func (s *stream) count() {
	p, v := s.p, &s.v
	switch v.Override {
	case engine.OverrideAccepted:
		p.m.ovAccepted.Increment(1)
	case engine.OverrideRejected:
		p.m.ovRejected.Increment(1)
	}
	if v.KeyMissing > 0 {
		p.m.keyMis.Increment(uint64(v.KeyMissing))
	}
	if len(v.Applied) == 0 {
		p.m.noMatch.Increment(1)
	}
	for i, a := range v.Applied {
		if a.Rule != nil {
			p.m.rule[a.Rule.Index].Increment(1)
		}
		p.m.target[a.Target.Index].Increment(1)
		if p.cfg.EchoHeader != "" {
			if i == 0 {
				s.echo = a.Target.Name
			} else {
				s.echo += "," + a.Target.Name
			}
		}
	}
}

// OnHttpResponseHeaders echoes the chosen targets when configured.
func (s *stream) OnHttpResponseHeaders(int, bool) pw.Action {
	if h := s.p.cfg.EchoHeader; h != "" {
		echo := s.echo
		if echo == "" {
			echo = "-"
		}
		if err := pw.ResponseHeaders.Replace(h, echo); err != nil {
			pw.LogDebugf("routehint: echo header: %v", err)
		}
	}
	return pw.Continue
}

// OnHttpStreamDone recycles the stream.
func (s *stream) OnHttpStreamDone() {
	s.echo = ""
	s.req.Read(s.p.cfg, nil) // drop the references into buf
	s.p.streams.Put(s)
}

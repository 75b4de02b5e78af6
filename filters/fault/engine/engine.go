// Package engine decides, for one request, which fault (if any) the fault filter
// injects, following Envoy's HTTP fault filter
// (source/extensions/filters/http/fault/fault_filter.cc, FaultFilter::decodeHeaders):
// the first rule whose targets match applies; a delay is chosen with the delay
// percentage, takes an active-fault slot if the cap allows, and the abort is decided
// after the delay has elapsed (a fresh draw); without a delay the abort is decided at
// once. Header-controlled values follow Envoy's providers
// (source/extensions/filters/common/fault/fault_config.cc).
//
// The package is pure (no ABI calls): the glue reads the request into a Request, and
// supplies the random source and the proxy-wide slot counter (Slots).
//
// Envoy reference: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/fault_filter
package engine

import (
	"math/rand/v2"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// Request is what the engine reads of a request. The glue implements it over the
// request's header map (one host call) and properties.
type Request interface {
	// Header returns every value of the header name (lower-case) joined by ",", as
	// Envoy's header matchers see a repeated header.
	Header(name string) (string, bool)
	// FirstHeader returns the first value of name: Envoy reads only the first value of
	// the untrusted x-envoy-fault-* headers.
	FirstHeader(name string) (string, bool)
	// UpstreamCluster and RouteName are the xds.cluster_name and xds.route_name
	// attributes ("" when unknown). Called only for rules that target them.
	UpstreamCluster() string
	RouteName() string
}

// Rand draws a uniform integer in [0, n). *rand.Rand from math/rand/v2 implements it.
type Rand interface{ Uint64N(n uint64) uint64 }

// NewRand returns the engine's random generator (PCG) for a seed.
func NewRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// Draws are a request's two random draws, each uniform in [0, 1 000 000): one for the
// delay, one for the abort. A percentage with denominator d (100, 10 000 or
// 1 000 000, all dividing 1 000 000) passes when draw % d < numerator, which is
// uniform in [0, d): the same distribution as Envoy's featureEnabled, which draws
// once per fault type of the rule that matched.
//
// Drawing before matching lets the glue skip reading the request when no rule could
// fault whatever it matches (MayFault): the common "1% of traffic" case then costs no
// header read. The draws do not depend on the request, so the outcome has the same
// distribution as Envoy's match-then-draw.
type Draws struct{ Delay, Abort uint64 }

// NewDraws draws a request's Draws.
func NewDraws(rng Rand) Draws {
	return Draws{Delay: rng.Uint64N(config.Million), Abort: rng.Uint64N(config.Million)}
}

// MayFault reports whether some rule's configured percentages pass with d (headers
// can only lower a percentage). False: no fault whatever the request.
func MayFault(c *config.Config, d Draws) bool {
	for _, r := range c.Rules {
		if r.Delay != nil && Enabled(r.Delay.Percentage, d.Delay) {
			return true
		}
		if r.Abort != nil && Enabled(r.Abort.Percentage, d.Abort) {
			return true
		}
	}
	return false
}

// Slots is the proxy-wide active-fault counter (Envoy's active_faults gauge checked
// against max_active_faults). TryAcquire is Envoy's tryIncActiveFaults for one stream:
// once the stream holds a slot it returns true without counting again; otherwise it
// takes a slot if fewer than max are active, and reports an overflow (and returns
// false) if not.
type Slots interface{ TryAcquire(max uint64) bool }

// Reply is an abort's local reply.
type Reply struct {
	Status     uint32 // HTTP status
	GRPCStatus uint32 // abi.GrpcStatusNone: mapped from Status by the host for gRPC requests
	Body       []byte
	Headers    []abi.Pair
}

// Details is the response code details of an abort (Envoy's RcDetails FaultAbort).
const Details = "fault_filter_abort"

// GRPCMessage is the grpc-message of an abort of a gRPC request without abort.body.
const GRPCMessage = "fault filter abort"

// Match returns the first rule whose targets all match req, or nil.
func Match(c *config.Config, req Request) *config.Rule {
	for _, r := range c.Rules {
		if matches(r, req) {
			return r
		}
	}
	return nil
}

// matches checks a rule's targets in Envoy's order: upstream cluster, downstream
// nodes, headers (plus meshplug's route name).
func matches(r *config.Rule, req Request) bool {
	if r.UpstreamCluster != "" && req.UpstreamCluster() != r.UpstreamCluster {
		return false
	}
	if r.RouteName != "" && req.RouteName() != r.RouteName {
		return false
	}
	if r.DownstreamNodes != nil {
		node, ok := req.Header(config.HeaderDownstreamNode)
		if !ok || !r.DownstreamNodes[node] {
			return false
		}
	}
	for i := range r.Headers {
		if !MatchHeader(&r.Headers[i], req) {
			return false
		}
	}
	return true
}

// MatchHeader applies one Envoy HeaderMatcher (Http::HeaderUtility::matchHeaders): the
// header's values joined by ","; a missing header matches no value matcher, inverted
// or not, and matches present_match:false (or present_match:true inverted).
// source/common/http/header_utility.cc, HeaderUtility::matchHeaders.
func MatchHeader(m *config.HeaderMatcher, req Request) bool {
	v, ok := req.Header(m.Name)
	if !ok {
		return m.Kind == config.MatchPresent && m.Present == m.Invert
	}
	if m.Path != nil && m.Kind != config.MatchPresent {
		return matchPath(m, v) != m.Invert
	}
	return matchValue(m, v) != m.Invert
}

// matchPath: a :path matcher holds if it holds for one reading of the path part in
// canonical form, the query kept as sent.
func matchPath(m *config.HeaderMatcher, v string) bool {
	path, query, hasQuery := strings.Cut(v, "?")
	var buf [4]string
	readings, _ := httpreq.PathReadings(buf[:0], path, *m.Path)
	if len(readings) == 1 && readings[0] == path {
		return matchValue(m, v) // already canonical: no copy
	}
	for _, r := range readings {
		if hasQuery {
			r += "?" + query
		}
		if matchValue(m, r) {
			return true
		}
	}
	return false
}

// matchValue applies the matcher's positive form to one value.
func matchValue(m *config.HeaderMatcher, v string) bool {
	var match bool
	if m.IgnoreCase {
		v = strings.ToLower(v)
	}
	switch m.Kind {
	case config.MatchExact:
		match = v == m.Value
	case config.MatchPrefix:
		match = strings.HasPrefix(v, m.Value)
	case config.MatchSuffix:
		match = strings.HasSuffix(v, m.Value)
	case config.MatchContains:
		match = strings.Contains(v, m.Value)
	case config.MatchRegex:
		match = m.Regex.MatchString(v)
	case config.MatchPresent:
		match = m.Present
	}
	return match
}

// Enabled is Envoy's featureEnabled for a FractionalPercent, given a draw uniform in
// [0, 1 000 000): draw % denominator below the numerator.
func Enabled(p config.Percent, draw uint64) bool {
	if p.Denominator == 0 {
		return false
	}
	return draw%uint64(p.Denominator) < uint64(p.Numerator)
}

// headerPercent is Envoy's HeaderPercentageProvider: a valid numerator in the header
// lowers the configured numerator (min of the two, same denominator); a missing or
// invalid header leaves it.
func headerPercent(p config.Percent, req Request, name string) config.Percent {
	if s, ok := req.FirstHeader(name); ok {
		if n, ok := ParseUint(s, 32); ok && uint32(n) < p.Numerator {
			p.Numerator = uint32(n)
		}
	}
	return p
}

// maxDelayMillis keeps header delays representable as a time.Duration.
const maxDelayMillis = uint64(1<<63-1) / uint64(time.Millisecond)

// DelayFor is Envoy's delayDuration: whether r delays req (with the draw) and for how
// long. A header-controlled delay comes from x-envoy-fault-delay-request in
// milliseconds (missing, invalid or 0: no delay), capped at the rule's max_delay.
func DelayFor(r *config.Rule, req Request, draw uint64) (time.Duration, bool) {
	d := r.Delay
	if d == nil {
		return 0, false
	}
	pct := d.Percentage
	if d.FromHeader {
		pct = headerPercent(pct, req, config.HeaderDelayRequestPercentage)
	}
	if !Enabled(pct, draw) {
		return 0, false
	}
	if !d.FromHeader {
		return d.Fixed, true
	}
	s, ok := req.FirstHeader(config.HeaderDelayRequest)
	if !ok {
		return 0, false
	}
	ms, ok := ParseUint(s, 64)
	if !ok || ms == 0 {
		return 0, false
	}
	dur := time.Duration(min(ms, maxDelayMillis)) * time.Millisecond
	if d.MaxDelay > 0 && dur > d.MaxDelay {
		dur = d.MaxDelay
	}
	return dur, true
}

// AbortFor is Envoy's abortStatus: whether r aborts req (with the draw) and with what
// reply. A header-controlled abort takes x-envoy-fault-abort-request (HTTP
// status, 200–599) first, else x-envoy-fault-abort-grpc-request (gRPC status 0–16,
// HTTP 200); neither valid: no abort.
func AbortFor(r *config.Rule, req Request, draw uint64) (*Reply, bool) {
	a := r.Abort
	if a == nil {
		return nil, false
	}
	pct := a.Percentage
	if a.FromHeader {
		pct = headerPercent(pct, req, config.HeaderAbortRequestPercentage)
	}
	if !Enabled(pct, draw) {
		return nil, false
	}
	status, grpc := a.HTTPStatus, uint32(abi.GrpcStatusNone)
	switch {
	case a.FromHeader:
		status = 0
		if s, ok := req.FirstHeader(config.HeaderAbortRequest); ok {
			if n, ok := ParseUint(s, 64); ok && n >= 200 && n < 600 {
				status = uint32(n)
			}
		}
		if status == 0 {
			s, ok := req.FirstHeader(config.HeaderAbortGrpcRequest)
			if !ok {
				return nil, false
			}
			n, ok := ParseUint(s, 64)
			if !ok || n > 16 {
				return nil, false
			}
			status, grpc = 200, uint32(n)
		}
	case status == 0: // grpc_status
		status, grpc = 200, a.GRPCStatus
	}
	return reply(a, req, status, grpc), true
}

// reply builds an abort's reply. A gRPC request's reply is trailers-only, its
// content-type application/grpc set by the host: the body (default: GRPCMessage)
// becomes the grpc-message, and no content-type of the body is added beside it.
func reply(a *config.Abort, req Request, status, grpc uint32) *Reply {
	rep := &Reply{Status: status, GRPCStatus: grpc, Body: a.Body}
	if isGRPC(req) {
		if string(a.Body) == config.DefaultAbortBody {
			rep.Body = []byte(GRPCMessage)
		}
	} else {
		ct := "application/json"
		if string(a.Body) != config.DefaultAbortBody {
			ct = "text/plain; charset=utf-8"
		}
		hasCT := false
		for _, h := range a.Headers {
			hasCT = hasCT || h[0] == "content-type"
		}
		if !hasCT {
			rep.Headers = append(rep.Headers, abi.Pair{Key: "content-type", Value: ct})
		}
	}
	for _, h := range a.Headers {
		rep.Headers = append(rep.Headers, abi.Pair{Key: h[0], Value: h[1]})
	}
	return rep
}

// isGRPC reports whether Envoy treats the request as gRPC (httpreq.IsGRPC), which is
// when its local reply is trailers-only: application/grpc-web and
// application/grpc;charset=... get the HTTP body.
func isGRPC(req Request) bool {
	ct, _ := req.Header("content-type")
	return httpreq.IsGRPC(ct)
}

// Verdict is what Decide chose for a request.
type Verdict struct {
	Rule *config.Rule // nil: no rule matched
	// Delay > 0: pause the request, then call AfterDelay when it is due.
	Delay time.Duration
	// Abort: answer with this reply now.
	Abort *Reply
}

// Decide is Envoy's FaultFilter::decodeHeaders for req: match a rule, then
// maybeSetupDelay (delay enabled and a slot taken), else maybeDoAbort (abort enabled
// and a slot taken). A fault whose slot is refused is skipped (an overflow).
func Decide(c *config.Config, req Request, d Draws, slots Slots) Verdict {
	r := Match(c, req)
	if r == nil {
		return Verdict{}
	}
	v := Verdict{Rule: r}
	if dur, ok := DelayFor(r, req, d.Delay); ok && slots.TryAcquire(r.MaxActive) {
		v.Delay = dur
		return v
	}
	if rep, ok := AbortFor(r, req, d.Abort); ok && slots.TryAcquire(r.MaxActive) {
		v.Abort = rep
	}
	return v
}

// AfterDelay is Envoy's postDelayInjection: the abort decided again, with a fresh
// draw (uniform in [0, 1 000 000)), once the delay has elapsed. The stream already
// holds its slot. nil: continue the request (and release the slot).
func AfterDelay(r *config.Rule, req Request, draw uint64) *Reply {
	rep, _ := AbortFor(r, req, draw)
	return rep
}

// ParseUint parses an untrusted header value like absl::SimpleAtoi does for an
// unsigned type of the given bit size: optional surrounding ASCII whitespace, an
// optional '+', decimal digits, no overflow.
func ParseUint(s string, bits int) (uint64, bool) {
	s = strings.Trim(s, " \t\n\v\f\r")
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if s == "" || len(s) > 20 {
		return 0, false
	}
	max := uint64(1)<<bits - 1
	if bits == 64 {
		max = ^uint64(0)
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

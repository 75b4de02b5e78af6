// Package engine decides the ratelimit filter's requests as pure functions of the
// request, the configuration, the clock and the bucket table: reading the request
// (Request.Read, the one place that sees every header copy, Cookie line and query
// parameter), matching rules, building bucket keys, choosing overrides, taking
// tokens, and writing the responses and headers.
//
// It has no ABI calls; the glue in the filter's main package feeds it, and the same
// tables test it natively and through ratelimit.wasm.
package engine

import (
	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/httpreq"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

// Request is what the engine sees of a request, filled by Read. Strings alias the
// header view given to Read (and the reader's scratch space); a Request is reused
// across requests by the glue.
type Request struct {
	Method string
	// Path is :path without the query string in canonical form, its most decoded
	// reading (httpreq.PathReadings) when it is ambiguous: the path descriptor value.
	// When no rule reads the path (config.Config.NeedsPath false) it is the path as
	// sent, for logs only.
	Path string
	// GRPC: a gRPC request as Envoy decides it (httpreq.IsGRPC); read only when the
	// configuration answers gRPC requests in gRPC form (config.Config.GRPC).
	GRPC bool
	// paths are all readings of the path; a rule's path condition holds if one does.
	paths []string

	headers  []value // by config.HeaderNames
	cookies  []value // by config.CookieNames
	params   []value // by config.ParamNames
	clientIP value

	r httpreq.Request
}

// value is one input: s when ok; refused (with why) when the request gives it more
// than once or spells it so that upstreams read it differently (httpreq's rule).
type value struct {
	s        string
	ok       bool
	refused  bool
	repeated bool // refused only for being given twice (its presence is clear)
	why      string
}

func fromReader(v httpreq.Value) value {
	return value{s: v.S, ok: v.State == httpreq.Present, refused: v.Refused(), repeated: v.State == httpreq.Repeated, why: v.Why}
}

// Read fills r from the request headers (pseudo-headers included) and the
// connection's source.address property ("ip:port"; read only when
// cfg.NeedsClientAddress, "" otherwise), with filters/httpreq: a header, cookie or
// query parameter is its one copy as Go's net/http reads it (parameters
// percent-decoded, '+' as space); given twice, or spelled so that some upstream
// parser reads it differently, it is refused, and a rule that reads it refuses the
// request (Decide). An empty value counts as absent. The client address is
// X-Forwarded-For's entry xff_num_trusted_hops from the right (Envoy's rule), in
// canonical form.
//
// Only what the configuration uses is read (config.Config's NeedsPath, GRPC,
// HeaderNames...): each part costs a scan of the header map or of the path on every
// request.
func (r *Request) Read(cfg *config.Config, h abi.PairsView, sourceAddress string) {
	parts := httpreq.PartMethod | httpreq.PartTarget
	if cfg.GRPC {
		parts |= httpreq.PartContentType
	}
	r.r.ReadParts(h, parts)
	r.Method = r.r.Method
	r.paths = r.paths[:0]
	if cfg.NeedsPath {
		r.paths, _ = httpreq.PathReadings(r.paths, r.r.Path, cfg.Path)
		r.Path = r.paths[len(r.paths)-1]
	} else {
		r.Path = r.r.Path
	}
	r.GRPC = cfg.GRPC && httpreq.IsGRPC(r.r.ContentType)
	r.headers = resize(r.headers, len(cfg.HeaderNames))
	for i, name := range cfg.HeaderNames {
		r.headers[i] = fromReader(r.r.Header(name))
	}
	r.cookies = resize(r.cookies, len(cfg.CookieNames))
	for i, name := range cfg.CookieNames {
		r.cookies[i] = fromReader(r.r.Cookie(name))
	}
	r.params = resize(r.params, len(cfg.ParamNames))
	for i, name := range cfg.ParamNames {
		r.params[i] = fromReader(r.r.Param(name))
	}
	r.clientIP = value{}
	if cfg.NeedsClientAddress {
		r.clientIP = fromReader(r.r.ClientAddress(sourceAddress, cfg.XFFNumTrustedHops))
	}
}

func resize(v []value, n int) []value {
	if cap(v) < n {
		return make([]value, n)
	}
	v = v[:n]
	clear(v)
	return v
}

// Package engine is the routehint filter's request reading and decision logic, pure Go
// with no ABI calls: Request.Read is the one place that looks at the request (every
// header copy, every Cookie line, the decoded query) and says which headers must go
// before the request goes upstream; Engine.Decide picks targets from what Read
// extracted. The wasip1 glue in the parent package only moves bytes between the host
// and these two steps.
package engine

import (
	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/httpreq"
	"github.com/meshplug/meshplug/filters/routehint/config"
)

// Request is what the rules see of a request. Its slices are reused from one Read to
// the next; the strings alias the header view passed to Read (and the decoded query
// values, allocated only when a value is percent-encoded). Cookies and query
// parameters are read by name, on use, with filters/httpreq (CookieValues,
// ParamValues).
type Request struct {
	Method string
	// Path is :path without the query string (and fragment), in canonical form when a
	// condition reads the path (config.Config.NeedPath), else as sent.
	Path string
	// Headers is every regular header entry in order, repeated names once per copy,
	// minus the hint headers removed as spoofed. Pseudo-headers are left out (path and
	// method have their own inputs). Names are as the host gives them: lower case in
	// Envoy's header maps (its HTTP/1 codec lower-cases them, HTTP/2 requires it), which
	// is what conditions compare with; only the hint check folds case.
	Headers []abi.Pair
	// paths are the readings of an ambiguous path (Path is the first).
	paths []string
	// ClientAddress is the downstream address, canonical (httpreq.CanonicalAddress:
	// no port, IPv4-mapped IPv6 as IPv4, no zone), set by the glue when the config
	// hashes it.
	ClientAddress string

	r   httpreq.Request
	cfg *config.Config
	// The cookies and query parameters conditions read, by config slot
	// (config.Condition.Slot), each read on its first use in a request: rules often
	// test one input many times.
	cookies, params []input
	// An input no condition reads (CookieValues and ParamValues of other names).
	other input

	// Strip lists the exact names of the request headers to remove before the request
	// goes upstream: client-sent hint headers (and their underscore spellings) and the
	// override header.
	Strip []string
	// Spoofed reports that at least one client-sent hint header is in Strip.
	Spoofed bool
}

// Read fills r from the request headers (the proxy-wasm encoding of the whole map,
// as proxy_get_header_map_pairs returns it), reusing r's slices.
//
// Every header whose name, lower-cased and with '_' read as '-', is a hint header
// (config.Config.Hints) is put in Strip and hidden from the rules, unless its exact
// name is trusted. So x_route_hint goes too: Envoy forwards underscore names by default
// (headers_with_underscores_action ALLOW), and CGI-style upstreams fold them into the
// same variable as x-route-hint.
func (r *Request) Read(cfg *config.Config, headers abi.PairsView) {
	r.ClientAddress, r.Spoofed = "", false
	r.Strip = r.Strip[:0]
	// Every entry decoded once (the reader's Pairs); method and path (their first
	// copies, as httpreq.Request.Read takes them) found in the same pass; Cookie lines
	// are read when a cookie is.
	r.r.ReadParts(headers, 0)
	r.cfg = cfg
	r.cookies, r.params = resetInputs(r.cookies, len(cfg.CookieNames)), resetInputs(r.params, len(cfg.ParamNames))
	// Every entry but the pseudo-headers and the spoofed hints.
	all := r.r.Pairs()
	r.Headers = r.Headers[:0]
	method, rawPath, gotMethod, gotPath := "", "", false, false
	for i := range all {
		k := all[i].Key
		if len(k) > 0 && k[0] == ':' {
			switch {
			case k == ":method" && !gotMethod:
				method, gotMethod = all[i].Value, true
			case k == ":path" && !gotPath:
				rawPath, gotPath = all[i].Value, true
			}
			continue
		}
		if isHint(cfg, k) {
			if _, trusted := cfg.Trusted[k]; !trusted {
				r.strip(k)
				r.Spoofed = true
				continue
			}
		}
		r.Headers = append(r.Headers, all[i])
	}
	if ov := cfg.Override; ov != nil && ov.Header != "" {
		for _, h := range r.Headers {
			if h.Key == ov.Header {
				r.strip(ov.Header)
				break
			}
		}
	}
	r.Method, r.r.Method = method, method
	r.r.Path, r.r.RawQuery = httpreq.SplitTarget(rawPath)
	r.paths, r.Path = r.paths[:0], r.r.Path
	if cfg.NeedPath && r.r.Path != "" { // absent :path (a malformed header map) stays ""
		r.paths, _ = httpreq.PathReadings(r.paths, r.r.Path, cfg.Path)
		r.Path = r.paths[0]
	}
}

// input is the values of one cookie or query parameter name in a request.
type input struct {
	vals      []string
	ambiguous bool
	read      bool
}

func resetInputs(in []input, n int) []input {
	if cap(in) < n {
		return make([]input, n)
	}
	in = in[:n]
	for i := range in {
		in[i].read = false
	}
	return in
}

// cookie returns the cookie condition c reads (config.Condition.Slot). (Small
// enough to inline into Holds: after the first, a condition's read is two loads.)
func (r *Request) cookie(c *config.Condition) *input {
	in := &r.cookies[c.Slot]
	if !in.read {
		r.readCookie(in, c.Name)
	}
	return in
}

func (r *Request) readCookie(in *input, name string) {
	var why string
	in.vals, why = r.r.AppendCookieValues(in.vals[:0], name)
	in.ambiguous, in.read = why != "", true
}

// param returns the query parameter condition c reads.
func (r *Request) param(c *config.Condition) *input {
	in := &r.params[c.Slot]
	if !in.read {
		r.readParam(in, c.Name)
	}
	return in
}

func (r *Request) readParam(in *input, name string) {
	var why string
	in.vals, why = r.r.AppendParamValues(in.vals[:0], name)
	in.ambiguous, in.read = why != "", true
}

// CookieValues returns the value of every copy of cookie name over all Cookie lines,
// as Go's net/http reads them (a quoted value unquoted); ambiguous reports that some
// common upstream parser reads the request's cookies differently for this name
// (httpreq's rule: a value Go skips, a spelling such as SID or s%69d, a name after
// ','). The slice is valid until the next Read (or CookieValues or ParamValues of a
// name no condition reads).
func (r *Request) CookieValues(name string) (vals []string, ambiguous bool) {
	if r.cfg != nil {
		for i, n := range r.cfg.CookieNames {
			if n == name {
				in := r.cookie(&config.Condition{Name: name, Slot: i})
				return in.vals, in.ambiguous
			}
		}
	}
	var why string
	r.other.vals, why = r.r.AppendCookieValues(r.other.vals[:0], name)
	return r.other.vals, why != ""
}

// ParamValues returns the value of every copy of query parameter name, decoded as
// url.ParseQuery decodes it ('+' as space); ambiguous reports a pair for this name
// that some common upstream parser reads differently (an invalid escape, a ';', a
// spelling such as Name or a double-encoded name). The slice is valid until the next
// Read (or CookieValues or ParamValues of a name no condition reads).
func (r *Request) ParamValues(name string) (vals []string, ambiguous bool) {
	if r.cfg != nil {
		for i, n := range r.cfg.ParamNames {
			if n == name {
				in := r.param(&config.Condition{Name: name, Slot: i})
				return in.vals, in.ambiguous
			}
		}
	}
	var why string
	r.other.vals, why = r.r.AppendParamValues(r.other.vals[:0], name)
	return r.other.vals, why != ""
}

// isHint reports whether header name k, normalized (config.Normalize), is a hint.
func isHint(cfg *config.Config, k string) bool {
	for _, h := range cfg.HintList {
		if len(h) == len(k) && sameNormalized(k, h) {
			return true
		}
	}
	return false
}

// sameNormalized reports whether config.Normalize(k) == norm, without allocating.
func sameNormalized(k, norm string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

func (r *Request) strip(name string) {
	for _, s := range r.Strip {
		if s == name {
			return
		}
	}
	r.Strip = append(r.Strip, name)
}

// SetClientAddress sets ClientAddress from Envoy's source.address property
// ("10.1.2.3:4567", "[2001:db8::1]:4567"), in canonical form: one client, one sticky
// target, however the host spells its address (httpreq.CanonicalAddress). An address
// that does not parse leaves ClientAddress empty (the key is missing).
func (r *Request) SetClientAddress(addr string) {
	r.ClientAddress = ""
	if a, ok := httpreq.CanonicalAddress(addr); ok {
		r.ClientAddress = a.String()
	}
}

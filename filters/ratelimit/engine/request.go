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
	"net/netip"
	"strings"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/httpreq"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
)

// Request is what the engine sees of a request, filled by Read. Strings alias the
// header view given to Read (and the Request's own scratch space); a Request is reused
// across requests by the glue.
type Request struct {
	Method string
	// Path is :path without the query string in canonical form, its most decoded
	// reading (httpreq.PathReadings) when it is ambiguous: the path descriptor value.
	Path string
	GRPC bool // content-type application/grpc*
	// paths are all readings of the path; a rule's path condition holds if one does.
	paths []string

	headers  []value // by config.HeaderNames
	cookies  []value // by config.CookieNames
	params   []value // by config.ParamNames
	clientIP value

	copies  []string
	scratch []byte
}

type value struct {
	s  string
	ok bool
}

// Read fills r from the request headers (pseudo-headers included) and the
// connection's source.address property ("ip:port"; read only when
// cfg.NeedsClientAddress, "" otherwise).
//
// Every copy counts: a repeated header is its copies joined by "," (RFC 9110 field
// combination, and what Envoy's header map shows for inline headers such as
// X-Forwarded-For); a cookie is its first occurrence over all Cookie lines; a query
// parameter is its first occurrence, name and value percent-decoded with '+' as space
// (as upstream form parsers decode them). An empty value counts as absent.
func (r *Request) Read(cfg *config.Config, h abi.PairsView, sourceAddress string) {
	r.Method, _ = h.Get(":method")
	path, _ := h.Get(":path")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	r.paths, _ = httpreq.PathReadings(r.paths[:0], path, cfg.Path)
	r.Path = r.paths[len(r.paths)-1]
	ct, _ := h.Get("content-type")
	r.GRPC = abi.IsGRPCContentType(ct)
	r.scratch = r.scratch[:0]

	r.headers = resize(r.headers, len(cfg.HeaderNames))
	for i, name := range cfg.HeaderNames {
		r.headers[i] = r.header(h, name)
	}
	r.cookies = resize(r.cookies, len(cfg.CookieNames))
	if len(cfg.CookieNames) > 0 {
		r.copies = h.AppendValues(r.copies[:0], "cookie")
		for i, name := range cfg.CookieNames {
			r.cookies[i] = cookie(r.copies, name)
		}
	}
	r.params = resize(r.params, len(cfg.ParamNames))
	for i, name := range cfg.ParamNames {
		r.params[i] = queryParam(query, name)
	}
	r.clientIP = value{}
	if cfg.NeedsClientAddress {
		r.clientIP = r.clientAddress(h, sourceAddress, cfg.XFFNumTrustedHops)
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

// header joins every copy of name with ",".
func (r *Request) header(h abi.PairsView, name string) value {
	r.copies = h.AppendValues(r.copies[:0], name)
	switch len(r.copies) {
	case 0:
		return value{}
	case 1:
		return value{r.copies[0], r.copies[0] != ""}
	}
	start := len(r.scratch)
	for i, c := range r.copies {
		if i > 0 {
			r.scratch = append(r.scratch, ',')
		}
		r.scratch = append(r.scratch, c...)
	}
	return value{string(r.scratch[start:]), true}
}

// cookie finds the first cookie called name over the Cookie lines (RFC 6265
// cookie-string: pairs separated by ";", optional spaces); a value in double quotes is
// unquoted, as Envoy's parseCookieValue does.
func cookie(lines []string, name string) value {
	for _, line := range lines {
		for line != "" {
			var pair string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				pair, line = line[:i], line[i+1:]
			} else {
				pair, line = line, ""
			}
			pair = strings.TrimLeft(pair, " \t")
			eq := strings.IndexByte(pair, '=')
			if eq < 0 || pair[:eq] != name {
				continue
			}
			v := strings.TrimRight(pair[eq+1:], " \t")
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return value{v, v != ""}
		}
	}
	return value{}
}

// queryParam finds the first parameter whose decoded name is name.
func queryParam(query, name string) value {
	for query != "" {
		var part string
		if i := strings.IndexByte(query, '&'); i >= 0 {
			part, query = query[:i], query[i+1:]
		} else {
			part, query = query, ""
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, _ := config.DecodeQueryName(k); dk != name {
			continue
		}
		dv, _ := config.DecodeQueryName(v)
		return value{dv, dv != ""}
	}
	return value{}
}

// clientAddress is the client's IP: with hops > 0, the address hops entries from the
// right of X-Forwarded-For (all copies joined), as Envoy's xff_num_trusted_hops
// (Utility::getLastAddressFromXFF with hops-1 skipped); with fewer entries than that,
// the connection's address, as Envoy falls back to it. An entry that is not an IP
// address makes the value absent (the rule's missing_key applies) rather than letting
// a malformed header pick a bucket. Addresses are canonical (netip), IPv4-mapped IPv6
// unmapped, zones dropped, so one client has one spelling.
func (r *Request) clientAddress(h abi.PairsView, source string, hops int) value {
	if hops > 0 {
		xff := r.header(h, "x-forwarded-for")
		if xff.ok {
			s, enough := xff.s, true
			for i := 1; i < hops && enough; i++ {
				j := strings.LastIndexByte(s, ',')
				enough = j >= 0
				if enough {
					s = s[:j]
				}
			}
			if enough {
				if j := strings.LastIndexByte(s, ','); j >= 0 {
					s = s[j+1:]
				}
				return r.ip(strings.Trim(s, " \t"))
			}
		}
	}
	if ap, err := netip.ParseAddrPort(source); err == nil {
		return r.addr(ap.Addr())
	}
	return r.ip(source)
}

func (r *Request) ip(s string) value {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return value{}
	}
	return r.addr(a)
}

func (r *Request) addr(a netip.Addr) value {
	a = a.Unmap().WithZone("")
	start := len(r.scratch)
	r.scratch = a.AppendTo(r.scratch)
	return value{string(r.scratch[start:]), true}
}

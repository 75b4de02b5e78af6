// Package engine is the routehint filter's request reading and decision logic, pure Go
// with no ABI calls: Request.Read is the one place that looks at the request (every
// header copy, every Cookie line, the decoded query) and says which headers must go
// before the request goes upstream; Engine.Decide picks targets from what Read
// extracted. The wasip1 glue in the parent package only moves bytes between the host
// and these two steps.
package engine

import (
	"net/url"
	"strings"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/httpreq"
	"github.com/meshplug/meshplug/filters/routehint/config"
)

// Request is what the rules see of a request. Its slices are reused from one Read to
// the next; the strings alias the header view passed to Read (and the decoded query
// values, which Read allocates only when a name or value is percent-encoded).
type Request struct {
	Method string
	Path   string // :path without the query string (and fragment), in canonical form
	// Headers is every regular header entry in order, repeated names once per copy,
	// minus the hint headers removed as spoofed. Pseudo-headers are left out (path and
	// method have their own inputs). Names are as the host gives them: lower case in
	// Envoy's header maps (its HTTP/1 codec lower-cases them, HTTP/2 requires it), which
	// is what conditions compare with; only the hint check folds case.
	Headers []abi.Pair
	// cookies and query are parsed on first use (see Cookies and Query): a request
	// decided before any rule looks at them does not pay for them.
	cookies, query         []abi.Pair
	cookiesRead, queryRead bool
	// paths are the readings of an ambiguous path (Path is the first).
	paths    []string
	rawQuery string
	// ClientAddress is the downstream address without its port (set by the glue when
	// the config hashes it).
	ClientAddress string

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
	r.Method, r.Path, r.ClientAddress, r.Spoofed = "", "", "", false
	r.cookies, r.query, r.Strip = r.cookies[:0], r.query[:0], r.Strip[:0]
	r.cookiesRead, r.queryRead = false, false
	rawPath := ""
	// Every entry, then filtered in place: what is kept moves to the front.
	all, kept := headers.AppendTo(r.Headers[:0]), 0
	for i := range all {
		k, v := all[i].Key, all[i].Value
		if len(k) > 0 && k[0] == ':' {
			switch k {
			case ":method":
				r.Method = v
			case ":path":
				rawPath = v
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
		all[kept] = all[i]
		kept++
	}
	r.Headers = all[:kept]
	if ov := cfg.Override; ov != nil && ov.Header != "" {
		for _, h := range r.Headers {
			if h.Key == ov.Header {
				r.strip(ov.Header)
				break
			}
		}
	}
	path, query, _ := strings.Cut(rawPath, "?")
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	} else if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	r.paths, r.rawQuery = r.paths[:0], query
	if path != "" { // absent :path (a malformed header map) stays ""
		r.paths, _ = httpreq.PathReadings(r.paths, path, cfg.Path)
		r.Path = r.paths[0]
	}
}

// Cookies returns every cookie of every Cookie header, in order, parsed on first use.
func (r *Request) Cookies() []abi.Pair {
	if !r.cookiesRead {
		r.cookiesRead = true
		for _, h := range r.Headers {
			if h.Key == "cookie" {
				r.cookies = appendCookies(r.cookies, h.Value)
			}
		}
	}
	return r.cookies
}

// Query returns every query parameter, names and values percent-decoded ('+' as
// space) like Go's net/url.ParseQuery, parsed on first use; a parameter that does not
// decode is dropped, as ParseQuery drops it.
func (r *Request) Query() []abi.Pair {
	if !r.queryRead {
		r.queryRead = true
		r.query = appendQuery(r.query, r.rawQuery)
	}
	return r.query
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
// ("10.1.2.3:4567", "[2001:db8::1]:4567"), dropping the port.
func (r *Request) SetClientAddress(addr string) {
	switch {
	case strings.HasPrefix(addr, "["):
		if i := strings.IndexByte(addr, ']'); i > 0 {
			addr = addr[1:i]
		}
	case strings.Count(addr, ":") == 1:
		addr = addr[:strings.IndexByte(addr, ':')]
	}
	r.ClientAddress = addr
}

// appendCookies parses one Cookie header ("a=1; b=2") like Envoy's forEachCookie
// (source/common/http/utility.cc): pairs split on ';', leading spaces skipped, a pair
// without '=' skipped, a value wrapped in double quotes unwrapped; unlike Envoy it also
// trims trailing spaces from names and values, and keeps every copy of a name.
func appendCookies(dst []abi.Pair, header string) []abi.Pair {
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		dst = append(dst, abi.Pair{Key: k, Value: v})
	}
	return dst
}

// appendQuery parses a query string the way Go's url.ParseQuery does ('&'-separated;
// a ';' makes the pair invalid; names and values unescaped with '+' as space; invalid
// pairs dropped).
func appendQuery(dst []abi.Pair, query string) []abi.Pair {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		if kv == "" || strings.IndexByte(kv, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		var ok bool
		if k, ok = unescape(k); !ok {
			continue
		}
		if v, ok = unescape(v); !ok {
			continue
		}
		dst = append(dst, abi.Pair{Key: k, Value: v})
	}
	return dst
}

func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

package testenv

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/meshplug/meshplug/filters/abi"
)

// Route is one route of the router stage (Options.Routes): the first route whose Match
// matches the request, in order, picks the cluster, like the routes of one Envoy
// virtual host (RouteConfiguration with a single "*" virtual host).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-route
type Route struct {
	Name    string     // route name (reported, and the `xds.route_name` property)
	Match   RouteMatch // what the request must look like
	Cluster string     // cluster name (reported, `xds.cluster_name`, UpstreamRequest.Cluster)
}

// RouteMatch is a route's match, a subset of Envoy's RouteMatch. Path and Prefix are
// case-sensitive like Envoy's default (case_sensitive: true).
type RouteMatch struct {
	Prefix  string          // path prefix, as Envoy's route match `prefix` ("" with no Path = match all)
	Path    string          // exact path (without query), as Envoy's `path`
	Headers []HeaderMatcher // all must match, as Envoy's route `headers`
}

// HeaderMatcher matches one request header (pseudo-headers like ":method" included),
// like Envoy's config.route.v3.HeaderMatcher evaluated by HeaderUtility::matchHeaders
// (source/common/http/header_utility.cc):
//   - a header with several values is matched as its values joined with ","
//     (HeaderUtility::getAllOfHeaderAsString);
//   - a missing header matches nothing, whatever Invert says, except Present
//     inverted (treat_missing_header_as_empty is not offered: false, Envoy's default);
//   - Exact "" (with no other matcher) matches any value of a present header;
//   - Regex is RE2 syntax matched against the whole value (Envoy's safe_regex).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-headermatcher
type HeaderMatcher struct {
	Name    string
	Exact   string // one of Exact, Prefix, Regex (RE2, full match), Present
	Prefix  string
	Regex   string
	Present bool
	Invert  bool
}

// compiledRoute is a Route with its regexps compiled.
type compiledRoute struct {
	r       *Route
	regexps []*regexp.Regexp // per header matcher; nil when it has no Regex
}

func compileRoutes(routes []Route) ([]compiledRoute, error) {
	out := make([]compiledRoute, len(routes))
	for i := range routes {
		r := &routes[i]
		out[i].r = r
		if r.Match.Prefix != "" && r.Match.Path != "" {
			return nil, fmt.Errorf("testenv: routes[%d] (%q): set one of Prefix and Path", i, r.Name)
		}
		out[i].regexps = make([]*regexp.Regexp, len(r.Match.Headers))
		for j, hm := range r.Match.Headers {
			if hm.Name == "" {
				return nil, fmt.Errorf("testenv: routes[%d].headers[%d]: empty name", i, j)
			}
			n := 0
			for _, set := range []bool{hm.Exact != "", hm.Prefix != "", hm.Regex != "", hm.Present} {
				if set {
					n++
				}
			}
			if n > 1 {
				return nil, fmt.Errorf("testenv: routes[%d].headers[%d] (%s): set one of Exact, Prefix, Regex, Present", i, j, hm.Name)
			}
			if hm.Regex != "" {
				re, err := regexp.Compile(`^(?:` + hm.Regex + `)$`)
				if err != nil {
					return nil, fmt.Errorf("testenv: routes[%d].headers[%d] (%s): %v", i, j, hm.Name, err)
				}
				out[i].regexps[j] = re
			}
		}
	}
	return out, nil
}

// matches reports whether the request headers h match the route, like Envoy's
// RouteEntryImplBase::matchRoute followed by the path matcher: headers first, then
// Prefix against the whole :path (query included, as PrefixRouteEntryImpl does) or
// Path against the :path without its query and fragment (PathRouteEntryImpl).
func (c *compiledRoute) matches(h []abi.Pair) bool {
	m := &c.r.Match
	for j := range m.Headers {
		if !matchHeader(h, &m.Headers[j], c.regexps[j]) {
			return false
		}
	}
	if m.Prefix == "" && m.Path == "" {
		return true
	}
	path, _ := Headers(h).Get(":path")
	if m.Path != "" {
		if i := strings.IndexAny(path, "?#"); i >= 0 {
			path = path[:i]
		}
		return path == m.Path
	}
	return strings.HasPrefix(path, m.Prefix)
}

// matchHeader is HeaderUtility::matchHeaders for one matcher (see HeaderMatcher).
func matchHeader(h []abi.Pair, hm *HeaderMatcher, re *regexp.Regexp) bool {
	name := lowerASCII(hm.Name)
	var value string
	n := 0
	for _, p := range h {
		if p.Key == name {
			if n == 0 {
				value = p.Value
			} else {
				value += "," + p.Value
			}
			n++
		}
	}
	if n == 0 {
		return hm.Present && hm.Invert
	}
	var match bool
	switch {
	case hm.Present:
		match = true
	case hm.Prefix != "":
		match = strings.HasPrefix(value, hm.Prefix)
	case re != nil:
		match = re.MatchString(value)
	default:
		match = hm.Exact == "" || value == hm.Exact
	}
	return match != hm.Invert
}

// route returns the route for the request headers as they are now, like Envoy's
// route cache: the connection manager resolves the route when the request headers
// arrive (ConnectionManagerImpl::ActiveStream::refreshCachedRoute, before the filter
// chain runs) and keeps it until a filter clears the cache; the wasm context clears it
// on every edit of the request headers (Context::addHeaderMapValue,
// replaceHeaderMapValue, removeHeaderMapValue and setHeaderMapPairs call
// clearRouteCache for WasmHeaderMapType::RequestHeaders; ABI 0.1.0 guests called
// proxy_clear_route_cache instead); the next reader (the router, or a filter reading
// xds.route_name) resolves it again from the edited headers. nil: no route matched.
func (s *Stream) route() *Route {
	if !s.routeOK {
		s.routeOK = true
		s.routeSel = nil
		for i := range s.h.routes {
			if s.h.routes[i].matches(s.reqHeaders) {
				s.routeSel = s.h.routes[i].r
				break
			}
		}
	}
	return s.routeSel
}

// clearRouteCache drops the cached route (a filter edited the request headers).
func (s *Stream) clearRouteCache() { s.routeOK = false }

// routeRequest is the router filter's decodeHeaders: with routes configured, the
// request headers that reached the end of the chain pick the route; none matched is
// Envoy's 404 local reply with details route_not_found and an empty body
// (Router::Filter::decodeHeaders, ResponseCodeDetails::RouteNotFound), sent back through
// the response callbacks of every plugin. It reports whether the request goes on.
func (s *Stream) routeRequest() bool {
	if s.h.routes == nil {
		return true
	}
	r := s.route()
	if r == nil {
		s.local = &localReply{status: 404, details: "route_not_found", grpcStatus: abi.GrpcStatusNone}
		s.applyLocal()
		return false
	}
	s.blk.up.Route, s.blk.up.Cluster = r.Name, r.Cluster
	s.blk.resp.Route, s.blk.resp.Cluster = r.Name, r.Cluster
	return true
}

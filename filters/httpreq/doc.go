// Package httpreq is the one place every meshplug filter reads the request: header
// values over all copies (with Envoy's coalescing), cookies over every Cookie line, the
// query decoded as upstream parsers decode it, the path, the method, and the client
// address under Envoy's X-Forwarded-For rules with canonical address forms. What is
// ambiguous (read differently by common upstreams) is reported to the caller under one
// documented rule, so that the value a filter keys, matches or authenticates on is the
// value the upstream will act on.
//
// It has no ABI calls and compiles for wasip1 and natively: filters' engines call it on
// the header view their glue reads with one host call.
//
// # The rule
//
// A value is read the way Go's net/http reads it (http.Request.Cookie,
// url.ParseQuery, http.Header.Get): that is the Value's S. Every other spelling that
// some common upstream parser (Python, PHP, Node, Rack, Java servlet containers,
// ASP.NET, CGI gateways) reads as the same name makes the read Ambiguous, and so does a
// value that one of them reads differently from Go. A name present more than once is
// Repeated (one upstream reads the first copy, another the last). An empty value counts
// as absent. Filters that key or authenticate on a single value refuse a request whose
// value is Ambiguous or Repeated (ratelimit answers 400, auth 401); filters that judge
// every copy (routehint's conditions) let an ambiguous input satisfy no condition.
//
// In detail, for a name N the filter was configured with:
//
//   - Query parameters ('&'-separated pairs after the first '?'; a fragment is cut):
//     names and values are percent-decoded with '+' as space, as url.ParseQuery does.
//     Ambiguous: a pair naming N that holds ';' (Go drops it; Python before 3.9.2 and
//     Rack 2 split there), an invalid escape in the name or value of a pair naming N
//     (Go drops the pair; Python and Node keep it verbatim), a name equal to N only
//     when compared in the inclusive form (below), a name that names N after a
//     second decoding, and a value (decoded) that is not UTF-8 (Python's parse_qs,
//     Node's URLSearchParams and servlet containers read what is not UTF-8 as U+FFFD,
//     so `x%FF` and `x%FE` are one value to them, two to Go). Spaces and other white
//     space around a query name are part of it, as every common parser reads them
//     (Go, Python, Node, Rack, servlets keep them; PHP drops leading spaces and reads
//     the others as '_'): `user =x`, `user%20=x`, `user+=x` and `user%09=x` name no
//     parameter user, and `user =x&user=y` is y.
//   - Cookies (every Cookie line; HTTP/1 clients may send several): crumbs separated by
//     ';', names and values trimmed of spaces and tabs, a value's surrounding double
//     quotes removed, as http.Request.Cookie reads them. Ambiguous: a value Go refuses
//     (a '"', '\\' or control byte inside, non-ASCII; Go skips the crumb, Envoy and
//     others take it), a crumb holding ',' that names N after the ',' (RFC 2965
//     parsers split there), a name equal to N only in the inclusive form (PHP
//     url-decodes cookie names; `sid =v` with other white space), more crumbs than Go
//     reads at all (3000), a structured name (below; PHP's $_COOKIE).
//   - Headers: a header named N given on more than one line is Repeated (Envoy's inline
//     headers join the copies with ',', Go's Header.Get reads the first, CGI gateways
//     join them). A name that equals N when '_' is read as '-' and case is folded is
//     Ambiguous (WSGI, PHP-FPM and Rack map both to HTTP_X_USER; Envoy forwards
//     underscore names by default).
//   - The inclusive form of a query or cookie name: leading spaces dropped, ASCII
//     lower-case, ' ', '.' and '[' read as '_' (PHP's variable-name mangling) after
//     percent-decoding ('+' as space). A structured name also names its base: PHP,
//     Rack and Express's qs read `user[]`, `user[0]` and `user[k]` as parameter user
//     (an array or a map), Rack 2 also `user]`, qs and Rack 2 `[user]`; the base is
//     what is left after leading spaces and a leading run of '[' and ']', up to the
//     next bracket. A decoded name holding NUL also names what precedes the NUL (PHP
//     reads names as C strings: `user%00x` is user).
//
// The client address follows Envoy's xff_num_trusted_hops (see ClientAddress) and is
// canonical: IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4 address, zones and ports
// are dropped, IPv6 is in RFC 5952 form; an X-Forwarded-For entry that is not an
// address is Ambiguous. gRPC is detected as Envoy detects it (IsGRPC).
package httpreq

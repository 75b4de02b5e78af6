// Package httpreq is the one place every meshplug filter reads the request: header
// values over all copies (with Envoy's coalescing), cookies over every Cookie line, the
// query decoded as upstream parsers decode it, the path in one canonical form, the
// method, and the client address under Envoy's X-Forwarded-For rules with canonical
// address forms. What is ambiguous (read differently by common upstreams) is reported
// to the caller under one documented rule, so that the value a filter keys, matches or
// authenticates on is the value the upstream will act on.
//
// It has no ABI calls and compiles for wasip1 and natively: filters' engines call it on
// the header view their glue reads with one host call.
package httpreq

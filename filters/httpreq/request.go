package httpreq

import (
	"strings"

	"github.com/meshplug/meshplug/filters/abi"
)

// State says what a read found.
type State uint8

const (
	// Absent: no copy, or an empty value.
	Absent State = iota
	// Present: exactly one copy, read the same by every common parser.
	Present
	// Repeated: the name is given more than once (upstreams disagree on which copy
	// counts).
	Repeated
	// Ambiguous: some common upstream parser reads the value (or the name) differently
	// from Go's net/http; Value.Why says how.
	Ambiguous
)

var stateNames = [...]string{"absent", "present", "repeated", "ambiguous"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(?)"
}

// Value is the result of reading one named input.
type Value struct {
	// S is the value as Go's net/http reads it (the first copy when Repeated; "" when
	// Absent or Ambiguous).
	S     string
	State State
	// Why describes a Repeated or Ambiguous read ("cookie sid given twice"), for logs
	// and response details.
	Why string
}

// OK reports whether the value is Present.
func (v Value) OK() bool { return v.State == Present }

// Refused reports whether a filter keying on a single value must refuse the request.
func (v Value) Refused() bool { return v.State >= Repeated }

// Request reads one request's header map (the proxy-wasm encoding the glue reads with
// one host call). Strings alias the view (and, for decoded values, fresh memory). A
// Request is reused across requests: Read resets it.
type Request struct {
	View   abi.PairsView
	Method string
	// Path is :path without the query string and fragment, as the request sent it.
	Path string
	// RawQuery is the query string (after the first '?', before any '#').
	RawQuery string
	// ContentType is the first content-type value.
	ContentType string

	pairs     []abi.Pair // every entry of View, in order, decoded on first use
	pairsRead bool
	cookies   []string // every Cookie line's value, in order, read on first use
	cookiesOK bool
	vals      []string // scratch for single-value reads
	scratch   []byte
}

// Pairs returns every header entry in order (pseudo-headers included, a repeated
// name once per line), aliasing the view, decoded on first use. Filters that look at
// every header use it rather than walk the view again. (Named reads scan the view's
// encoding directly, comparing only names of the right length: in a Go wasm guest,
// decoding every entry costs more than several such scans.)
func (r *Request) Pairs() []abi.Pair {
	if !r.pairsRead {
		r.pairs, r.pairsRead = r.View.AppendTo(r.pairs[:0]), true
	}
	return r.pairs
}

// Parts are the parts of a request ReadParts takes from the header map up front.
type Parts uint8

const (
	// PartMethod: Method.
	PartMethod Parts = 1 << iota
	// PartTarget: Path and RawQuery (query parameters are read from RawQuery).
	PartTarget
	// PartContentType: ContentType.
	PartContentType
	// AllParts is what Read takes.
	AllParts = PartMethod | PartTarget | PartContentType
)

// Read resets r to the request whose headers are view.
func (r *Request) Read(view abi.PairsView) { r.ReadParts(view, AllParts) }

// ReadParts is Read for a filter that knows (from its configuration) which parts it
// needs: each part is one scan of the header map, so a part no rule reads is left
// empty rather than read on every request.
func (r *Request) ReadParts(view abi.PairsView, parts Parts) {
	r.View = view
	r.Method, r.Path, r.RawQuery, r.ContentType = "", "", "", ""
	r.scratch = r.scratch[:0]
	r.pairsRead, r.cookiesOK = false, false
	if parts&PartMethod != 0 {
		r.Method, _ = view.Get(":method")
	}
	if parts&PartTarget != 0 {
		rawPath, _ := view.Get(":path")
		r.Path, r.RawQuery = SplitTarget(rawPath)
	}
	if parts&PartContentType != 0 {
		r.ContentType, _ = view.Get("content-type")
	}
}

// ReadHeaders is Read for a filter that only reads named headers (Header, Coalesced,
// AppendHeaderValues, Cookie, ClientAddress): it scans nothing up front, and leaves
// Method, Path, RawQuery and ContentType empty.
func (r *Request) ReadHeaders(view abi.PairsView) { r.ReadParts(view, 0) }

// ReadAll is Read for a filter that looks at every header: it decodes the view once
// (Pairs) and takes the method, path, content type and Cookie lines from that pass
// instead of scanning the view for each.
func (r *Request) ReadAll(view abi.PairsView) {
	r.View = view
	r.Method, r.ContentType = "", ""
	r.scratch = r.scratch[:0]
	r.pairs, r.pairsRead = view.AppendTo(r.pairs[:0]), true
	r.cookies, r.cookiesOK = r.cookies[:0], true
	rawPath, method, ct := "", false, false
	for i := range r.pairs {
		k := r.pairs[i].Key
		if len(k) == 0 || k[0] != ':' && k[0] != 'c' {
			continue
		}
		switch v := r.pairs[i].Value; k {
		case ":method":
			if !method {
				r.Method, method = v, true
			}
		case ":path":
			if rawPath == "" {
				rawPath = v
			}
		case "content-type":
			if !ct {
				r.ContentType, ct = v, true
			}
		case "cookie":
			r.cookies = append(r.cookies, v)
		}
	}
	r.Path, r.RawQuery = SplitTarget(rawPath)
}

// SplitTarget splits a :path into the path and the query string, dropping a fragment
// (Envoy refuses or strips one before filters run; a host that passes it must not
// make it part of either).
func SplitTarget(target string) (path, query string) {
	path = target
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i+1:]
	}
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	} else if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	return path, query
}

// IsGRPC reports whether a request with this content-type is gRPC as Envoy decides it
// (Grpc::Common::hasGrpcContentType, which also decides whether Envoy's local replies
// are gRPC-shaped): exactly application/grpc, or application/grpc+<subtype>.
// application/grpc-web and application/grpc;charset=... are not, and case counts.
// Every filter uses this one function so that its reply has the shape Envoy sends.
func IsGRPC(contentType string) bool { return abi.IsGRPCContentType(contentType) }

// single turns the copies of a name and the reason for an ambiguity into a Value.
func single(vals []string, why, what, name string) Value {
	switch {
	case why != "":
		return Value{State: Ambiguous, Why: why}
	case len(vals) > 1:
		return Value{S: vals[0], State: Repeated, Why: what + " " + name + " given more than once"}
	case len(vals) == 0 || vals[0] == "":
		return Value{}
	}
	return Value{S: vals[0], State: Present}
}

// Header reads the header name (lower case, as Envoy's header maps hold names).
func (r *Request) Header(name string) Value {
	var why string
	if r.pairsRead {
		r.vals, why = r.AppendHeaderValues(r.vals[:0], name)
	} else { // AppendHeaderValues' scan of the encoding, one call less
		var like string
		r.vals, like = r.View.AppendValuesLike(r.vals[:0], name)
		why = spelledWhy(name, like)
	}
	return single(r.vals, why, "header", name)
}

// spelledWhy is the Why of a header also given as like ("" if none).
func spelledWhy(name, like string) string {
	if like == "" {
		return ""
	}
	return "header " + name + " also spelled " + like
}

// Coalesced returns every copy of header name (lower case) joined with ',', as
// Envoy's header matchers and inline headers see a repeated header
// (HeaderUtility::getAllOfHeaderAsString); a single copy is returned as is, without
// allocating. For what Envoy itself matches on (fault's header conditions); a value a
// filter keys on is read with Header, which refuses copies.
func (r *Request) Coalesced(name string) (string, bool) {
	r.vals, _ = r.AppendHeaderValues(r.vals[:0], name)
	switch len(r.vals) {
	case 0:
		return "", false
	case 1:
		return r.vals[0], true
	}
	return strings.Join(r.vals, ","), true
}

// AppendHeaderValues appends the value of every line of header name (lower case) to
// dst. why is not empty when a line's name equals name only with '_' read as '-' or
// case folded (upstreams that fold such names read it as name).
func (r *Request) AppendHeaderValues(dst []string, name string) (_ []string, why string) {
	var like string
	if r.pairsRead {
		// Decoded already (ReadAll, Pairs): a walk over the entries is cheaper than
		// one over the encoding.
		pairs := r.pairs
		for i := range pairs {
			if k := pairs[i].Key; len(k) == len(name) {
				if k == name {
					dst = append(dst, pairs[i].Value)
				} else if like == "" && abi.HeaderNameIs(k, name) {
					like = k
				}
			}
		}
	} else {
		dst, like = r.View.AppendValuesLike(dst, name)
	}
	return dst, spelledWhy(name, like)
}

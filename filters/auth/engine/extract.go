package engine

import (
	"bytes"
	"net/url"
	"strings"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// This file is the one place that reads the request: Engine.Read sees every header
// line (repeated names, every Cookie line, the underscore spelling of a name) and every
// query parameter, finds each credential the configuration knows about and each
// client-supplied identity header, and records where they are so that the same place
// strips them (Extracted.strip). Decide only sees the extracted values.
//
// Upstream parsers disagree on how to read a query string or a Cookie header; an
// attacker picks the spelling the filter does not recognise and the upstream does.
// So names are compared in the most inclusive form any common parser produces, and a
// credential whose reading depends on the parser is refused:
//
//   - query names and values are percent-decoded with '+' as space (Go net/url,
//     Python urllib.parse, Node querystring, Java servlet containers); hex digits in
//     either case. An invalid escape in a credential's name or value refuses the
//     request (Go drops such a pair, Python and Node keep it verbatim).
//   - names compare ASCII case-insensitively (ASP.NET reads query and cookie names so)
//     and with ' ', '.' and '[' read as '_' (PHP's variable-name mangling), after
//     leading spaces are dropped; a name that is still percent-encoded after one
//     decoding and names a credential after a second one is refused (double decoding).
//   - '&' separates query parameters. ';' did in Python before 3.9.2 and in Rack 2
//     (Ruby) and does not in Go (since 1.17 a pair holding ';' is dropped), current
//     Python, Node or servlet containers: a pair holding ';' that names a credential on
//     either reading is refused.
//   - Cookie headers: every line is read (HTTP/1.1 clients may send several; Envoy joins
//     them only for HTTP/2 and HTTP/3), crumbs separated by ';' with surrounding spaces
//     and tabs dropped, a value's surrounding double quotes removed (RFC 6265). A crumb
//     holding ',' that names a credential after a ',' is refused (RFC 2965 parsers split
//     there). Names are compared like query names, '+' as space included (PHP
//     url-decodes cookie names).
//   - header names compare case-insensitively with '_' read as '-': CGI-style gateways
//     (WSGI, PHP-FPM, Rack) map both spellings to the same HTTP_X_API_KEY variable, and
//     Envoy forwards names with underscores unless headers_with_underscores_action says
//     otherwise.
//
// Every credential location that occurs more than once (the same header on two lines,
// a parameter or cookie given twice, in any spelling) is refused: one upstream reads
// the first copy, another the last.
//
// These are filters/httpreq's rules (the reader every meshplug filter shares; the name
// folding, lenient decoding, cookie spaces and header-name comparison used here are
// its functions). auth keeps its own walk over the request because it must also find
// where each occurrence sits, to strip it from what goes upstream.

// Request is the engine's view of a request as the glue passes it to Engine.Read.
type Request struct {
	Method string
	Path   string // :path including the query string
	// Headers is every request header line in order, in the proxy-wasm map encoding
	// the glue reads with one host call (names lower-case, as Envoy's header map holds
	// them; a name repeated on several lines is one entry per line). The engine's
	// strings alias it: the engine copies whatever it keeps after the request.
	Headers abi.PairsView
	Now     time.Time
}

// Extracted is what Read found in a request: the small values Decide works on. Its
// memory is reused across requests (the glue keeps one per stream), so reading a
// request whose credential sits in a header allocates nothing once warm.
type Extracted struct {
	Method string
	Path   string
	Now    time.Time

	found    []found
	counts   []uint8  // occurrences per location (saturating)
	identity []string // client-sent identity header names, as spelled
	cookies  []string // Cookie line values
	extVals  []Header // ext_authz allowed_request_headers present (first value)
	// repeated names a credential location present more than once; extRepeated an
	// ext_authz allowed request header present more than once.
	repeated    string
	extRepeated string
	// ambiguous describes the first credential whose reading depends on the parser.
	ambiguous string

	remove  []string // scratch for Verdict.RemoveHeaders
	nameBuf []byte   // scratch for decoding names
}

// IdentityHeaders returns the names (as the client spelled them) of the identity
// headers the request carries: the glue removes them before anything else happens,
// whatever the decision.
func (x *Extracted) IdentityHeaders() []string { return x.identity }

// found is one credential occurrence.
type found struct {
	loc   int32
	line  int32  // cookies: index into Extracted.cookies
	start int32  // params: byte range of the pair in Path; cookies: in the line
	end   int32  //
	name  string // headers: the name as spelled
	value string // header: the whole value; param: decoded; cookie: unquoted
	// verdict, filled by Decide
	by int32 // index in the rule's Requires that verified it, -1 if none
	id *Identity
}

type srcKind uint8

const (
	srcHeader srcKind = iota
	srcParam
	srcCookie
)

// location is a place the configuration reads a credential from.
type location struct {
	src     srcKind
	name    string // canonical: lower-case; headers with '-' for '_'; params/cookies with '_' for ' ', '.', '['
	readers []reader
}

// reader is one method reading a location.
type reader struct {
	kind    config.MethodKind
	prov    *config.Provider // MethodJWT
	prefix  string           // headers: value prefix ("" = whole value)
	forward bool
}

// headerWant is a header name Read looks for; one entry per canonical name.
type headerWant struct {
	name     string
	loc      int32 // credential location, -1 if none
	ext      int32 // index in ext_authz allowed_request_headers, -1 if none
	identity bool
	cookie   bool
}

// extractor is built once per configuration.
type extractor struct {
	locs      []location
	wants     []headerWant
	byLen     [][]int32 // header wants by name length
	params    []int32   // param locations
	cookies   []int32   // cookie locations
	maxName   int       // longest param/cookie location name
	hasParams bool
}

func canonHeader(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

func (ex *extractor) addLoc(src srcKind, name string, r reader) {
	for i := range ex.locs {
		if ex.locs[i].src == src && ex.locs[i].name == name {
			ex.locs[i].readers = append(ex.locs[i].readers, r)
			return
		}
	}
	ex.locs = append(ex.locs, location{src: src, name: name, readers: []reader{r}})
}

func (ex *extractor) want(name string) *headerWant {
	name = canonHeader(name)
	for i := range ex.wants {
		if ex.wants[i].name == name {
			return &ex.wants[i]
		}
	}
	ex.wants = append(ex.wants, headerWant{name: name, loc: -1, ext: -1})
	return &ex.wants[len(ex.wants)-1]
}

func newExtractor(cfg *config.Config) *extractor {
	ex := &extractor{}
	for _, p := range cfg.ProviderList {
		for _, hs := range p.FromHeaders {
			ex.addLoc(srcHeader, canonHeader(hs.Name), reader{kind: config.MethodJWT, prov: p, prefix: hs.ValuePrefix, forward: p.Forward})
		}
		for _, n := range p.FromParams {
			ex.addLoc(srcParam, canonName(n), reader{kind: config.MethodJWT, prov: p, forward: p.Forward})
		}
		for _, n := range p.FromCookies {
			ex.addLoc(srcCookie, canonName(n), reader{kind: config.MethodJWT, prov: p, forward: p.Forward})
		}
	}
	if a := cfg.APIKeys; a != nil {
		for _, h := range a.FromHeaders {
			ex.addLoc(srcHeader, canonHeader(h), reader{kind: config.MethodAPIKeys, forward: a.Forward})
		}
		for _, n := range a.FromParams {
			ex.addLoc(srcParam, canonName(n), reader{kind: config.MethodAPIKeys, forward: a.Forward})
		}
	}
	if b := cfg.BasicAuth; b != nil {
		ex.addLoc(srcHeader, "authorization", reader{kind: config.MethodBasicAuth, prefix: "Basic ", forward: b.Forward})
	}
	for i, l := range ex.locs {
		switch l.src {
		case srcHeader:
			ex.want(l.name).loc = int32(i)
		case srcParam:
			ex.params = append(ex.params, int32(i))
			ex.maxName = max(ex.maxName, len(l.name))
			ex.hasParams = true
		case srcCookie:
			ex.cookies = append(ex.cookies, int32(i))
			ex.maxName = max(ex.maxName, len(l.name))
		}
	}
	for _, h := range cfg.IdentityHeaders {
		ex.want(h).identity = true
	}
	if len(ex.cookies) > 0 {
		ex.want("cookie").cookie = true
	}
	if x := cfg.ExtAuthz; x != nil {
		for i, h := range x.AllowedRequestHeaders {
			if w := ex.want(h); !w.identity { // never hand a spoofed identity to the service
				w.ext = int32(i)
				if w.name == "cookie" {
					w.cookie = true
				}
			}
		}
	}
	for i, w := range ex.wants {
		for len(ex.byLen) <= len(w.name) {
			ex.byLen = append(ex.byLen, nil)
		}
		ex.byLen[len(w.name)] = append(ex.byLen[len(w.name)], int32(i))
	}
	return ex
}

// Read extracts everything the engine needs from req into x (reusing x's memory).
func (e *Engine) Read(req *Request, x *Extracted) {
	ex := e.ex
	x.Method, x.Path, x.Now = req.Method, req.Path, req.Now
	x.found, x.identity, x.cookies, x.extVals = x.found[:0], x.identity[:0], x.cookies[:0], x.extVals[:0]
	x.repeated, x.extRepeated, x.ambiguous = "", "", ""
	if cap(x.counts) < len(ex.locs) {
		x.counts = make([]uint8, len(ex.locs))
	}
	x.counts = x.counts[:len(ex.locs)]
	clear(x.counts)
	for c := req.Headers.Cursor(); ; {
		name, value, ok := c.Next()
		if !ok {
			break
		}
		{
			if len(name) >= len(ex.byLen) {
				continue
			}
			for _, wi := range ex.byLen[len(name)] {
				w := &ex.wants[wi]
				if !abi.HeaderNameIs(name, w.name) {
					continue
				}
				if w.identity {
					if n := len(x.identity); n == 0 || x.identity[n-1] != name {
						x.identity = append(x.identity, name)
					}
				}
				if w.cookie {
					x.cookies = append(x.cookies, value)
				}
				if w.ext >= 0 && !w.cookie {
					x.addExt(w.name, value)
				}
				if w.loc >= 0 {
					x.count(w.loc, name)
					if ex.headerReaderMatches(w.loc, value) {
						x.found = append(x.found, found{loc: w.loc, name: name, value: value})
					}
				}
				break
			}
		}
	}
	if len(ex.cookies) > 0 {
		for i, line := range x.cookies {
			e.readCookies(x, int32(i), line)
		}
	}
	if ex.hasParams {
		if q := strings.IndexByte(x.Path, '?'); q >= 0 {
			e.readQuery(x, q+1)
		}
	}
	if len(x.cookies) > 0 && e.Cfg.ExtAuthz != nil {
		for _, h := range e.Cfg.ExtAuthz.AllowedRequestHeaders {
			if h == "cookie" {
				x.extVals = append(x.extVals, Header{"cookie", strings.Join(x.cookies, "; ")})
			}
		}
	}
}

func (x *Extracted) count(loc int32, name string) {
	if x.counts[loc] < 255 {
		x.counts[loc]++
	}
	if x.counts[loc] == 2 && x.repeated == "" {
		x.repeated = name
	}
}

func (x *Extracted) addExt(name, value string) {
	for _, h := range x.extVals {
		if h.Name == name {
			if x.extRepeated == "" {
				x.extRepeated = name
			}
			return
		}
	}
	x.extVals = append(x.extVals, Header{name, value})
}

func (x *Extracted) ambiguity(what string) {
	if x.ambiguous == "" {
		x.ambiguous = what
	}
}

// headerReaderMatches reports whether any reader of a header location accepts value
// (its prefix matches): a value no method reads (authorization: Negotiate ...) is not
// a credential of this configuration.
func (ex *extractor) headerReaderMatches(loc int32, value string) bool {
	for i := range ex.locs[loc].readers {
		if _, ok := ex.locs[loc].readers[i].token(value); ok {
			return true
		}
	}
	return false
}

// token returns the credential in a header value read by r: the value after the
// prefix, surrounding spaces and tabs trimmed. The prefix compares ASCII
// case-insensitively; a prefix ending in a space (an auth scheme, "Bearer ") accepts
// any run of spaces and tabs after the scheme.
func (r *reader) token(value string) (string, bool) {
	p := r.prefix
	if p == "" {
		return strings.Trim(value, " \t"), true
	}
	scheme := strings.TrimRight(p, " ")
	if len(scheme) == len(p) {
		if !hasPrefixFold(value, p) {
			return "", false
		}
		return strings.Trim(value[len(p):], " \t"), true
	}
	if !hasPrefixFold(value, scheme) || len(value) == len(scheme) || value[len(scheme)] != ' ' && value[len(scheme)] != '\t' {
		return "", false
	}
	return strings.Trim(value[len(scheme):], " \t"), true
}

// canonName is the canonical form of a configured parameter or cookie name.
func canonName(s string) string {
	b := httpreq.AppendInclusive(nil, s)
	return string(b)
}

// needsWork reports whether a raw name may differ from its canonical form.
func needsWork(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c == '+' || c == '.' || c == '[' || c == ']' || c == 0 || c == ' ' || 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// lookupName finds the location (among locs) a raw parameter or cookie name denotes.
// suspicious reports an invalid escape, a name that matches only after a second
// decoding, or one that names it only as the base of a structured name (`key[]`,
// `[key]`, `key%00x`: httpreq.StructuredBase).
func (e *Engine) lookupName(x *Extracted, raw string, locs []int32) (loc int32, suspicious bool) {
	ex := e.ex
	if len(raw) > 3*ex.maxName+8 {
		// Cannot decode to any configured name; the base of a structured name
		// lies within the first 3*maxName+8 bytes if it is one.
		dec, _ := httpreq.DecodeLenient(x.nameBuf[:0], raw[:3*ex.maxName+8])
		x.nameBuf = dec
		if base, ok := httpreq.StructuredBase(string(dec)); ok && len(base) < len(dec) {
			if l := ex.find(locs, canonName(base)); l >= 0 {
				return l, true
			}
		}
		return -1, false
	}
	name := raw
	if needsWork(raw) {
		var dec []byte
		dec, suspicious = httpreq.DecodeLenient(x.nameBuf[:0], raw)
		n := len(dec)
		if bytes.ContainsAny(dec, "[]\x00") {
			if base, ok := httpreq.StructuredBase(string(dec)); ok {
				if l := ex.find(locs, canonName(base)); l >= 0 {
					x.nameBuf = dec
					return l, true
				}
			}
		}
		dec = httpreq.AppendInclusive(dec, string(dec)) // canonical form appended after the decoded bytes
		name = string(dec[n:])
		x.nameBuf = dec
		if strings.IndexByte(name, '%') >= 0 {
			dec2, _ := httpreq.DecodeLenient(nil, name)
			if l := ex.find(locs, string(httpreq.AppendInclusive(nil, string(dec2)))); l >= 0 {
				return l, true
			}
		}
	}
	return ex.find(locs, name), suspicious
}

func (ex *extractor) find(locs []int32, canon string) int32 {
	for _, l := range locs {
		if ex.locs[l].name == canon {
			return l
		}
	}
	return -1
}

// readQuery finds credential parameters in the query of x.Path (starting at q).
func (e *Engine) readQuery(x *Extracted, q int) {
	ex := e.ex
	path := x.Path
	for q <= len(path) {
		end := strings.IndexByte(path[q:], '&')
		if end < 0 {
			end = len(path)
		} else {
			end += q
		}
		pair := path[q:end]
		if pair != "" {
			rawName, rawValue, _ := strings.Cut(pair, "=")
			if strings.IndexByte(pair, ';') >= 0 {
				// Read with ';' as a separator too: any piece naming a credential makes
				// the pair ambiguous.
				for piece := range strings.SplitSeq(pair, ";") {
					n, _, _ := strings.Cut(piece, "=")
					if l, _ := e.lookupName(x, n, ex.params); l >= 0 {
						x.count(l, ex.locs[l].name)
						x.ambiguity("query parameter " + ex.locs[l].name + " in a pair holding ';'")
						x.found = append(x.found, found{loc: l, start: int32(q), end: int32(end)})
					}
				}
			} else if l, suspicious := e.lookupName(x, rawName, ex.params); l >= 0 {
				x.count(l, ex.locs[l].name)
				f := found{loc: l, start: int32(q), end: int32(end), value: rawValue}
				if suspicious {
					x.ambiguity("query parameter " + ex.locs[l].name + " with an invalid or double escape in its name")
				} else if strings.ContainsAny(rawValue, "%+") {
					v, err := url.QueryUnescape(rawValue)
					if err != nil {
						x.ambiguity("query parameter " + ex.locs[l].name + " with an invalid escape in its value")
					}
					f.value = v
				}
				x.found = append(x.found, f)
			}
		}
		q = end + 1
	}
}

// readCookies finds credential cookies in one Cookie line.
func (e *Engine) readCookies(x *Extracted, line int32, s string) {
	ex := e.ex
	start := 0
	for start <= len(s) {
		end := strings.IndexByte(s[start:], ';')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		crumb := strings.Trim(s[start:end], httpreq.CookieSpace)
		if crumb != "" {
			rawName, rawValue, _ := strings.Cut(crumb, "=")
			rawName = strings.TrimRight(rawName, httpreq.CookieSpace)
			if strings.IndexByte(crumb, ',') >= 0 {
				for i, piece := range strings.Split(crumb, ",") {
					if i == 0 && strings.IndexByte(rawName, ',') < 0 {
						continue // the crumb's own name, read below
					}
					n, _, _ := strings.Cut(strings.Trim(piece, httpreq.CookieSpace), "=")
					if l, _ := e.lookupName(x, strings.TrimRight(n, httpreq.CookieSpace), ex.cookies); l >= 0 {
						x.count(l, ex.locs[l].name)
						x.ambiguity("cookie " + ex.locs[l].name + " after ',' in a crumb")
						x.found = append(x.found, found{loc: l, line: line, start: int32(start), end: int32(end)})
					}
				}
			}
			if l, suspicious := e.lookupName(x, rawName, ex.cookies); l >= 0 {
				x.count(l, ex.locs[l].name)
				if suspicious {
					x.ambiguity("cookie " + ex.locs[l].name + " with an invalid or double escape in its name")
				}
				v := strings.Trim(rawValue, httpreq.CookieSpace)
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				x.found = append(x.found, found{loc: l, line: line, start: int32(start), end: int32(end), value: v})
			}
		}
		start = end + 1
	}
}

// strip computes what the upstream request loses on Allow: every credential
// occurrence not verified by a method that forwards it. It fills v.RemoveHeaders
// (aliasing x's scratch), v.NewPath and v.ExtraHeaders (a rewritten cookie header).
func (e *Engine) strip(v *Verdict, x *Extracted, rule *config.Rule) {
	x.remove = x.remove[:0]
	var params, cookies bool
	for i := range x.found {
		f := &x.found[i]
		if e.keeps(f, rule) {
			continue
		}
		switch e.ex.locs[f.loc].src {
		case srcHeader:
			dup := false
			for _, n := range x.remove {
				dup = dup || n == f.name
			}
			if !dup {
				x.remove = append(x.remove, f.name)
			}
		case srcParam:
			params = true
		case srcCookie:
			cookies = true
		}
	}
	if len(x.remove) > 0 {
		v.RemoveHeaders = x.remove
	}
	if params {
		v.NewPath = e.pathWithout(x, rule)
	}
	if cookies {
		var kept []string
		for li, line := range x.cookies {
			start := 0
			for start <= len(line) {
				end := strings.IndexByte(line[start:], ';')
				if end < 0 {
					end = len(line)
				} else {
					end += start
				}
				crumb := strings.Trim(line[start:end], httpreq.CookieSpace)
				if crumb != "" && !e.dropped(x, rule, srcCookie, int32(li), int32(start)) {
					kept = append(kept, crumb)
				}
				start = end + 1
			}
		}
		if len(kept) == 0 {
			x.remove = append(x.remove, "cookie")
			v.RemoveHeaders = x.remove
		} else {
			v.ExtraHeaders = append(v.ExtraHeaders, Header{"cookie", strings.Join(kept, "; ")})
		}
	}
}

// keeps reports whether an occurrence stays on the upstream request: it was verified
// by a method of the rule that forwards it.
func (e *Engine) keeps(f *found, rule *config.Rule) bool {
	if f.by < 0 || f.id == nil {
		return false
	}
	m := rule.Requires[f.by]
	if r := e.ex.locs[f.loc].readerFor(m); r != nil {
		return r.forward
	}
	return false
}

// dropped reports whether the occurrence at (line, start) of src is stripped.
func (e *Engine) dropped(x *Extracted, rule *config.Rule, src srcKind, line, start int32) bool {
	for i := range x.found {
		f := &x.found[i]
		if e.ex.locs[f.loc].src == src && f.line == line && f.start == start {
			return !e.keeps(f, rule)
		}
	}
	return false
}

// pathWithout rebuilds x.Path without the stripped parameters (and empty pairs).
func (e *Engine) pathWithout(x *Extracted, rule *config.Rule) string {
	q := strings.IndexByte(x.Path, '?')
	var b strings.Builder
	b.WriteString(x.Path[:q])
	sep := byte('?')
	start := q + 1
	for start <= len(x.Path) {
		end := strings.IndexByte(x.Path[start:], '&')
		if end < 0 {
			end = len(x.Path)
		} else {
			end += start
		}
		if end > start && !e.dropped(x, rule, srcParam, 0, int32(start)) {
			b.WriteByte(sep)
			b.WriteString(x.Path[start:end])
			sep = '&'
		}
		start = end + 1
	}
	return b.String()
}

// readerFor returns the reader of l for method m (nil if m does not read l).
func (l *location) readerFor(m config.Method) *reader {
	for i := range l.readers {
		r := &l.readers[i]
		if r.kind == m.Kind && (m.Kind != config.MethodJWT || r.prov == m.Provider) {
			return r
		}
	}
	return nil
}

package httpreq

import (
	"fmt"
	"strings"
)

// The path in one canonical form.
//
// A filter matches its path rules on CanonicalPath of the request's :path (without the
// query), never on the bytes it received: the mesh may or may not have normalized the
// path before the filter runs (Istio's default, pathNormalization BASE, applies Envoy's
// normalize_path only; slashes are not merged and %2F is kept), and the upstream reads
// the path its own way. The canonical form is the path as Envoy's strictest
// normalization would see it, so that every spelling an upstream serves as the same
// resource has the same canonical form:
//
//   - '\' is a separator, like '/', in the readings that Envoy's normalize_path gives
//     (Istio's default applies it before the filter; see AmbiguousBackslash for a
//     '\' that reaches the filter);
//   - percent-encoded unreserved characters (RFC 3986 §2.3: ALPHA, DIGIT, "-", ".",
//     "_", "~") are decoded, so `%61dmin` is `admin` and `%2e%2e` is a dot segment;
//   - other escapes are kept, with upper-case hex digits; bytes outside RFC 3986's
//     pchar (space, '"', '<', '{', non-ASCII, ...) are percent-encoded, as Envoy's
//     URL canonicalizer does, and so are '[' and ']', which it passes raw (Go's
//     net/http serves "/a[b" and "/a%5Bb" as one resource: one canonical form);
//   - dot segments are removed (RFC 3986 §5.2.4) and empty segments dropped (runs of
//     '/' merged: Envoy's merge_slashes, Go's net/http path cleaning); a trailing '/'
//     (also the one a final "." or ".." segment leaves) is kept.
//
// What still reads differently on common upstreams after that is reported as a
// PathAmbiguity, and the filter's configuration says what happens then (one policy per
// filter: see each filter's README):
//
//   - AmbiguousBackslash: a raw '\' (only seen without Envoy's normalize_path,
//     e.g. Istio's NONE): Envoy and IIS read a separator, Go's net/http and Tomcat
//     a character (so "/public\x" is under /public/ for one, not for the other).
//     The canonical form keeps it as %5C; the other reading has '/'.
//   - AmbiguousSlash: %2F or %5C. Upstreams that decode the path before routing (Go's
//     net/http ServeMux before Go 1.22, gorilla/mux, Express, Envoy with
//     UNESCAPE_AND_FORWARD) read a separator, others a character of the segment.
//   - AmbiguousParams: ';' under ParamsAmbiguous. Tomcat, Jetty and Spring drop a
//     segment's path parameters (";jsessionid=..." up to the next '/') before
//     routing, so `/admin;x/users` is `/admin/users` and `/public/..;/admin` is
//     `/admin` there; Go's net/http and most others read ';' as a character.
//   - Malformed: an invalid escape (`%zz`, a trailing `%`), %00 or another control
//     character (encoded or not), a space or '#', double encoding (`%25` followed by
//     two hex digits: decoders that decode twice read `%252F` as '/'), a `;` path
//     parameter followed by '\' before the next '/' (Tomcat drops the parameter up to
//     the '/', Envoy reads '\' as a separator first), a raw '\' in a path with a
//     ".." segment (Go's net/http reads '\' as a character, so "/x\y/../admin" is
//     "/admin" there), a path that
//     does not start with '/', a ".." segment in a path with an empty segment (Envoy's
//     normalize_path, which does not merge slashes first, may remove the empty
//     segment where Go's path.Clean removes the one before it), a final "." or ".." segment (RFC 3986 and
//     Envoy keep the trailing '/', Go's path.Clean drops it), and, under IgnoreCase, non-ASCII bytes (Unicode case
//     folding maps some of them onto ASCII letters: U+212A KELVIN SIGN folds to 'k').
//     No common upstream serves such a path as a different resource it would have
//     served otherwise (Go's net/http answers 400 to invalid escapes, Envoy 400 to
//     %00), so a filter that refuses ambiguity refuses these too.
//
// The common case, a path that is already canonical and unambiguous, is recognized
// by one scan without allocating.

// PathParams says how ';' in a path segment is read.
type PathParams uint8

// Readings of ';'.
const (
	// ParamsAmbiguous: both readings are possible (the path parameter dropped, as
	// Tomcat/Jetty/Spring do, and ';' as a character, as Go's net/http does);
	// the path is AmbiguousParams.
	ParamsAmbiguous PathParams = iota
	// ParamsStrip: the upstream drops path parameters (Tomcat-style): ';' up to the
	// next separator is removed from each segment before dot segments are resolved,
	// so `/public/..;/admin` is `/admin`.
	ParamsStrip
	// ParamsLiteral: the upstream reads ';' as an ordinary character (Go's net/http).
	ParamsLiteral
)

var pathParamsNames = [...]string{"ambiguous", "strip", "literal"}

func (p PathParams) String() string {
	if int(p) < len(pathParamsNames) {
		return pathParamsNames[p]
	}
	return fmt.Sprintf("PathParams(%d)", uint8(p))
}

// ParsePathParams reads the configuration spelling of a PathParams: "" (the default,
// ambiguous), "ambiguous", "strip" or "literal".
func ParsePathParams(s string) (PathParams, error) {
	if s == "" {
		return ParamsAmbiguous, nil
	}
	for i, n := range pathParamsNames {
		if s == n {
			return PathParams(i), nil
		}
	}
	return 0, fmt.Errorf("must be one of ambiguous, strip, literal; got %q", s)
}

// PathOptions are the upstream conventions a filter's configuration states.
type PathOptions struct {
	// Params is how ';' is read.
	Params PathParams
	// IgnoreCase: the upstream routes case-insensitively (IIS, ASP.NET, Spring with
	// case-insensitive matching): ASCII letters are lower-cased in the canonical form
	// (the rules' too), and non-ASCII bytes are Malformed.
	IgnoreCase bool
}

// PathAmbiguity is a set of reasons a path reads differently on common upstreams
// even in its canonical form.
type PathAmbiguity uint8

// Ambiguities.
const (
	// AmbiguousSlash: %2F or %5C (an encoded separator).
	AmbiguousSlash PathAmbiguity = 1 << iota
	// AmbiguousParams: ';' read under ParamsAmbiguous.
	AmbiguousParams
	// Malformed: invalid escapes, control characters, space, '#', double encoding,
	// no leading '/', non-ASCII under IgnoreCase.
	Malformed
	// AmbiguousBackslash: a raw '\\' after the first byte: a separator for Envoy's
	// normalize_path (so under Istio's default the filter seldom sees one) and IIS,
	// a character for Go's net/http and Tomcat.
	AmbiguousBackslash
)

func (a PathAmbiguity) String() string {
	if a == 0 {
		return "none"
	}
	s := ""
	for i, n := range [...]string{"escaped_slash", "path_params", "malformed", "backslash"} {
		if a&(1<<i) != 0 {
			if s != "" {
				s += "+"
			}
			s += n
		}
	}
	return s
}

// CanonicalPath returns the canonical form of raw (a :path without its query string)
// under o, and what stays ambiguous in it. The canonical form is the reading that
// keeps %2F/%5C encoded and, under ParamsAmbiguous, ';' as a character; the other
// readings of an ambiguous path are PathReadings'. An already canonical,
// unambiguous raw is returned as is, without allocating.
func CanonicalPath(raw string, o PathOptions) (string, PathAmbiguity) {
	if isCanonical(raw, o.IgnoreCase) {
		return raw, 0
	}
	c, amb := canonicalize(raw, o, 0)
	if amb&ambiguousReadings != 0 && amb&Malformed == 0 {
		// A reading can be Malformed where the canonical one is not ("/a%2F." ends
		// in a dot segment once %2F is a separator).
		for r := reading(1); r < readingAll; r++ {
			if r.applies(amb) {
				_, a := canonicalize(raw, o, r)
				amb |= a & Malformed
			}
		}
	}
	return c, amb
}

// ambiguousReadings are the ambiguities that give a path several readings.
const ambiguousReadings = AmbiguousSlash | AmbiguousParams | AmbiguousBackslash

// reading is a set of choices for the ambiguous parts of a path: readSlash reads
// %2F/%5C as separators, readStrip drops ';' path parameters, readBackslash reads a
// raw '\' as a separator. 0 is the canonical reading.
type reading uint8

const (
	readSlash reading = 1 << iota
	readStrip
	readBackslash
	readingAll
)

// applies reports whether every choice of r concerns something raw has (amb).
func (r reading) applies(amb PathAmbiguity) bool {
	return (r&readSlash == 0 || amb&AmbiguousSlash != 0) &&
		(r&readStrip == 0 || amb&AmbiguousParams != 0) &&
		(r&readBackslash == 0 || amb&AmbiguousBackslash != 0)
}

// PathReadings appends to dst every reading of raw an upstream may act on (see
// PathAmbiguity): the canonical form first, then the readings with %2F and %5C as
// separators (AmbiguousSlash), with path parameters dropped (AmbiguousParams), with
// '\' as a separator (AmbiguousBackslash), and their combinations; duplicates are
// left out. It returns at most eight.
func PathReadings(dst []string, raw string, o PathOptions) ([]string, PathAmbiguity) {
	c, amb := CanonicalPath(raw, o)
	dst = append(dst, c)
	if amb&ambiguousReadings == 0 {
		return dst, amb
	}
	start := len(dst) - 1
	for r := reading(1); r < readingAll; r++ {
		if !r.applies(amb) {
			continue
		}
		p, _ := canonicalize(raw, o, r)
		dup := false
		for _, x := range dst[start:] {
			dup = dup || x == p
		}
		if !dup {
			dst = append(dst, p)
		}
	}
	return dst, amb
}

// CanonicalRulePath checks a path or prefix written in a filter's configuration: it
// must be in canonical form under o and unambiguous (a rule spelled otherwise would
// never match), except that under IgnoreCase it is lower-cased. It returns the form to
// compare canonical request paths with.
func CanonicalRulePath(s string, o PathOptions) (string, error) {
	o.Params = ParamsLiteral // ';' in a rule is a character; a request's ';' is the request's ambiguity
	c, amb := CanonicalPath(s, o)
	if amb != 0 {
		return "", fmt.Errorf("%q is ambiguous on common upstreams (%s)", s, amb)
	}
	o.IgnoreCase = false
	exact, _ := CanonicalPath(s, o)
	if exact != s {
		return "", fmt.Errorf("%q is not in canonical form (dot segments removed, slashes merged, unreserved characters decoded, other escapes in upper-case hex): write %q", s, exact)
	}
	return c, nil
}

// pchar marks the bytes RFC 3986 allows as is in a path segment, except ';' (read
// per PathParams) and '%' (escapes): unreserved, sub-delims and ':' '@'.
var pchar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,=:@" {
		t[c] = true
	}
	return t
}()

// Classes of a path's bytes for isCanonical.
const (
	byteBad   = iota // not canonical as is
	byteOK           // pchar
	byteSlash        // '/'
)

// canonicalByte classifies every byte for isCanonical; the second table is for
// IgnoreCase, where upper-case letters are not canonical.
var canonicalByte = func() (t [2][256]uint8) {
	for c := range 256 {
		switch {
		case c == '/':
			t[0][c], t[1][c] = byteSlash, byteSlash
		case pchar[c]:
			t[0][c] = byteOK
			if c < 'A' || c > 'Z' {
				t[1][c] = byteOK
			}
		}
	}
	return t
}()

// isCanonical reports whether raw is canonical and unambiguous: only pchar bytes
// and '/', a leading '/', no empty, "." or ".." segment except a final empty one, and
// under ignoreCase no upper-case letter. (One table load per byte: it runs on every
// request.)
func isCanonical(raw string, ignoreCase bool) bool {
	if len(raw) == 0 || raw[0] != '/' {
		return false
	}
	t := &canonicalByte[0]
	if ignoreCase {
		t = &canonicalByte[1]
	}
	seg := 1
	for i := 1; i < len(raw); i++ {
		switch t[raw[i]] {
		case byteOK:
			continue
		case byteSlash:
			if n := i - seg; n == 0 || (raw[i-1] == '.' && (n == 1 || (n == 2 && raw[i-2] == '.'))) {
				return false
			}
			seg = i + 1
			continue
		}
		return false
	}
	n := len(raw) - seg
	return !(n > 0 && raw[len(raw)-1] == '.' && (n == 1 || (n == 2 && raw[len(raw)-2] == '.')))
}

func isUnreserved(c byte) bool {
	return pchar[c] && (c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '_' || c == '~')
}

// canonicalize is the slow path: one reading of raw, with %2F/%5C as separators if
// slash, and path parameters dropped if strip, and the ambiguity seen in that reading
// (AmbiguousSlash and AmbiguousParams are the same in every reading, Malformed not).
func canonicalize(raw string, o PathOptions, r reading) (string, PathAmbiguity) {
	slash, strip, bsep := r&readSlash != 0, r&readStrip != 0 || o.Params == ParamsStrip, r&readBackslash != 0
	var amb PathAmbiguity
	b := make([]byte, 1, len(raw)+8)
	b[0] = '/'
	hexd := "0123456789ABCDEF"
	if o.IgnoreCase {
		hexd = "0123456789abcdef"
	}
	seg := 1         // start of the current segment in b
	inParam := false // dropping a path parameter
	emit := func(c byte) {
		if !inParam {
			if o.IgnoreCase && c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
	}
	emitEsc := func(v byte) {
		if !inParam {
			b = append(b, '%', hexd[v>>4], hexd[v&15])
		}
	}
	// end closes the current segment: dot segments resolved, empty ones dropped.
	// empty: an empty segment was dropped. With a ".." segment anywhere, Envoy's
	// normalize_path (which does not merge slashes first) and Go's path.Clean (which
	// does) may pop different segments: "/a//b/../../c" is "/a/c" for one, "/c" for
	// the other.
	empty := false
	// backslash: a raw '\' was read as a separator; dotDot: a ".." segment was
	// resolved. Together they are Malformed: Go's net/http reads '\' as a character,
	// so "/x\y/../admin" is "/admin" there and "/x/admin" here.
	backslash, dotDot := false, false
	end := func(final bool) {
		inParam = false
		s := b[seg:]
		switch {
		case len(s) == 0:
			empty = empty || !final
		case len(s) == 1 && s[0] == '.':
			b = b[:seg]
			if final {
				amb |= Malformed
			}
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			dotDot = true
			if final {
				amb |= Malformed
			}
			b = b[:seg]
			if seg > 1 {
				i := seg - 2
				for b[i] != '/' {
					i--
				}
				b = b[:i+1]
			}
		case final:
			return
		default:
			b = append(b, '/')
		}
		seg = len(b)
	}
	i := 0
	switch {
	case len(raw) == 0 || (raw[0] != '/' && raw[0] != '\\'):
		amb |= Malformed
	default:
		i = 1 // a leading '\\' is the root either way
	}
	for ; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '/':
			end(false)
		case c == '\\':
			// A separator for Envoy's normalize_path (which Istio's default applies
			// before the filter, so it is seldom seen here) and IIS, a character for
			// Go's net/http and Tomcat: read both ways, like %5C.
			backslash = true
			amb |= AmbiguousBackslash
			if bsep {
				end(false)
			} else {
				emitEsc(c)
			}
		case c == '%':
			var h, l byte
			ok := i+2 < len(raw)
			if ok {
				var ok1, ok2 bool
				h, ok1 = unhex(raw[i+1])
				l, ok2 = unhex(raw[i+2])
				ok = ok1 && ok2
			}
			if !ok {
				amb |= Malformed
				emitEsc('%')
				continue
			}
			v := h<<4 | l
			i += 2
			switch {
			case isUnreserved(v):
				emit(v)
			case v == '/' || v == '\\':
				amb |= AmbiguousSlash
				if slash {
					end(false)
				} else {
					emitEsc(v)
				}
			default:
				if v < 0x20 || v == 0x7f || (v >= 0x80 && o.IgnoreCase) {
					amb |= Malformed
				}
				emitEsc(v)
			}
		case c == ';':
			if o.Params != ParamsLiteral {
				// Tomcat-style upstreams drop the parameter up to the next '/', over a
				// '\' that Envoy and this reading take as a separator.
				if j := strings.IndexAny(raw[i:], `/\`); j >= 0 && raw[i+j] == '\\' {
					amb |= Malformed
				}
			}
			switch o.Params {
			case ParamsLiteral:
				emit(c)
			case ParamsAmbiguous:
				amb |= AmbiguousParams
				if !strip {
					emit(c)
					continue
				}
				fallthrough
			default:
				if !inParam {
					// The parameter is dropped, but what it holds is still checked:
					// a Malformed parameter is Malformed.
					inParam = true
				}
			}
		case pchar[c]:
			emit(c)
		default:
			if c <= 0x20 || c == 0x7f || c == '#' || (c >= 0x80 && o.IgnoreCase) {
				amb |= Malformed
			}
			emitEsc(c)
		}
	}
	end(true)
	if dotDot && (backslash || empty) {
		amb |= Malformed
	}
	// Double encoding, also when spelled across escapes ("%250%30" is "%2500").
	for j := 0; j+4 < len(b); j++ {
		if b[j] == '%' && b[j+1] == '2' && b[j+2] == '5' {
			_, ok1 := unhex(b[j+3])
			_, ok2 := unhex(b[j+4])
			if ok1 && ok2 {
				amb |= Malformed
			}
		}
	}
	return string(b), amb
}

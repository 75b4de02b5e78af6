// Package envoypath is the request path handling of Envoy's HTTP connection manager
// (HCM) under its path settings: what the filters see as `:path`, and whether the
// request is redirected or refused first. The local gateway runs it with the settings
// of the envoy.yaml meshplug renders; the filters' tests use Istio's presets
// (meshConfig.pathNormalization) to hand paths over as a mesh would.
//
// Envoy applies, in this order, before any filter (ConnectionManagerUtility::
// maybeNormalizePath): a path holding a raw space or control character never gets
// there (the HTTP codec refuses it); a path with a fragment (`#`) is refused; escaped slashes
// (`%2F`, `%2f`, `%5C`, `%5c`) are handled as path_with_escaped_slashes_action says;
// normalize_path canonicalizes the path as Chromium's URL library does (RFC 3986 dot
// segments, `%2e` as a dot, `\` as `/`, unreserved escapes decoded, characters that
// must not appear raw escaped, `%00` refused); merge_slashes merges runs of `/`.
// The query is never touched. A redirect (UNESCAPE_AND_REDIRECT) is decided by the
// escaped-slash step but sent only once the whole pipeline ran, to the final path, so
// `/%2Fevil.example/x` redirects to `/evil.example/x`, never to `//evil.example/x`.
//
// Canonicalization follows the Chromium snapshot Envoy forked for normalize_path
// (source/common/chromium_url, kept as Envoy's legacy path canonicalizer), which
// decodes escaped unreserved characters (`%61` → `a`). Envoy builds that run
// googleurl from 2024 on with the runtime flag
// envoy.reloadable_features.remove_forked_chromium_url keep those escapes as they
// are; decoding them is the safer side for filters that match paths, because the
// upstream decodes them too.
package envoypath

import "strings"

// EscapedSlashes is the HCM's path_with_escaped_slashes_action.
type EscapedSlashes int

// The values of path_with_escaped_slashes_action.
const (
	KeepUnchanged EscapedSlashes = iota
	RejectRequest
	UnescapeAndRedirect
	UnescapeAndForward
)

// Options are the HCM's path settings.
type Options struct {
	NormalizePath  bool           // normalize_path
	MergeSlashes   bool           // merge_slashes
	EscapedSlashes EscapedSlashes // path_with_escaped_slashes_action
}

// Istio's meshConfig.pathNormalization presets (Istio's security/normalization
// reference): the HCM settings istiod writes for each.
var (
	IstioNone                  = Options{}
	IstioBase                  = Options{NormalizePath: true} // Istio's default
	IstioMergeSlashes          = Options{NormalizePath: true, MergeSlashes: true}
	IstioDecodeAndMergeSlashes = Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: UnescapeAndForward}
)

// Action is what the HCM does with the request after normalization.
type Action int

// The actions.
const (
	// Continue: the filters see the returned path.
	Continue Action = iota
	// Redirect: answer 307 with `location` set to the returned path (query kept).
	Redirect
	// Reject: answer 400 (Envoy's details: path_normalization_failed).
	Reject
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Redirect:
		return "redirect"
	default:
		return "reject"
	}
}

// Normalize applies o to a request `:path` (path and query, origin form) and says
// what to do with the request. The returned path is the final one in every case
// (for Redirect: the location).
func Normalize(path string, o Options) (string, Action) {
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f {
			// Envoy's HTTP/1 codec refuses the request line, its HTTP/2 codec the header.
			return path, Reject
		}
	}
	if strings.IndexByte(path, '#') >= 0 {
		// Envoy refuses a fragment (envoy.reloadable_features.http_reject_path_with_fragment).
		return path, Reject
	}
	action := Continue
	if o.EscapedSlashes != KeepUnchanged {
		if p, found := UnescapeSlashes(path); found {
			switch o.EscapedSlashes {
			case RejectRequest:
				return path, Reject
			case UnescapeAndRedirect:
				action = Redirect
			}
			path = p
		}
	}
	if o.NormalizePath {
		p, ok := Canonicalize(path)
		if !ok {
			return path, Reject
		}
		path = p
	}
	if o.MergeSlashes {
		path = MergeSlashes(path)
	}
	return path, action
}

// UnescapeSlashes replaces `%2F`/`%2f` by `/` and `%5C`/`%5c` by `\` in the path part
// (query kept) and says whether it found any (Envoy's PathUtil::unescapeSlashes).
func UnescapeSlashes(target string) (string, bool) {
	p, q := split(target)
	if strings.IndexByte(p, '%') < 0 {
		return target, false
	}
	u := p
	for _, e := range [...][2]string{{"%2F", "/"}, {"%2f", "/"}, {"%5C", `\`}, {"%5c", `\`}} {
		u = strings.ReplaceAll(u, e[0], e[1])
	}
	return u + q, len(u) != len(p)
}

// MergeSlashes merges runs of `/` in the path part (query kept), keeping one leading
// and one trailing slash as the path had them (Envoy's PathTransformer::mergeSlashes,
// including its quirk that a path of slashes only becomes `//`).
func MergeSlashes(target string) string {
	p, q := split(target)
	if !strings.Contains(p, "//") {
		return target
	}
	var b strings.Builder
	b.Grow(len(target))
	if strings.HasPrefix(p, "/") {
		b.WriteByte('/')
	}
	first := true
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" {
			continue
		}
		if !first {
			b.WriteByte('/')
		}
		first = false
		b.WriteString(seg)
	}
	if strings.HasSuffix(p, "/") {
		b.WriteByte('/')
	}
	b.WriteString(q)
	return b.String()
}

// split cuts a target at the first `?`: the path, and the query with its `?` ("" if
// none).
func split(target string) (string, string) {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i], target[i:]
	}
	return target, ""
}

// Canonicalize is normalize_path (Envoy's PathUtil::canonicalPath): the path part is
// canonicalized as Chromium's url::CanonicalizePath did in the snapshot Envoy forked,
// the query is kept as it is. It fails (Envoy answers 400) on an escaped NUL.
func Canonicalize(target string) (string, bool) {
	p, q := split(target)
	c, ok := canonicalPath(p)
	if !ok {
		return target, false
	}
	return c + q, true
}

// Character classes of the path canonicalizer (Chromium's kPathCharLookup as in the
// snapshot Envoy forked).
const (
	pass     = 0
	special  = 1 // needs handling below
	escape   = 2 | special
	unescape = 4 // an escape of it is decoded
	invalid  = 8 | special
)

var pathChars = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch {
		case c == 0:
			t[c] = invalid
		case c < 0x20, c >= 0x7f:
			t[c] = escape
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '~':
			t[c] = unescape
		}
	}
	for _, c := range " \"#%<>?\\^`{|}" {
		t[c] = escape
	}
	t['.'] = special
	t['\\'] = special
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// decodeEscaped reads a %XX escape at s[i]: its value and whether it is one.
func decodeEscaped(s string, i int) (byte, bool) {
	if i+3 > len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
		return 0, false
	}
	return unhex(s[i+1])<<4 | unhex(s[i+2]), true
}

// dotLen is the length of a dot at s[i]: 1 for `.`, 3 for `%2e`/`%2E`, else 0.
func dotLen(s string, i int) int {
	if s[i] == '.' {
		return 1
	}
	if s[i] == '%' && i+3 <= len(s) && s[i+1] == '2' && (s[i+2] == 'e' || s[i+2] == 'E') {
		return 3
	}
	return 0
}

func isSlash(c byte) bool { return c == '/' || c == '\\' }

const upperHex = "0123456789ABCDEF"

// canonicalPath is the path part of Canonicalize.
func canonicalPath(p string) (string, bool) {
	if p == "" {
		return "/", true
	}
	out := make([]byte, 0, len(p)+8)
	if !isSlash(p[0]) {
		out = append(out, '/')
	}
	ok := true
	lastBadPercent := -1 // index in out of a '%' that began no valid escape
	for i := 0; i < len(p); i++ {
		c := p[i]
		flags := pathChars[c]
		if flags&special == 0 {
			out = append(out, c)
			continue
		}
		if n := dotLen(p, i); n > 0 {
			if len(out) > 0 && out[len(out)-1] == '/' {
				switch consumed, kind := afterDot(p, i+n); kind {
				case notDir:
					out = append(out, '.')
					i += n - 1
				case curDir:
					i += n + consumed - 1
				case upDir:
					out = backUp(out)
					i += n + consumed - 1
				}
			} else {
				out = append(out, '.')
				i += n - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			v, valid := decodeEscaped(p, i)
			if !valid {
				// Passed through (the permissive choice); remembered in case what
				// follows unescapes into a valid escape after it.
				lastBadPercent = len(out)
				out = append(out, '%')
				continue
			}
			i += 2
			vf := pathChars[v]
			if vf&unescape != 0 {
				out = append(out, v)
				if lastBadPercent >= 0 && lastBadPercent >= len(out)-3 {
					out = nestedEscapes(p, i+1, lastBadPercent, out)
				}
				continue
			}
			// Kept escaped exactly as written (hex case included).
			out = append(out, '%', p[i-1], p[i])
			if vf&invalid == invalid {
				ok = false
			}
		case flags&invalid == invalid:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			ok = false
		case flags&escape == escape:
			out = append(out, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return string(out), ok
}

type dotKind int

const (
	notDir dotKind = iota
	curDir
	upDir
)

// afterDot classifies what follows a dot that came after a slash, and how many
// input bytes after the dot belong to it.
func afterDot(p string, i int) (int, dotKind) {
	if i == len(p) {
		return 0, curDir
	}
	if isSlash(p[i]) {
		return 1, curDir
	}
	if n := dotLen(p, i); n > 0 {
		j := i + n
		if j == len(p) {
			return n, upDir
		}
		if isSlash(p[j]) {
			return n + 1, upDir
		}
	}
	return 0, notDir
}

// backUp removes the last segment of out, which ends with a slash; never the first
// slash.
func backUp(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for out[i] != '/' && i > 0 {
		i--
	}
	return out[:i+1]
}

// nestedEscapes keeps an invalid '%' followed by characters just unescaped from
// turning into a valid escape in the output (`%%30%30` must not become `%00` for the
// next decoder): that '%' becomes `%25` (Chromium's CheckForNestedEscapes).
func nestedEscapes(p string, next, bad int, out []byte) []byte {
	length := len(out)
	last := out[length-1]
	appendNext := bad == length-2
	if appendNext {
		if next == len(p) || p[next] >= 0x80 {
			return out
		}
		out = append(out, p[next])
	}
	if _, valid := decodeEscaped(string(out[bad:]), 0); valid {
		if !appendNext {
			out = append(out, out[bad+1])
		}
		out[bad+1], out[bad+2] = '2', '5'
		return append(out, last)
	}
	if appendNext {
		out = out[:length]
	}
	return out
}

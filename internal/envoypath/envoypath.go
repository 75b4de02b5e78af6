// Package envoypath models how Envoy's HTTP connection manager hands a request path
// to its filters under each path normalization setting: path_with_escaped_slashes_action,
// normalize_path and merge_slashes, applied in that order (Envoy's
// ConnectionManagerUtility::maybeNormalizePath), and Istio's meshConfig
// pathNormalization presets built from them. Tests use it to hand paths to the
// filters as a given mesh would, and to check the filters' own canonical form
// against Envoy's options (differential tests).
//
// normalize_path is Envoy's PathUtil::canonicalPath (a snapshot of Chromium's URL path
// canonicalizer): '\' becomes '/', percent-encoded unreserved characters are decoded
// (so %2e is a dot), other escapes keep their character with upper-case hex digits,
// bytes outside the path grammar are percent-encoded, dot segments are removed
// (RFC 3986 §5.2.4); an encoded NUL makes canonicalization fail (400). Slashes are not
// merged by normalize_path. Raw control characters and spaces never reach it (the
// HTTP codec refuses them with 400), which the model reports as Reject too.
package envoypath

import "strings"

// EscapedSlashes is the HCM's path_with_escaped_slashes_action for %2F, %2f, %5C, %5c.
type EscapedSlashes uint8

// Actions.
const (
	KeepUnchanged EscapedSlashes = iota
	RejectRequest
	UnescapeAndRedirect
	UnescapeAndForward
)

// Options are the HCM's path settings.
type Options struct {
	EscapedSlashes EscapedSlashes
	NormalizePath  bool
	MergeSlashes   bool
}

// Istio's meshConfig.pathNormalization presets.
var (
	IstioNone                  = Options{}
	IstioBase                  = Options{NormalizePath: true} // Istio's default
	IstioMergeSlashes          = Options{NormalizePath: true, MergeSlashes: true}
	IstioDecodeAndMergeSlashes = Options{EscapedSlashes: UnescapeAndForward, NormalizePath: true, MergeSlashes: true}
	// Rendered is what meshplug's envoy.yaml sets (envoyfilters.EnvoyBootstrap).
	Rendered = Options{EscapedSlashes: UnescapeAndRedirect, NormalizePath: true, MergeSlashes: true}
)

// Outcome is what the HCM does with the request.
type Outcome uint8

// Outcomes.
const (
	Forward  Outcome = iota // the filters see Result.Path
	Reject                  // 400, no filter runs
	Redirect                // redirect to Result.Path, no filter runs
)

// Result is the path the filters see (Forward) or the redirect target.
type Result struct {
	Outcome Outcome
	Path    string // with the query, which is never changed
}

// Normalize applies o to a :path (query included) as Envoy does.
func Normalize(target string, o Options) Result {
	p, q, hasQ := strings.Cut(target, "?")
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= 0x20 || c == 0x7f {
			return Result{Outcome: Reject}
		}
	}
	join := func(p string) string {
		if hasQ {
			return p + "?" + q
		}
		return p
	}
	redirect := false
	if o.EscapedSlashes != KeepUnchanged && hasEscapedSlash(p) {
		switch o.EscapedSlashes {
		case RejectRequest:
			return Result{Outcome: Reject}
		case UnescapeAndRedirect:
			redirect = true
		}
		r := strings.NewReplacer("%2F", "/", "%2f", "/", "%5C", `\`, "%5c", `\`)
		p = r.Replace(p)
	}
	if o.NormalizePath {
		var ok bool
		if p, ok = canonicalPath(p); !ok {
			return Result{Outcome: Reject}
		}
	}
	if o.MergeSlashes {
		for strings.Contains(p, "//") {
			p = strings.ReplaceAll(p, "//", "/")
		}
	}
	if redirect {
		return Result{Outcome: Redirect, Path: join(p)}
	}
	return Result{Outcome: Forward, Path: join(p)}
}

func hasEscapedSlash(p string) bool {
	for i := 0; i+2 < len(p); i++ {
		if p[i] == '%' && ((p[i+1] == '2' && (p[i+2] == 'f' || p[i+2] == 'F')) || (p[i+1] == '5' && (p[i+2] == 'c' || p[i+2] == 'C'))) {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// passes reports whether a byte stays as is in a canonical path (the rest is
// percent-encoded): RFC 3986 pchar and '/', plus the characters Chromium's path
// canonicalizer leaves alone although RFC 3986 does not list them.
func passes(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// canonicalPath is normalize_path on the path without query; false is a 400.
func canonicalPath(p string) (string, bool) {
	const hexd = "0123456789ABCDEF"
	var segs []string
	var cur strings.Builder
	flush := func(final bool) {
		s := cur.String()
		cur.Reset()
		switch s {
		case ".":
			if final {
				segs = append(segs, "")
			}
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			if final {
				segs = append(segs, "")
			}
		default:
			segs = append(segs, s)
		}
	}
	i := 0
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) {
		i = 1
	}
	for ; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/' || c == '\\':
			flush(false)
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			v := hexVal(p[i+1])<<4 | hexVal(p[i+2])
			i += 2
			switch {
			case v == 0:
				return "", false
			case unreserved(v):
				cur.WriteByte(v)
			default:
				cur.WriteByte('%')
				cur.WriteByte(hexd[v>>4])
				cur.WriteByte(hexd[v&15])
			}
		case c == '%':
			cur.WriteByte('%') // an invalid escape is copied
		case passes(c):
			cur.WriteByte(c)
		default:
			cur.WriteByte('%')
			cur.WriteByte(hexd[c>>4])
			cur.WriteByte(hexd[c&15])
		}
	}
	flush(true)
	return "/" + strings.Join(segs, "/"), true
}

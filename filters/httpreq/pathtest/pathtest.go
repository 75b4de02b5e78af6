// Package pathtest generates the spellings of a path that common upstreams serve as
// that path, and models how those upstreams read a request target, for the filters'
// path tests (natively and through their compiled .wasm).
package pathtest

import (
	"net/url"
	"path"
	"strings"

	"github.com/meshplug/meshplug/internal/envoypath"
)

// GoServes is the path Go's net/http serves for a request target: url.ParseRequestURI,
// then the ServeMux's cleaning of the decoded path (gorilla/mux and Go before 1.22
// route on it; newer ServeMux redirects to it). false: Go answers 400.
func GoServes(target string) (string, bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return "", false
	}
	p := u.Path
	if p == "" || p[0] != '/' {
		return "", false
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np, true
}

// TomcatServes is the path a Tomcat-style upstream serves: path parameters dropped
// from each segment, then the rest decoded, dot segments resolved and slashes merged;
// %2F refused (ALLOW_ENCODED_SLASH false), ".." above the root refused. false: 400.
func TomcatServes(target string) (string, bool) {
	target, _, _ = strings.Cut(target, "?")
	segs := strings.Split(target, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	p := strings.Join(segs, "/")
	if strings.Contains(strings.ToLower(p), "%2f") {
		return "", false
	}
	d, err := url.PathUnescape(p)
	if err != nil || !strings.HasPrefix(d, "/") {
		return "", false
	}
	var out []string
	for _, s := range strings.Split(d[1:], "/") {
		switch s {
		case "", ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, s)
		}
	}
	r := "/" + strings.Join(out, "/")
	if (strings.HasSuffix(d, "/") || strings.HasSuffix(d, "/.") || strings.HasSuffix(d, "/..")) && r != "/" {
		r += "/"
	}
	return r, true
}

// DecodingServes is the path an upstream that decodes %2F and %5C before routing and
// treats '\' as '/' serves (Envoy with DECODE_AND_MERGE_SLASHES in front of anything).
func DecodingServes(target string) (string, bool) {
	r, action := envoypath.Normalize(target, envoypath.IstioDecodeAndMergeSlashes)
	if action != envoypath.Continue {
		return "", false
	}
	p, _, _ := strings.Cut(r, "?")
	d, err := url.PathUnescape(p)
	if err != nil {
		return "", false
	}
	return strings.ReplaceAll(d, `\`, "/"), true
}

// Upstream reads a request target: the path it serves, false for a 400.
type Upstream func(target string) (string, bool)

// Upstreams are the readings ServedAs checks by default.
var Upstreams = []Upstream{GoServes, TomcatServes, DecodingServes}

// ServedAs reports whether one of the upstreams (Upstreams if none is given) serves
// raw as want (case-sensitively, or ASCII case-insensitively if fold).
func ServedAs(raw, want string, fold bool, upstreams ...Upstream) bool {
	if len(upstreams) == 0 {
		upstreams = Upstreams
	}
	for _, f := range upstreams {
		if got, ok := f(raw); ok && (got == want || fold && strings.EqualFold(got, want)) {
			return true
		}
	}
	return false
}

// Spellings returns spellings of target, a canonical path "/first/rest..." of at least
// two segments: every combination of a way to reach the first segment (from the root,
// through other segments and dot segments, encoded or not), a spelling of the first
// segment (its first letter percent-encoded, upper-cased) and a separator between it
// and the rest (merged, encoded, backslash, path parameters, dot segments). Not every
// one is served as target by every upstream: filter them with ServedAs.
func Spellings(target string) []string {
	first, rest, _ := strings.Cut(target[1:], "/")
	enc := "%" + strings.ToUpper(hex2(first[0])) + first[1:]
	encLower := "%" + hex2(first[0]) + first[1:]
	upper := strings.ToUpper(first)
	leads := []string{"/", "//", "///", `\`, "/./", "/%2e/", "/public/../", "/public/..%2F", "/public/..%5c",
		"/public/..;/", "/public/%2e%2e/", "/public/.%2E/", `/public\..\`, "/public/%2e%2e%2f", "/public;x/../",
		"/x/y/../../", "/public/x/..%2F..%2F"}
	names := []string{first, enc, encLower, upper, first + ";x", first + ";jsessionid=1"}
	seps := []string{"/", "//", `\`, "%2F", "%2f", "%5C", "%5c", ";x/", "/./", "/x/../", "/x/..%2F", "/x/..;/", "/%2e/", "/%2E%2e/x/../"}
	var out []string
	for _, l := range leads {
		for _, n := range names {
			for _, s := range seps {
				out = append(out, l+n+s+rest)
			}
		}
	}
	return out
}

func hex2(c byte) string {
	const h = "0123456789abcdef"
	return string([]byte{h[c>>4], h[c&15]})
}

package envoypath_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/envoypath"
)

// edge is the HCM path setting of the envoy.yaml meshplug renders.
var edge = envoypath.Options{NormalizePath: true, MergeSlashes: true, EscapedSlashes: envoypath.UnescapeAndRedirect}

// Envoy's own expectations for PathUtil::canonicalPath and mergeSlashes
// (test/common/http/path_utility_test.cc), plus the unreserved-escape decoding of
// the forked canonicalizer.
func TestCanonicalizeEnvoyCases(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/xyz", "/xyz"},
		{"/x/y/z", "/x/y/z"},
		{"/a/b/../c", "/a/c"},
		{"/a/b/./c", "/a/b/c"},
		{"a/b/../c", "/a/c"},
		{"/a/b/../../../../c", "/c"},
		{`/a/..\c`, "/c"},
		{"/%c0%af", "/%c0%af"},
		{"/%5c%25", "/%5c%25"},
		{"/a/b/%2E%2E/c", "/a/c"},
		{"/a/b/%2E./c", "/a/c"},
		{"/a/b/%2E/c", "/a/b/c"},
		{"..", "/"},
		{"/../a/b", "/a/b"},
		{"/./a/b", "/a/b"},
		{"/A/B/C", "/A/B/C"},
		{"/a/b/%2e%2e/c", "/a/c"},
		{"/a/%2F%2f/c", "/a/%2F%2f/c"},
		{"", "/"},
		// Unreserved escapes decoded, reserved ones kept as written.
		{"/%61dmin", "/admin"},
		{"/adm%69n/secret", "/admin/secret"},
		{"/%7e%2D%5f%30", "/~-_0"},
		{"/a%3Bb%3ac", "/a%3Bb%3ac"},
		{"/a%2eb", "/a.b"},
		// Characters that must not appear raw are escaped, upper-case hex.
		{"/x{y}", "/x%7By%7D"},
		{"/a b\"c<d>e^f`g|h", "/a%20b%22c%3Cd%3Ee%5Ef%60g%7Ch"},
		{"/caf\xc3\xa9", "/caf%C3%A9"},
		{"/\x7f", "/%7F"},
		// Kept as they are.
		{"/a!$&'()*+,;=:@[]", "/a!$&'()*+,;=:@[]"},
		// An invalid escape passes through; a nested one cannot become valid.
		{"/%zz", "/%zz"},
		{"/%", "/%"},
		{"/%%30%30", "/%2500"},
		{"/%%32%65", "/%252e"},
		{"/%%3", "/%%3"},
		// Dots.
		{"/a/.../b", "/a/.../b"},
		{"/a/..b/c", "/a/..b/c"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/public/%2e%2e/admin", "/admin"},
		{"/public/.%2E/admin", "/admin"},
		{`/public\..\admin`, "/admin"},
		{`\a`, "/a"},
		{"//a/../b", "//b"},
		// The query is not touched.
		{"/a/../b?x=/../%61&y=\\", "/b?x=/../%61&y=\\"},
	} {
		got, ok := envoypath.Canonicalize(tc.in)
		assert.True(t, ok, tc.in)
		assert.Equal(t, tc.want, got, "canonicalize %q", tc.in)
	}
	for _, bad := range []string{"/xyz/.%00../abc", "/xyz/%00.%00./abc", "/xyz/AAAAA%%0000/abc", "/a\x00b"} {
		_, ok := envoypath.Canonicalize(bad)
		assert.False(t, ok, "%q must fail", bad)
	}
}

func TestMergeSlashesEnvoyCases(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a//b/c", "a/b/c"},
		{"/a//b/c/", "/a/b/c/"},
		{"a//b/c/", "a/b/c/"},
		{"/a", "/a"},
		{"//a/b/c", "/a/b/c"},
		{"/a//b/c", "/a/b/c"},
		{"/a/b/c//", "/a/b/c/"},
		{"/a///b/c", "/a/b/c"},
		{"/a////b/c", "/a/b/c"},
		{"/a//b?a=///c", "/a/b?a=///c"},
		{"/a//b?", "/a/b?"},
		{"//a/?b", "/a/?b"},
		{"//", "//"},
	} {
		assert.Equal(t, tc.want, envoypath.MergeSlashes(tc.in), "merge %q", tc.in)
	}
}

// The whole HCM pipeline as rendered: every spelling of an /admin path reaches the
// filters as /admin (or is redirected there), and a redirect is computed from the
// finished path, never to another host.
func TestNormalizeEdge(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   string
		action envoypath.Action
	}{
		{"/admin", "/admin", envoypath.Continue},
		{"/%61dmin", "/admin", envoypath.Continue},
		{"/%61dmin/x{", "/admin/x%7B", envoypath.Continue},
		{"/ADMIN", "/ADMIN", envoypath.Continue},
		{"/public/%2e%2e/admin", "/admin", envoypath.Continue},
		{"/public/.%2E/admin", "/admin", envoypath.Continue},
		{`/public\..\admin`, "/admin", envoypath.Continue},
		{"//admin", "/admin", envoypath.Continue},
		{"/./admin", "/admin", envoypath.Continue},
		{"/public/..//admin", "/admin", envoypath.Continue},
		{"/a%2Fb", "/a/b", envoypath.Redirect},
		{"/public/..%2Fadmin", "/admin", envoypath.Redirect},
		{"/public/..%5Cadmin", "/admin", envoypath.Redirect},
		{"/public%2f%2e%2e%2fadmin?q=%2F", "/admin?q=%2F", envoypath.Redirect},
		{"/%2Fevil.example/x", "/evil.example/x", envoypath.Redirect},
		{"/%5Cevil.example/x", "/evil.example/x", envoypath.Redirect},
		{"/%2F%2Fevil.example", "/evil.example", envoypath.Redirect},
		{"/%5C%5Cevil.example", "/evil.example", envoypath.Redirect},
		{"/%2f/evil.example", "/evil.example", envoypath.Redirect},
		// Envoy's merge_slashes quirk: slashes only stay "//" (no host follows).
		{"/%2F", "//", envoypath.Redirect},
		{"///", "//", envoypath.Continue},
		{"/a?x=%2F", "/a?x=%2F", envoypath.Continue},
		{"/a#frag", "/a#frag", envoypath.Reject},
		{"/a/%00", "/a/%00", envoypath.Reject},
		{"/a/%2500", "/a/%2500", envoypath.Continue},
	} {
		got, action := envoypath.Normalize(tc.in, edge)
		assert.Equal(t, tc.action, action, "action for %q", tc.in)
		assert.Equal(t, tc.want, got, "path for %q", tc.in)
		if action == envoypath.Redirect {
			assert.False(t, len(got) > 2 && (strings.HasPrefix(got, "//") || strings.HasPrefix(got, `/\`)), "redirect %q to another host: %q", tc.in, got)
		}
	}
}

// A path that went through the pipeline is a fixed point of it (Envoy would not
// change it again) and Go's url parser, which upstream net/http servers use, reads
// the path the filters matched: the dot segments and unreserved escapes are gone, so
// the upstream cannot route it anywhere else.
func TestNormalizeClasses(t *testing.T) {
	segs := []string{"", ".", "..", "%2e", "%2E%2e", ".%2e", "a", "%61", "b%2Fc", "%5c", `\`, "%25", "%%", "%2", "x{", "~", "%7E", "%41%42", "%2f..", "..%5c"}
	var paths []string
	for _, a := range segs {
		for _, b := range segs {
			for _, c := range segs {
				paths = append(paths, "/"+a+"/"+b+"/"+c, "/"+a+b+"/"+c, "/"+a+"/"+b+c+"/")
			}
		}
	}
	require.Greater(t, len(paths), 20000)
	for _, p := range paths {
		got, action := envoypath.Normalize(p, edge)
		if action == envoypath.Reject {
			continue
		}
		again, action2 := envoypath.Normalize(got, edge)
		if !assert.Equal(t, envoypath.Continue, action2, "second pass of %q (%q)", p, got) ||
			!assert.Equal(t, got, again, "not a fixed point: %q -> %q -> %q", p, got, again) {
			return
		}
		// Envoy's merge_slashes leaves a path of slashes only as "//".
		if !assert.True(t, got == "//" || strings.HasPrefix(got, "/") && !strings.Contains(got, "//") && !strings.Contains(got, `\`), "%q -> %q", p, got) {
			return
		}
		u, err := url.ParseRequestURI(got)
		if err != nil {
			continue // an upstream net/http answers 400
		}
		for seg := range strings.SplitSeq(u.Path, "/") {
			if !assert.NotContains(t, []string{".", ".."}, seg, "%q -> %q: upstream sees %q", p, got, u.Path) {
				return
			}
		}
	}
}

func TestNormalizeOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      envoypath.Options
		in     string
		want   string
		action envoypath.Action
	}{
		{"nothing", envoypath.Options{}, "/a/../%2F//b", "/a/../%2F//b", envoypath.Continue},
		{"reject escaped slashes", envoypath.Options{EscapedSlashes: envoypath.RejectRequest}, "/a%2fb", "/a%2fb", envoypath.Reject},
		{"forward escaped slashes", envoypath.Options{EscapedSlashes: envoypath.UnescapeAndForward}, "/a%2fb", "/a/b", envoypath.Continue},
		{"normalize only", envoypath.Options{NormalizePath: true}, "/a/..//b", "//b", envoypath.Continue},
		{"merge only", envoypath.Options{MergeSlashes: true}, "/a/..//b", "/a/../b", envoypath.Continue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, action := envoypath.Normalize(tc.in, tc.o)
			assert.Equal(t, tc.action, action)
			assert.Equal(t, tc.want, got)
		})
	}
}

// The examples of Istio's path normalization reference (security/normalization) and
// of Envoy's HCM field docs, per preset (the path is checked unless the request is
// refused).
func TestIstioPresets(t *testing.T) {
	for _, c := range []struct {
		name, in string
		o        envoypath.Options
		want     string
		action   envoypath.Action
	}{
		{"none keeps everything", "/a/../b//%2Fc", envoypath.IstioNone, "/a/../b//%2Fc", envoypath.Continue},
		{"base dot segments", "/a/../b", envoypath.IstioBase, "/b", envoypath.Continue},
		{"base backslash", `\da`, envoypath.IstioBase, "/da", envoypath.Continue},
		{"base keeps double slash", "//admin//x", envoypath.IstioBase, "//admin//x", envoypath.Continue},
		// Legacy normalize_path keeps the case of the escapes it keeps (Envoy's header
		// validator calls this preserve_url_encoded_case, "compatibility with legacy path
		// normalization").
		{"base keeps escaped slash", "/a%2fb", envoypath.IstioBase, "/a%2fb", envoypath.Continue},
		{"base decodes unreserved", "/%61%2D%2e%5f%7E%30", envoypath.IstioBase, "/a-._~0", envoypath.Continue},
		{"base encoded dot segment", "/a/%2e%2E/b", envoypath.IstioBase, "/b", envoypath.Continue},
		{"base keeps path params", "/a/..;/b", envoypath.IstioBase, "/a/..;/b", envoypath.Continue},
		{"base rejects %00", "/a%00", envoypath.IstioBase, "", envoypath.Reject},
		{"base keeps query", "/a/../b?x=/../%2F", envoypath.IstioBase, "/b?x=/../%2F", envoypath.Continue},
		{"base empty segment popped by dot-dot", "/a//../b", envoypath.IstioBase, "/a/b", envoypath.Continue},
		{"merge slashes", "/a//b", envoypath.IstioMergeSlashes, "/a/b", envoypath.Continue},
		{"decode and merge", "/a%2fb%5Cc", envoypath.IstioDecodeAndMergeSlashes, "/a/b/c", envoypath.Continue},
		{"decode before dot segments", "/public/..%2Fadmin", envoypath.IstioDecodeAndMergeSlashes, "/admin", envoypath.Continue},
		{"rendered redirects escaped slashes", "/a%2Fb/../c", edge, "/a/c", envoypath.Redirect},
		{"raw space rejected by the codec", "/a b", envoypath.IstioNone, "", envoypath.Reject},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, action := envoypath.Normalize(c.in, c.o)
			assert.Equal(t, c.action, action)
			if action != envoypath.Reject {
				assert.Equal(t, c.want, got)
			}
		})
	}
}

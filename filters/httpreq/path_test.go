package httpreq_test

import (
	"net/url"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/httpreq"
	"github.com/meshplug/meshplug/filters/httpreq/pathtest"
	"github.com/meshplug/meshplug/internal/envoypath"
)

const (
	slash  = httpreq.AmbiguousSlash
	params = httpreq.AmbiguousParams
	bad    = httpreq.Malformed
	bs     = httpreq.AmbiguousBackslash
)

// canonCases are classes of spellings, each with the canonical form and ambiguity
// under the default options (ParamsAmbiguous, case-sensitive).
var canonCases = []struct {
	class, raw, want string
	amb              httpreq.PathAmbiguity
}{
	{"canonical", "/admin/users", "/admin/users", 0},
	{"canonical root", "/", "/", 0},
	{"canonical trailing slash", "/admin/", "/admin/", 0},
	{"canonical sub-delims", "/a!$&'()*+,=:@~-_.b", "/a!$&'()*+,=:@~-_.b", 0},
	{"double slash leading", "//admin/users", "/admin/users", 0},
	{"triple slash", "///admin", "/admin", 0},
	{"slashes only", "//", "/", 0},
	{"slashes only, three", "///", "/", 0},
	{"slashes and dot only", "/.//", "/", 0},
	{"double slash inside", "/admin//users", "/admin/users", 0},
	{"double slash trailing", "/admin//", "/admin/", 0},
	{"dot segment", "/./admin", "/admin", 0},
	{"dot-dot segment", "/public/../admin", "/admin", 0},
	{"dot-dot above root", "/../../admin", "/admin", 0},
	{"leading dot-dot after slashes", "//../admin", "/admin", bad},
	{"trailing dot", "/admin/.", "/admin/", bad},
	{"trailing dot-dot", "/admin/x/..", "/admin/", bad},
	{"dot-dot after empty segment", "/public//../admin", "/admin", bad},
	{"dot-dot after empty and dot segments", "/public//./../admin", "/admin", bad},
	{"encoded dot lower", "/public/%2e%2e/admin", "/admin", 0},
	{"encoded dot mixed", "/public/.%2E/admin", "/admin", 0},
	{"encoded single dot", "/%2e/admin", "/admin", 0},
	{"encoded letter", "/%61dmin", "/admin", 0},
	{"encoded letters upper hex", "/adm%69%6E", "/admin", 0},
	{"encoded digit and tilde", "/v%31/%7Euser", "/v1/~user", 0},
	{"backslash", `\admin`, "/admin", 0},
	{"backslash dot-dot", `/public\..\admin`, "/public%5C..%5Cadmin", bs | bad},
	{"backslash segment then dot-dot", `/0\0/../admin`, "/admin", bs | bad},
	{"backslash inside", `/admin\x/./y`, "/admin%5Cx/y", bs},
	{"param over a backslash", `/;\0/admin`, "/;%5C0/admin", bs | params | bad},
	{"dots not segments", "/a..b/.c/..d", "/a..b/.c/..d", 0},
	{"reserved escape kept upper", "/a%3fb%3Bc", "/a%3Fb%3Bc", 0},
	{"encoded non-ASCII kept", "/caf%c3%a9", "/caf%C3%A9", 0},
	{"raw non-ASCII encoded", "/caf\xc3\xa9", "/caf%C3%A9", 0},
	{"raw brace encoded", "/a{b}", "/a%7Bb%7D", 0},
	{"raw brackets encoded", "/a[b]", "/a%5Bb%5D", 0},
	{"encoded brackets kept", "/a%5bb%5D", "/a%5Bb%5D", 0},
	{"percent escape kept", "/100%25", "/100%25", 0},
	{"escaped slash", "/admin%2Fusers", "/admin%2Fusers", slash},
	{"escaped slash lower", "/admin%2fusers", "/admin%2Fusers", slash},
	{"escaped backslash", "/admin%5Cusers", "/admin%5Cusers", slash},
	{"escaped slash dot-dot", "/public/..%2Fadmin", "/public/..%2Fadmin", slash},
	{"path parameter", "/admin;x/users", "/admin;x/users", params},
	{"path parameter dot-dot", "/public/..;/admin", "/public/..;/admin", params},
	{"jsessionid", "/app;jsessionid=1", "/app;jsessionid=1", params},
	{"nul escape", "/admin%00", "/admin%00", bad},
	{"control escape", "/admin%0a", "/admin%0A", bad},
	{"raw control", "/admin\x01", "/admin%01", bad},
	{"raw space", "/admin x", "/admin%20x", bad},
	{"fragment", "/admin#x", "/admin%23x", bad},
	{"invalid escape", "/admin%zz", "/admin%25zz", bad},
	{"truncated escape", "/admin%2", "/admin%252", bad},
	{"trailing percent", "/admin%", "/admin%25", bad},
	{"double encoded slash", "/admin%252Fusers", "/admin%252Fusers", bad},
	{"double encoded letter", "/%2561dmin", "/%2561dmin", bad},
	{"no leading slash", "admin", "/admin", bad},
	{"asterisk", "*", "/*", bad},
	{"empty", "", "/", bad},
	{"everything", `//public\..%2F.;x/%2e%2E/ADMIN%zz`, "/ADMIN%25zz", slash | params | bad | bs},
}

func TestCanonicalPathClasses(t *testing.T) {
	for _, c := range canonCases {
		t.Run(c.class, func(t *testing.T) {
			got, amb := httpreq.CanonicalPath(c.raw, httpreq.PathOptions{})
			assert.Equal(t, c.want, got)
			assert.Equal(t, c.amb, amb, "ambiguity %s", amb)
			again, amb2 := httpreq.CanonicalPath(got, httpreq.PathOptions{})
			if amb&bad == 0 {
				assert.Equal(t, got, again, "idempotent")
				// A raw '\' is kept as %5C: still ambiguous, as an escaped slash.
				assert.Equal(t, amb&^bs|amb&bs>>3, amb2, "same ambiguity on the canonical form")
			}
		})
	}
}

func TestCanonicalPathFastPathDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if p, amb := httpreq.CanonicalPath("/api/v1/users/42", httpreq.PathOptions{}); amb != 0 || p == "" {
			t.Fatal(p, amb)
		}
	})
	assert.Zero(t, allocs)
}

func TestPathReadings(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		o         httpreq.PathOptions
		want      []string
		amb       httpreq.PathAmbiguity
	}{
		{"unambiguous", "/a/./../admin", httpreq.PathOptions{}, []string{"/admin"}, 0},
		{"empty segment and dot-dot", "//a/../admin", httpreq.PathOptions{}, []string{"/admin"}, bad},
		{"escaped slash", "/admin%2Fusers", httpreq.PathOptions{}, []string{"/admin%2Fusers", "/admin/users"}, slash},
		{"escaped slash dot-dot", "/public/..%2Fadmin", httpreq.PathOptions{}, []string{"/public/..%2Fadmin", "/admin"}, slash},
		{"params", "/admin;x/users", httpreq.PathOptions{}, []string{"/admin;x/users", "/admin/users"}, params},
		{"params dot-dot", "/public/..;/admin", httpreq.PathOptions{}, []string{"/public/..;/admin", "/admin"}, params},
		{"params stripped", "/public/..;/admin", httpreq.PathOptions{Params: httpreq.ParamsStrip}, []string{"/admin"}, 0},
		{"params literal", "/public/..;/admin", httpreq.PathOptions{Params: httpreq.ParamsLiteral}, []string{"/public/..;/admin"}, 0},
		{"both: four readings", "/admin%2F..;/x", httpreq.PathOptions{},
			[]string{"/admin%2F..;/x", "/admin/..;/x", "/admin%2F../x", "/x"}, slash | params},
		{"ignore case", "/ADMIN/Users", httpreq.PathOptions{IgnoreCase: true}, []string{"/admin/users"}, 0},
		{"ignore case escapes", "/%41dmin%3f", httpreq.PathOptions{IgnoreCase: true}, []string{"/admin%3f"}, 0},
		{"ignore case non-ASCII", "/\xe2\x84\xaadmin", httpreq.PathOptions{IgnoreCase: true}, []string{"/%e2%84%aadmin"}, bad},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, amb := httpreq.PathReadings(nil, c.raw, c.o)
			assert.Equal(t, c.want, got)
			assert.Equal(t, c.amb, amb)
		})
	}
}

func TestCanonicalRulePath(t *testing.T) {
	for _, c := range []struct {
		in   string
		o    httpreq.PathOptions
		want string
		err  string
	}{
		{"/admin", httpreq.PathOptions{}, "/admin", ""},
		{"/admin/", httpreq.PathOptions{}, "/admin/", ""},
		{"/a;b", httpreq.PathOptions{}, "/a;b", ""},
		{"/Admin", httpreq.PathOptions{IgnoreCase: true}, "/admin", ""},
		{"/admin//x", httpreq.PathOptions{}, "", `write "/admin/x"`},
		{"/%61dmin", httpreq.PathOptions{}, "", `write "/admin"`},
		{"/a/../b", httpreq.PathOptions{}, "", `write "/b"`},
		{"/a%2Fb", httpreq.PathOptions{}, "", "ambiguous"},
		{"admin", httpreq.PathOptions{}, "", "ambiguous"},
	} {
		got, err := httpreq.CanonicalRulePath(c.in, c.o)
		if c.err != "" {
			require.Error(t, err, c.in)
			assert.Contains(t, err.Error(), c.err)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got)
	}
}

func TestParsePathParams(t *testing.T) {
	for s, want := range map[string]httpreq.PathParams{"": httpreq.ParamsAmbiguous, "ambiguous": httpreq.ParamsAmbiguous, "strip": httpreq.ParamsStrip, "literal": httpreq.ParamsLiteral} {
		got, err := httpreq.ParsePathParams(s)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := httpreq.ParsePathParams("tomcat")
	require.ErrorContains(t, err, "ambiguous, strip, literal")
}

// decoded is a reading as an upstream that decodes the path sees it.
// upperEscapes writes the hex digits of every percent-escape in p upper-case.
func upperEscapes(p string) string {
	b := []byte(p)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = byte(unicode.ToUpper(rune(b[i+1]))), byte(unicode.ToUpper(rune(b[i+2])))
			i += 2
		}
	}
	return string(b)
}

func decoded(reading string) string {
	d, err := url.PathUnescape(reading)
	if err != nil {
		return "!" + reading
	}
	return d
}

// checkPath checks the properties that make the canonical form safe to match on:
//   - the filter's reading does not depend on the mesh: the canonical form and the
//     ambiguity of what Envoy hands over under Istio's NONE, BASE and MERGE_SLASHES
//     equal those of the raw path (Envoy may have resolved an ambiguity away), and under DECODE_AND_MERGE_SLASHES the canonical
//     form is one of the raw path's readings (Envoy decoded %2F for everybody);
//   - an unambiguous canonical form equals what Envoy's strictest setting hands
//     over (differential against Envoy's options);
//   - the path Go's net/http and a Tomcat-style upstream serve is one of the readings
//     (unless the path is Malformed, which the filters refuse or which those
//     upstreams refuse);
//   - canonicalization is idempotent and the fast path agrees with the slow one.
func checkPath(t *testing.T, raw string) {
	t.Helper()
	for _, o := range []httpreq.PathOptions{{}, {Params: httpreq.ParamsStrip}, {Params: httpreq.ParamsLiteral}, {IgnoreCase: true}} {
		c, amb := httpreq.CanonicalPath(raw, o)
		require.True(t, strings.HasPrefix(c, "/"), "%q -> %q", raw, c)
		slow, samb := httpreq.SlowCanonicalPath(raw, o)
		require.Equal(t, slow, c, "fast and slow path agree on %q", raw)
		require.Equal(t, samb, amb&samb, "fast and slow path agree on %q", raw)
		readings, amb2 := httpreq.PathReadings(nil, raw, o)
		require.Equal(t, amb, amb2)
		require.Equal(t, c, readings[0])
		require.LessOrEqual(t, len(readings), 8)
		for _, r := range readings {
			r2, ramb := httpreq.CanonicalPath(r, httpreq.PathOptions{Params: httpreq.ParamsLiteral, IgnoreCase: o.IgnoreCase})
			if amb&bad == 0 {
				require.Equal(t, r, r2, "reading %q of %q is canonical", r, raw)
				require.Zero(t, ramb&^(slash|bs), "reading %q of %q", r, raw)
			}
		}
		if amb&bad != 0 || strings.ContainsAny(raw, "?") {
			continue
		}
		for _, m := range []envoypath.Options{envoypath.IstioNone, envoypath.IstioBase, envoypath.IstioMergeSlashes, envoypath.IstioDecodeAndMergeSlashes} {
			if o.Params == httpreq.ParamsStrip && strings.Contains(raw, ";") && m.NormalizePath {
				// Envoy resolves dot segments before a Tomcat-style upstream drops
				// parameters ("/0/%2e;/../" is "/0/" for it, "/" for Tomcat alone):
				// the filter reads what it is handed, as the upstream will.
				continue
			}
			resPath, resAct := envoypath.Normalize(raw, m)
			if resAct != envoypath.Continue {
				continue
			}
			ec, eamb := httpreq.CanonicalPath(resPath, o)
			if m.EscapedSlashes == envoypath.KeepUnchanged && !(m.NormalizePath && strings.Contains(raw, `\`)) {
				require.Equal(t, c, ec, "%q under %+v (Envoy hands %q)", raw, m, resPath)
				// Envoy may have resolved an ambiguous segment away ("/%2F/.."), never
				// made one.
				require.Zero(t, eamb&^amb, "%q under %+v (Envoy hands %q)", raw, m, resPath)
			} else {
				// Envoy decoded %2F/%5C or read '\' as '/' for everybody: one of
				// the readings.
				require.Contains(t, readings, ec, "%q under %+v (Envoy hands %q)", raw, m, resPath)
			}
		}
		if o.IgnoreCase {
			continue
		}
		if amb == 0 && o.Params != httpreq.ParamsStrip {
			strictPath, strictAct := envoypath.Normalize(raw, envoypath.IstioMergeSlashes)
			require.Equal(t, envoypath.Continue, strictAct, raw)
			// Legacy normalize_path keeps the case of the escapes it keeps; the
			// canonical form writes them upper-case (RFC 3986 6.2.2.1).
			// Chromium's canonicalizer (Envoy's normalize_path) passes '[' and ']'
			// raw; the canonical form encodes them, as every byte outside RFC 3986's
			// pchar, so that "/a[b" and "/a%5Bb", which Go's net/http and other
			// decoding upstreams serve as one resource, have one form.
			want := strings.NewReplacer("[", "%5B", "]", "%5D").Replace(upperEscapes(strictPath))
			if strings.Trim(want, "/") == "" {
				// Envoy's merge_slashes (PathTransformer::mergeSlashes) keeps a leading
				// and a trailing '/' around the joined segments, so a path of slashes
				// only ("//", "/.//") stays "//"; the upstream serves "/" for it (Go's
				// net/http cleans it to "/" and redirects there, Tomcat normalizes it
				// to "/"), which is the canonical form.
				want = "/"
			}
			require.Equal(t, c, want, "canonical form = Envoy normalize_path + merge_slashes for %q", raw)
		}
		var views []string
		for _, r := range readings {
			views = append(views, decoded(r))
		}
		// Go decodes %2F to a separator but reads %5C and '\' as characters: a mixed
		// reading the readings do not list, on paths refused by default (escaped
		// slashes are ambiguous).
		lower := strings.ToLower(raw)
		if !strings.Contains(lower, "%5c") && !(strings.Contains(raw, `\`) && strings.Contains(lower, "%2f")) {
			if g, ok := pathtest.GoServes(raw); ok && o.Params != httpreq.ParamsStrip {
				require.Contains(t, views, g, "Go's net/http serves %q for %q; readings %q", g, raw, readings)
			}
			if tc, ok := pathtest.TomcatServes(raw); ok && o.Params != httpreq.ParamsLiteral {
				require.Contains(t, views, tc, "Tomcat serves %q for %q; readings %q", tc, raw, readings)
			}
		}
	}
}

func TestCanonicalPathProperties(t *testing.T) {
	for _, c := range canonCases {
		checkPath(t, c.raw)
	}
	for _, raw := range pathtest.Spellings("/admin/users") {
		checkPath(t, raw)
	}
}

func FuzzCanonicalPath(f *testing.F) {
	for _, c := range canonCases {
		f.Add(c.raw)
	}
	for _, s := range pathtest.Spellings("/admin/users") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 256 {
			return
		}
		checkPath(t, raw)
	})
}

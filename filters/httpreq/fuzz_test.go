package httpreq_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/httpreq"
)

// The differential tests: whatever the reader says is present must be exactly what
// Go's net/http reads, and what a lenient parser (splitting on ';' and ',', keeping
// invalid escapes, folding names as PHP and ASP.NET do, trimming every space) reads;
// what it says is absent, neither finds. Otherwise the reader must refuse (Repeated
// or Ambiguous).

// lenientDecode percent-decodes raw ('+' as space), keeping invalid escapes verbatim
// as Python and Node do.
func lenientDecode(raw string) string {
	var b []byte
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' && i+2 < len(raw) && ishex(raw[i+1]) && ishex(raw[i+2]) {
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		} else if c == '+' {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}

// fold is PHP's variable-name mangling and case folding (nginx's $arg_, ASP.NET):
// leading spaces dropped, ASCII lower-case, ' ', '.' and '[' read as '_'.
func fold(s string) string {
	out := []byte(strings.ToLower(strings.TrimLeft(s, " ")))
	for i, c := range out {
		if c == ' ' || c == '.' || c == '[' {
			out[i] = '_'
		}
	}
	return string(out)
}

// structuredBase is the parameter a structured name fills: PHP, Rack and Express's qs
// read `user[]`, `user[0]` and `user[k]` as user; Rack 2's name pattern
// (\A[\[\]]*([^\[\]]+)\]*) also `user]` and `[user]`, qs `[user]`. ok is false for a
// name without brackets.
func structuredBase(decoded string) (string, bool) {
	d := strings.TrimLeft(decoded, " ")
	if !strings.ContainsAny(d, "[]") {
		return "", false
	}
	d = strings.TrimLeft(d, "[]")
	if i := strings.IndexAny(d, "[]"); i >= 0 {
		d = d[:i]
	}
	return fold(d), true
}

// lenientNames are the names some common parser reads a raw name as. trim: cookie
// names, which Go's net/http and others trim of white space on both sides. Query
// names are not trimmed: url.ParseQuery, Python's parse_qs, Node's URLSearchParams
// and querystring, Rack and servlet containers keep every space, so `user =0` and
// `user%20=0` name "user " for them; PHP drops leading spaces only and reads the
// others as '_' ("user_"). No common parser reads them as "user".
func lenientNames(raw string, trim bool) []string {
	if trim {
		raw = strings.Trim(raw, " \t\r\n\v\f")
	}
	d := lenientDecode(raw)
	names := []string{fold(d)}
	if c, _, ok := strings.Cut(d, "\x00"); ok {
		// PHP reads a decoded name as a C string.
		d = c
		names = append(names, fold(d))
	}
	if b, ok := structuredBase(d); ok {
		names = append(names, b)
	}
	return names
}

func namesName(raw, name string, trim bool) bool {
	for _, n := range lenientNames(raw, trim) {
		if n == name {
			return true
		}
	}
	return false
}

// lenientValue is a query value as Python's parse_qs, Node's URLSearchParams and
// servlet containers read it: decoded, then read as UTF-8 with U+FFFD for what is
// not (Go keeps the bytes).
func lenientValue(raw string) string {
	return strings.ToValidUTF8(lenientDecode(raw), "\uFFFD")
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func lenientCookies(lines []string, name string) []string {
	var out []string
	for _, line := range lines {
		for _, crumb := range strings.Split(line, ";") {
			for i, piece := range strings.Split(crumb, ",") {
				n, v, _ := strings.Cut(piece, "=")
				if i == 0 {
					n, v, _ = strings.Cut(crumb, "=") // the crumb's own pair keeps its commas
				}
				if !namesName(n, name, true) {
					continue
				}
				v = strings.Trim(v, " \t\r\n\v\f")
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				out = append(out, v)
			}
		}
	}
	return out
}

func lenientQuery(q, name string) []string {
	var out []string
	for _, pair := range strings.FieldsFunc(q, func(r rune) bool { return r == '&' || r == ';' }) {
		n, v, _ := strings.Cut(pair, "=")
		if namesName(n, name, false) {
			out = append(out, lenientValue(v))
		}
	}
	return out
}

func allEmpty(vs []string) bool {
	for _, v := range vs {
		if v != "" {
			return false
		}
	}
	return true
}

func checkSingle(t *testing.T, what string, v httpreq.Value, goVals, lenient []string) {
	t.Helper()
	switch v.State {
	case httpreq.Present:
		if len(goVals) != 1 || goVals[0] != v.S {
			t.Fatalf("%s: reader %q, net/http %q", what, v.S, goVals)
		}
		if len(lenient) != 1 || lenient[0] != v.S {
			t.Fatalf("%s: reader %q, lenient parser %q", what, v.S, lenient)
		}
	case httpreq.Absent:
		if !allEmpty(goVals) || !allEmpty(lenient) {
			t.Fatalf("%s: reader absent, net/http %q, lenient parser %q", what, goVals, lenient)
		}
	case httpreq.Repeated:
		if len(goVals) == 0 || goVals[0] != v.S || v.Why == "" {
			t.Fatalf("%s: reader repeated %q (%s), net/http %q", what, v.S, v.Why, goVals)
		}
	case httpreq.Ambiguous:
		if v.Why == "" || v.S != "" {
			t.Fatalf("%s: ambiguous without a reason or with a value %q", what, v.S)
		}
	}
}

func FuzzCookie(f *testing.F) {
	for _, s := range [][2]string{
		{"sid=abc", ""}, {`sid=x"1; sid=abc`, ""}, {"sid =abc", "a=1"}, {"SID=1", "sid=2"},
		{"a=1, sid=2", ""}, {`sid="abc"`, ""}, {"sid= abc", ""}, {"s%69d=1", "sid=2"},
		{"sid=a,b", ""}, {"\vsid=1", ""}, {"sid", "sid=x"}, {"sid=\"\"", ""},
		{"sid[]=1", ""}, {"sid=1", "sid[x]=2"}, {"[sid]=1", ""}, {"s%69d%5B%5D=1", ""}, {"sid%00x=1", "sid=2"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, l1, l2 string) {
		lines := []string{l1}
		if l2 != "" {
			lines = append(lines, l2)
		}
		pairs := []abi.Pair{{Key: ":path", Value: "/"}}
		for _, l := range lines {
			pairs = append(pairs, abi.Pair{Key: "cookie", Value: l})
		}
		var r httpreq.Request
		r.Read(abi.PairsView(abi.EncodePairs(pairs)))
		v := r.Cookie("sid")
		req := &http.Request{Header: http.Header{"Cookie": lines}}
		var goVals []string
		for _, c := range req.CookiesNamed("sid") {
			goVals = append(goVals, c.Value)
		}
		if c, err := req.Cookie("sid"); (err == nil) != (len(goVals) > 0) || err == nil && c.Value != goVals[0] {
			t.Fatalf("Cookie and CookiesNamed disagree")
		}
		checkSingle(t, "cookie", v, goVals, lenientCookies(lines, "sid"))
	})
}

func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"user=alice", "user=x%zz1&user=alice", "user=x%&user=alice", "user=a;b", "a=1;user=2",
		"User=1", "%75ser=alice", "%2575ser=bob&user=alice", "user=a+b%20c", "+user=1", "user.=1",
		"user", "user=&user=1", "u%73er=%41",
		// Spaces around a name (none trims them), structured names, values that are
		// not UTF-8.
		"user =0", "user%20=0", "user+=0", "user%09=0", "%09user=0", " user=0", "user=a&user[]=b",
		"user[]=a", "user%5B0%5D=a", "[user]=a", "user]=a", "user=%FF", "user=a\xff", "user=%C3%A9",
		"user%00x=bob&user=alice", "user\x00=bob",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if strings.ContainsAny(q, "#") {
			return // Envoy refuses or strips fragments before filters run
		}
		var r httpreq.Request
		r.Read(abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":path", Value: "/p?" + q}})))
		v := r.Param("user")
		vals, _ := url.ParseQuery(q)
		u := url.URL{RawQuery: q}
		if got := u.Query()["user"]; len(got) != len(vals["user"]) {
			t.Fatalf("URL.Query and ParseQuery disagree")
		}
		checkSingle(t, "query", v, vals["user"], lenientQuery(q, "user"))
	})
}

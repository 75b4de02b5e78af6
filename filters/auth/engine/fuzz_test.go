package engine_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/engine/enginetest"
)

// canon is how the most permissive upstream parser reads a parameter or cookie name
// (ASP.NET case-folding, PHP's mangling of ' ', '.' and '[').
func canon(name string) string {
	name = strings.ToLower(strings.TrimLeft(name, " "))
	return strings.NewReplacer(" ", "_", ".", "_", "[", "_").Replace(name)
}

// structuredBase is the parameter PHP, Rack and Express's qs fill from a decoded
// name: up to a NUL (PHP's C strings), then, if it has brackets, what lies between a
// leading run of '[' and ']' (Rack 2, qs) and the next bracket (`api_key[]`,
// `[api_key]`).
func structuredBase(name string) string {
	name, _, _ = strings.Cut(strings.TrimLeft(name, " "), "\x00")
	if !strings.ContainsAny(name, "[]") {
		return name
	}
	name = strings.TrimLeft(name, "[]")
	if i := strings.IndexAny(name, "[]"); i >= 0 {
		name = name[:i]
	}
	return name
}

// FuzzReadQuery: whatever the query, a request auth lets through on /v1 (api_keys and
// corp, allow_missing, forward false) never carries a parameter that Go's net/url, a
// ';'-splitting parser or a case-folding one reads as api_key, or as hs's
// access_token (a credential this rule does not read).
func FuzzReadQuery(f *testing.F) {
	for _, q := range []string{"api_key=x", "api%5Fkey=x", "API_KEY=x", "a=1;api_key=x", "api_key=" + enginetest.APIKey,
		"api.key=x", "api+key=x", "access%5ftoken=x", "api%255Fkey=x", "x=%zz&api_key=" + enginetest.APIKey, "b=1&&c",
		"api_key[]=x", "[access_token]=x", "api_key%00x=x", "API%5Fkey%5B0%5D=x"} {
		f.Add(q)
	}
	e := newEngine(f, nil)
	f.Fuzz(func(t *testing.T, q string) {
		if strings.ContainsAny(q, "#\x00") {
			return
		}
		path := "/v1/x?" + q
		var x engine.Extracted
		e.Read(&engine.Request{Method: "GET", Path: path, Now: now}, &x)
		v := e.Decide(&x)
		if v.Kind != engine.Allow {
			return
		}
		up := path
		if v.NewPath != "" {
			up = v.NewPath
		}
		_, rawQuery, _ := strings.Cut(up, "?")
		for _, sep := range []string{"&", ";"} {
			for pair := range strings.SplitSeq(rawQuery, sep) {
				for piece := range strings.SplitSeq(pair, map[string]string{"&": ";", ";": "&"}[sep]) {
					name, _, _ := strings.Cut(piece, "=")
					dec, err := url.QueryUnescape(name)
					if err != nil {
						dec = name
					}
					if c := canon(dec); c == "api_key" || c == "access_token" {
						t.Fatalf("%q: upstream query %q still holds %q", path, up, piece)
					}
					if c := canon(structuredBase(dec)); c == "api_key" || c == "access_token" {
						t.Fatalf("%q: upstream query %q still holds %q (a structured name)", path, up, piece)
					}
				}
			}
		}
		if vals, _ := url.ParseQuery(rawQuery); vals.Has("api_key") || vals.Has("access_token") {
			t.Fatalf("%q: net/url reads a credential in %q", path, up)
		}
	})
}

// FuzzReadCookies: on /v1 the cookie "jwt" (read by provider hs only) must never reach
// the upstream, whatever the Cookie lines look like.
func FuzzReadCookies(f *testing.F) {
	for _, c := range [][2]string{{"jwt=x", ""}, {"a=1", "jwt=x"}, {"JWT=x", ""}, {"a=1, jwt=x", ""}, {`jwt="x"`, "b=2"}, {"%6Awt=x", ""}, {" jwt =x;", ";;"}} {
		f.Add(c[0], c[1])
	}
	e := newEngine(f, nil)
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		lines := [][2]string{{"cookie", line1}}
		if line2 != "" {
			lines = append(lines, [2]string{"cookie", line2})
		}
		var x engine.Extracted
		e.Read(&engine.Request{Method: "GET", Path: "/v1/x", Now: now, Headers: enginetest.Lines(lines)}, &x)
		v := e.Decide(&x)
		if v.Kind != engine.Allow {
			return
		}
		up := []string{line1, line2}
		for _, h := range v.ExtraHeaders {
			if h.Name == "cookie" {
				up = []string{h.Value}
			}
		}
		for _, h := range v.RemoveHeaders {
			if h == "cookie" {
				up = nil
			}
		}
		for _, l := range up {
			for crumb := range strings.SplitSeq(l, ";") {
				for piece := range strings.SplitSeq(crumb, ",") {
					name, _, _ := strings.Cut(strings.Trim(piece, " \t"), "=")
					dec, err := url.QueryUnescape(strings.TrimRight(name, " \t"))
					if err != nil {
						dec = name
					}
					if canon(dec) == "jwt" {
						t.Fatalf("%q %q: upstream cookie %q still holds %q", line1, line2, l, piece)
					}
				}
			}
			if cs, err := http.ParseCookie(l); err == nil {
				for _, c := range cs {
					if strings.EqualFold(c.Name, "jwt") {
						t.Fatalf("%q %q: net/http reads jwt in %q", line1, line2, l)
					}
				}
			}
		}
	})
}

package httpreq_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/httpreq"
)

func read(pairs ...string) *httpreq.Request {
	var ps []abi.Pair
	for i := 0; i+1 < len(pairs); i += 2 {
		ps = append(ps, abi.Pair{Key: pairs[i], Value: pairs[i+1]})
	}
	var r httpreq.Request
	r.Read(abi.PairsView(abi.EncodePairs(ps)))
	return &r
}

func TestCookie(t *testing.T) {
	cases := []struct {
		name  string
		lines []string
		want  httpreq.State
		value string
	}{
		{"plain", []string{"sid=abc"}, httpreq.Present, "abc"},
		{"second line", []string{"a=1", "b=2; sid=abc"}, httpreq.Present, "abc"},
		{"quoted", []string{`sid="abc"`}, httpreq.Present, "abc"},
		{"space before '='", []string{"sid =abc"}, httpreq.Present, "abc"},
		{"tabs around", []string{"\tsid\t=abc\t"}, httpreq.Present, "abc"},
		{"absent", []string{"other=1"}, httpreq.Absent, ""},
		{"empty", []string{"sid="}, httpreq.Absent, ""},
		{"no lines", nil, httpreq.Absent, ""},
		{"prefix name is another cookie", []string{"sidx=1; xsid=2"}, httpreq.Absent, ""},
		// the example: Go skips the first crumb and reads abc
		{"embedded quote then real", []string{`sid=x"1; sid=abc`}, httpreq.Ambiguous, ""},
		{"backslash", []string{`sid=a\b`}, httpreq.Ambiguous, ""},
		{"control byte", []string{"sid=a\x01b"}, httpreq.Ambiguous, ""},
		{"non-ASCII", []string{"sid=caf\xc3\xa9"}, httpreq.Ambiguous, ""},
		{"leading space in value", []string{"sid= abc"}, httpreq.Ambiguous, ""},
		{"space inside quotes", []string{`sid=" abc"`}, httpreq.Ambiguous, ""},
		{"twice on one line", []string{"sid=a; sid=b"}, httpreq.Repeated, "a"},
		{"twice over lines", []string{"sid=a", "sid=a"}, httpreq.Repeated, "a"},
		{"upper case", []string{"SID=abc"}, httpreq.Ambiguous, ""},
		{"percent-encoded name", []string{"s%69d=abc"}, httpreq.Ambiguous, ""},
		{"double-encoded name", []string{"s%2569d=abc"}, httpreq.Ambiguous, ""},
		{"vertical tab before name", []string{"\vsid=abc"}, httpreq.Ambiguous, ""},
		{"after comma", []string{"a=1, sid=abc"}, httpreq.Ambiguous, ""},
		{"comma in value is Go's value", []string{"sid=a,b"}, httpreq.Present, "a,b"},
		{"PHP dot is another name", []string{"s.id=1; sid=abc"}, httpreq.Present, "abc"},
		// PHP's $_COOKIE reads structured names as sid (an array).
		{"structured name", []string{"sid[]=abc"}, httpreq.Ambiguous, ""},
		{"structured name beside the real one", []string{"sid=abc; sid[x]=def"}, httpreq.Ambiguous, ""},
		{"encoded structured name", []string{"sid%5B0%5D=abc"}, httpreq.Ambiguous, ""},
		{"structured other name", []string{"sids[]=1; sid=abc"}, httpreq.Present, "abc"},
		{"name cut at an encoded NUL", []string{"sid=abc; sid%00x=def"}, httpreq.Ambiguous, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var kv []string
			for _, l := range c.lines {
				kv = append(kv, "cookie", l)
			}
			v := read(kv...).Cookie("sid")
			assert.Equal(t, c.want, v.State, "why: %s", v.Why)
			if c.want == httpreq.Present || c.want == httpreq.Repeated {
				assert.Equal(t, c.value, v.S)
			}
			if c.want >= httpreq.Repeated {
				assert.NotEmpty(t, v.Why)
			}
		})
	}
}

func TestCookieDotNameIsAmbiguousForUnderscoreName(t *testing.T) {
	v := read("cookie", "s.id=1").Cookie("s_id")
	assert.Equal(t, httpreq.Ambiguous, v.State)
}

func TestParam(t *testing.T) {
	cases := []struct {
		query string
		want  httpreq.State
		value string
	}{
		{"user=alice", httpreq.Present, "alice"},
		{"a=1&user=al%69ce&b", httpreq.Present, "alice"},
		{"user=a+b", httpreq.Present, "a b"},
		{"%75ser=alice", httpreq.Present, "alice"}, // Go decodes names
		{"us%65r=alice#frag", httpreq.Present, "alice"},
		{"user=", httpreq.Absent, ""},
		{"other=1", httpreq.Absent, ""},
		{"", httpreq.Absent, ""},
		{"users=1&xuser=2", httpreq.Absent, ""},
		// the examples
		{"user=x%zz1&user=alice", httpreq.Ambiguous, ""},
		{"user=x%&user=alice", httpreq.Ambiguous, ""},
		{"user=x;y&user=alice", httpreq.Ambiguous, ""},
		{"a=1;user=bob&user=alice", httpreq.Ambiguous, ""},
		{"user=alice&user=bob", httpreq.Repeated, "alice"},
		{"User=alice", httpreq.Ambiguous, ""},
		{"USER=bob&user=alice", httpreq.Ambiguous, ""},
		{"us%zzer=x&user=alice", httpreq.Present, "alice"}, // "us%zzer" is no spelling of user
		{"%2575ser=bob&user=alice", httpreq.Ambiguous, ""},
		{"+user=bob&user=alice", httpreq.Ambiguous, ""},
		{"user%zz=bob", httpreq.Absent, ""},
		{"us%zer=1", httpreq.Absent, ""},
		// Spaces around a name: no common parser trims the trailing ones (Go,
		// Python, Node, Rack, servlets keep "user "; PHP reads "user_"), PHP drops
		// leading spaces only.
		{"user =bob&user=alice", httpreq.Present, "alice"},
		{"user%20=bob&user=alice", httpreq.Present, "alice"},
		{"user+=bob&user=alice", httpreq.Present, "alice"},
		{"user%09=bob&user=alice", httpreq.Present, "alice"},
		{"%09user=bob&user=alice", httpreq.Present, "alice"},
		{"user%0A=bob", httpreq.Absent, ""},
		{"%20user=bob&user=alice", httpreq.Ambiguous, ""},
		{" user=bob", httpreq.Ambiguous, ""},
		// Structured names: PHP, Rack and Express's qs read them as user.
		{"user[]=bob", httpreq.Ambiguous, ""},
		{"user=alice&user[]=bob", httpreq.Ambiguous, ""},
		{"user[0]=bob&user=alice", httpreq.Ambiguous, ""},
		{"user[name]=bob", httpreq.Ambiguous, ""},
		{"user%5B%5D=bob", httpreq.Ambiguous, ""},
		{"User[]=bob", httpreq.Ambiguous, ""},
		{"[user]=bob", httpreq.Ambiguous, ""},
		{"user]=bob", httpreq.Ambiguous, ""},
		{"users[]=bob&user=alice", httpreq.Present, "alice"},
		{"x[user]=bob&user=alice", httpreq.Present, "alice"},
		// PHP reads names as C strings.
		{"user%00x=bob&user=alice", httpreq.Ambiguous, ""},
		{"user\x00=bob", httpreq.Ambiguous, ""},
		{"x%00user=bob&user=alice", httpreq.Present, "alice"},
		// Values that are not UTF-8: one U+FFFD for Python, Node and servlets.
		{"user=%FF", httpreq.Ambiguous, ""},
		{"user=alice%C0", httpreq.Ambiguous, ""},
		{"user=alice\xff", httpreq.Ambiguous, ""},
		{"user=caf%C3%A9", httpreq.Present, "caf\u00e9"},
		{"user=caf\xc3\xa9", httpreq.Present, "caf\u00e9"},
		{"other=%FF&user=alice", httpreq.Present, "alice"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			v := read(":path", "/p?"+c.query).Param("user")
			assert.Equal(t, c.want, v.State, "why: %s", v.Why)
			if c.want == httpreq.Present || c.want == httpreq.Repeated {
				assert.Equal(t, c.value, v.S)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	cases := []struct {
		name  string
		pairs []string
		want  httpreq.State
		value string
	}{
		{"one", []string{"x-user", "bob"}, httpreq.Present, "bob"},
		{"absent", []string{"x-other", "bob"}, httpreq.Absent, ""},
		{"empty", []string{"x-user", ""}, httpreq.Absent, ""},
		{"twice", []string{"x-user", "bob", "x-user", "eve"}, httpreq.Repeated, "bob"},
		{"underscore spelling", []string{"x_user", "eve"}, httpreq.Ambiguous, ""},
		{"underscore beside", []string{"x-user", "bob", "x_user", "eve"}, httpreq.Ambiguous, ""},
		{"upper case (a host that keeps case)", []string{"X-User", "eve"}, httpreq.Ambiguous, ""},
		{"upper case after the value", []string{"x-user", "bob", "X-USER", "eve"}, httpreq.Ambiguous, ""},
		{"other names of the same length", []string{"x-usex", "1", "y-user", "2", "x-user", "bob", "x-users", "3"}, httpreq.Present, "bob"},
		{"empty copy beside a value", []string{"x-user", "", "x-user", "bob"}, httpreq.Repeated, ""},
	}
	for _, c := range cases {
		// Read scans the header map's encoding, ReadAll its decoded entries: both
		// must read the same.
		for _, how := range []string{"Read", "ReadAll"} {
			t.Run(c.name+"/"+how, func(t *testing.T) {
				r := read(c.pairs...)
				if how == "ReadAll" {
					r.ReadAll(r.View)
				}
				v := r.Header("x-user")
				assert.Equal(t, c.want, v.State, "why: %s", v.Why)
				if c.want == httpreq.Present || c.want == httpreq.Repeated {
					assert.Equal(t, c.value, v.S)
				}
			})
		}
	}
}

func TestClientAddress(t *testing.T) {
	cases := []struct {
		name   string
		xff    []string
		source string
		hops   int
		want   httpreq.State
		value  string
	}{
		{"source ipv4", nil, "10.0.0.1:1234", 0, httpreq.Present, "10.0.0.1"},
		{"source mapped", nil, "[::ffff:10.0.0.1]:1234", 0, httpreq.Present, "10.0.0.1"},
		{"source mapped bare", nil, "::ffff:10.0.0.1", 0, httpreq.Present, "10.0.0.1"},
		{"source mapped hex", nil, "[::ffff:a00:1]:80", 0, httpreq.Present, "10.0.0.1"},
		{"source ipv6 zone", nil, "[fe80::1%eth0]:80", 0, httpreq.Present, "fe80::1"},
		{"source ipv6 long form", nil, "[2001:0db8:0:0:0:0:0:1]:80", 0, httpreq.Present, "2001:db8::1"},
		{"source ipv6 brackets no port", nil, "[2001:db8::1]", 0, httpreq.Present, "2001:db8::1"},
		{"source unreadable", nil, "pipe", 0, httpreq.Absent, ""},
		{"xff ignored without hops", []string{"1.2.3.4"}, "10.0.0.1:1", 0, httpreq.Present, "10.0.0.1"},
		{"xff one hop", []string{"1.1.1.1, 2.2.2.2"}, "10.0.0.1:1", 1, httpreq.Present, "2.2.2.2"},
		{"xff two hops", []string{"1.1.1.1, 2.2.2.2"}, "10.0.0.1:1", 2, httpreq.Present, "1.1.1.1"},
		{"xff two hops over copies", []string{"1.1.1.1", "2.2.2.2"}, "10.0.0.1:1", 2, httpreq.Present, "1.1.1.1"},
		{"xff too short", []string{"2.2.2.2"}, "10.0.0.1:1", 2, httpreq.Present, "10.0.0.1"},
		{"xff mapped", []string{"::ffff:1.2.3.4"}, "10.0.0.1:1", 1, httpreq.Present, "1.2.3.4"},
		{"xff zone", []string{"fe80::1%25x"}, "10.0.0.1:1", 1, httpreq.Present, "fe80::1"},
		{"xff with port", []string{"1.2.3.4:80"}, "10.0.0.1:1", 1, httpreq.Ambiguous, ""},
		{"xff brackets", []string{"[::1]"}, "10.0.0.1:1", 1, httpreq.Ambiguous, ""},
		{"xff garbage", []string{"unknown"}, "10.0.0.1:1", 1, httpreq.Ambiguous, ""},
		{"xff leading zeros", []string{"010.1.1.1"}, "10.0.0.1:1", 1, httpreq.Ambiguous, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var kv []string
			for _, x := range c.xff {
				kv = append(kv, "x-forwarded-for", x)
			}
			v := read(kv...).ClientAddress(c.source, c.hops)
			assert.Equal(t, c.want, v.State, "why: %s", v.Why)
			assert.Equal(t, c.value, v.S)
		})
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":               true,
		"application/grpc+proto":         true,
		"application/grpc;charset=utf-8": false, // Envoy's hasGrpcContentType
		"application/grpc-web":           false,
		"application/grpc-web+proto":     false,
		"Application/gRPC":               false,
		"application/json":               false,
		"":                               false,
	} {
		assert.Equal(t, want, httpreq.IsGRPC(ct), ct)
	}
}

func TestRead(t *testing.T) {
	r := read(":method", "POST", ":path", "/a/b?x=1#f", "content-type", "application/grpc", "cookie", "a=1", "cookie", "b=2")
	require.Equal(t, "POST", r.Method)
	assert.Equal(t, "/a/b", r.Path)
	assert.Equal(t, "x=1", r.RawQuery)
	assert.Equal(t, "application/grpc", r.ContentType)
	assert.Equal(t, []string{"a=1", "b=2"}, r.CookieLines())
	var all httpreq.Request
	all.ReadAll(r.View)
	assert.Equal(t, [4]string{r.Method, r.Path, r.RawQuery, r.ContentType}, [4]string{all.Method, all.Path, all.RawQuery, all.ContentType})
	assert.Equal(t, r.CookieLines(), all.CookieLines())
	assert.Equal(t, r.Pairs(), all.Pairs())
	assert.Len(t, all.Pairs(), 5)
	var h httpreq.Request
	h.ReadHeaders(r.View)
	assert.Empty(t, h.Method)
	assert.Equal(t, r.CookieLines(), h.CookieLines())
	v, _ := h.Coalesced("cookie")
	assert.Equal(t, "a=1,b=2", v)
	var d httpreq.Request // entries decoded first: Cookie lines and headers from them
	d.ReadHeaders(r.View)
	assert.Len(t, d.Pairs(), 5)
	assert.Equal(t, r.CookieLines(), d.CookieLines())
	assert.Equal(t, r.Header("content-type"), d.Header("content-type"))
	for _, c := range []struct {
		parts                      httpreq.Parts
		method, path, query, ctype string
	}{
		{httpreq.PartTarget, "", "/a/b", "x=1", ""},
		{httpreq.PartMethod | httpreq.PartContentType, r.Method, "", "", "application/grpc"},
		{httpreq.AllParts, r.Method, "/a/b", "x=1", "application/grpc"},
	} {
		var p httpreq.Request
		p.Read(abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":path", Value: "/old?y=2"}}))) // reused: nothing of it may show
		p.ReadParts(r.View, c.parts)
		assert.Equal(t, [4]string{c.method, c.path, c.query, c.ctype}, [4]string{p.Method, p.Path, p.RawQuery, p.ContentType}, "parts %b", c.parts)
		assert.Equal(t, r.CookieLines(), p.CookieLines())
	}
	r.Read(abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":path", Value: "/x#y"}})))
	assert.Equal(t, "/x", r.Path)
	assert.Empty(t, r.Method)
	assert.Empty(t, r.CookieLines())
}

// Reading a present header, cookie and parameter allocates nothing once warm.
func TestReadAllocs(t *testing.T) {
	view := abi.PairsView(abi.EncodePairs([]abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/p?user=alice&a=b"},
		{Key: "x-user", Value: "bob"}, {Key: "cookie", Value: "a=1; sid=abc"}}))
	var r httpreq.Request
	n := testing.AllocsPerRun(100, func() {
		r.Read(view)
		if !r.Header("x-user").OK() || !r.Cookie("sid").OK() || !r.Param("user").OK() {
			t.Fatal("not read")
		}
	})
	assert.Zero(t, n)
}

func TestCoalesced(t *testing.T) {
	r := read("x-a", "1", "x-b", "2", "x-a", "3", "x-a", "")
	v, ok := r.Coalesced("x-a")
	assert.True(t, ok)
	assert.Equal(t, "1,3,", v)
	v, ok = r.Coalesced("x-b")
	assert.True(t, ok)
	assert.Equal(t, "2", v)
	_, ok = r.Coalesced("x-c")
	assert.False(t, ok)
}

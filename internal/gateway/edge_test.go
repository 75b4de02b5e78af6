package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"

	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/gateway"
	"github.com/meshplug/meshplug/internal/gateway/gatewaytest"
)

// edgePolicy protects /admin with an API key; everything else is public.
func edgePolicy(t testing.TB) *v1alpha1.TrafficPolicy {
	sum := sha256.Sum256([]byte(key))
	p, err := v1alpha1.Decode(fmt.Appendf(nil, `
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: edge, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]
  auth:
    api_keys:
      from_headers: [x-api-key]
      keys: [{consumer: tester, sha256: %s}]
    rules:
    - match: {prefix: /admin}
      requires: [api_keys]
    default_rule: {public: true}
`, hex.EncodeToString(sum[:])))
	require.NoError(t, err)
	return p
}

// seen is what the echo upstream got.
type seen struct {
	URI    string      `json:"uri"`  // the request target exactly as received
	Path   string      `json:"path"` // what net/http routes on
	Header http.Header `json:"header"`
}

type edgeEnv struct {
	addr string
	log  *syncBuffer
	gw   *gateway.Gateway
}

// startEdge runs the gateway with edgePolicy in front of an upstream that answers
// with what it received (the handler, if given, serves instead).
func startEdge(t testing.TB, tweak func(*gateway.Config), handler http.Handler) *edgeEnv {
	t.Helper()
	if handler == nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("content-type", "application/json")
			_ = json.NewEncoder(w).Encode(seen{URI: r.RequestURI, Path: r.URL.Path, Header: r.Header})
		})
	}
	up := httptest.NewServer(handler)
	t.Cleanup(up.Close)
	e := &edgeEnv{log: &syncBuffer{}}
	cfg := gateway.Config{
		Policy: edgePolicy(t), WasmDir: gatewaytest.WasmDir(t), Workers: 2,
		Upstreams: []gateway.Upstream{{Name: "v1", Address: up.Listener.Addr().String()}},
		AccessLog: e.log,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	gw, err := gateway.New(context.Background(), cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e.addr, e.gw = ln.Addr().String(), gw
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		_ = gw.Shutdown(context.Background())
		<-served
	})
	return e
}

// get sends GET target over HTTP/1.1 or h2c with raw bytes/frames.
func (e *edgeEnv) get(t testing.TB, h2 bool, target string, hdr ...[2]string) rawResult {
	t.Helper()
	if h2 {
		c := dialH2(t, e.addr)
		return c.response(c.request("GET", target, hdr, nil))
	}
	var lines []string
	for _, h := range hdr {
		lines = append(lines, h[0]+": "+h[1])
	}
	return rawH1(t, e.addr, h1Request("GET", target, lines...))
}

func decodeSeen(t testing.TB, r rawResult) seen {
	t.Helper()
	var s seen
	require.NoError(t, json.Unmarshal(r.body, &s), "status %d body %q", r.status, r.body)
	return s
}

var protocols = []struct {
	name string
	h2   bool
}{{"h1", false}, {"h2c", true}}

// Every spelling of /admin is matched by the auth rule as /admin (401 without the
// key), whatever the encoding, dot segments or backslashes; with the key the
// upstream gets exactly the path the filters matched.
func TestEdgePathNormalization(t *testing.T) {
	e := startEdge(t, nil, nil)
	for _, tc := range []struct {
		target string
		want   string // what the filters and the upstream see
	}{
		{"/admin", "/admin"},
		{"/%61dmin", "/admin"},
		{"/adm%69n/secret", "/admin/secret"},
		{"/%61%64%6D%69%6E", "/admin"},
		{"/%61dmin/x{", "/admin/x%7B"},
		{"/public/%2e%2e/admin", "/admin"},
		{"/public/.%2E/admin", "/admin"},
		{"/public/%2E%2e/admin", "/admin"},
		{`/public\..\admin`, "/admin"},
		{`/public/..\admin`, "/admin"},
		{"/public/../admin", "/admin"},
		{"//admin", "/admin"},
		{"/./admin", "/admin"},
		{"/public/..//admin/x", "/admin/x"},
		{"/admin/../admin/x?y=/../z", "/admin/x?y=/../z"},
		{"/%41dmin/../admin", "/admin"},
	} {
		for _, p := range protocols {
			t.Run(p.name+" "+tc.target, func(t *testing.T) {
				r := e.get(t, p.h2, tc.target)
				assert.Equal(t, 401, r.status, "must be matched as %s", tc.want)
				r = e.get(t, p.h2, tc.target, [2]string{"x-api-key", key})
				require.Equal(t, 200, r.status)
				s := decodeSeen(t, r)
				assert.Equal(t, tc.want, s.URI, "forwarded byte for byte as matched")
			})
		}
	}
	assert.Contains(t, e.log.String(), `GET /admin/x%7B 200`)
}

// Public paths reach the upstream exactly as the filters saw them: the gateway never
// re-encodes what it parsed, in the path or the query.
func TestEdgeForwardsPathByteForByte(t *testing.T) {
	e := startEdge(t, nil, nil)
	for _, tc := range []struct{ target, want string }{
		{"/pub/a,b=c,d!$'()*+:@&=[]", "/pub/a,b=c,d!$'()*+:@&=[]"},
		{"/pub/%3B%3b%25%5B%7e", "/pub/%3B%3b%25%5B~"},
		{"/pub/caf\xc3\xa9", "/pub/caf%C3%A9"},
		{"/pub/x{y}|^`", "/pub/x%7By%7D%7C%5E%60"},
		{"/pub?q=%2F&r=/../{x}&s=a+b%20c", "/pub?q=%2F&r=/../{x}&s=a+b%20c"},
		{"/pub?", "/pub?"},
		{"/pub/%zz", "/pub/%zz"},
	} {
		for _, p := range protocols {
			if p.h2 && strings.Contains(tc.target, "%zz") {
				continue // Go's HTTP/2 server refuses it before the gateway sees it (see the package doc)
			}
			t.Run(p.name+" "+tc.target, func(t *testing.T) {
				r := e.get(t, p.h2, tc.target)
				if strings.Contains(tc.target, "%zz") {
					// Go's HTTP/1.1 server refuses an invalid escape (Envoy passes it on).
					assert.Equal(t, 400, r.status)
					return
				}
				require.Equal(t, 200, r.status, "%s", r.body)
				assert.Equal(t, tc.want, decodeSeen(t, r).URI)
			})
		}
	}
	// A ';' path parameter is read two ways by upstreams (Tomcat-style ones drop it):
	// auth refuses such a path by default (filters/auth README, Paths), so it never
	// reaches the upstream in either spelling.
	for _, p := range protocols {
		r := e.get(t, p.h2, "/pub/a;b=c")
		assert.Equal(t, 400, r.status, "%s: %s", p.name, r.body)
		assert.Contains(t, string(r.body), "ambiguous request path", p.name)
	}
}

// Escaped slashes are redirected to the finished path: never to another host.
func TestEdgeRedirectAfterNormalization(t *testing.T) {
	e := startEdge(t, nil, nil)
	for _, tc := range []struct{ target, location string }{
		{"/%2Fevil.example/x", "/evil.example/x"},
		{"/%2f%2fevil.example/x", "/evil.example/x"},
		{"/%5Cevil.example/x", "/evil.example/x"},
		{"/%5c%5Cevil.example", "/evil.example"},
		{"/%2F/evil.example", "/evil.example"},
		{"/public/..%2Fadmin?x=%2F", "/admin?x=%2F"},
		{"/public/%2e%2e%5cadmin", "/admin"},
		{"/a%2Fb", "/a/b"},
	} {
		for _, p := range protocols {
			t.Run(p.name+" "+tc.target, func(t *testing.T) {
				r := e.get(t, p.h2, tc.target)
				assert.Equal(t, 307, r.status)
				loc := r.header.Get("location")
				assert.Equal(t, tc.location, loc)
				assert.False(t, strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, `/\`), "open redirect to %q", loc)
			})
		}
	}
}

// The request-target forms and the paths Envoy refuses.
func TestEdgeRequestTargets(t *testing.T) {
	e := startEdge(t, nil, nil)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"absolute form is normalized too", "GET http://gw.test/%61dmin HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", 401},
		{"absolute form without path", "GET http://gw.test HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", 200},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", 404},
		{"fragment", "GET /pub#x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", 400},
		{"escaped NUL", "GET /pub/%00 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", 400},
		{"HTTP/1.0 (accept_http_10 off)", "GET /pub HTTP/1.0\r\nHost: gw.test\r\n\r\n", 426},
		// Framing, as Envoy's HTTP/1 codec decides it (here Go's server does).
		{"two different Content-Lengths", "POST /pub HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello", 400},
		{"unsupported transfer coding", "POST /pub HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", 501},
		{"no Host", "GET /pub HTTP/1.1\r\nConnection: close\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.status, rawH1(t, e.addr, tc.req).status)
		})
	}
}

// Envoy's header limits (max_request_headers_kb 60, max_headers_count 100): 431 on
// HTTP/1.1, a reset stream on HTTP/2; and underscores refused.
func TestEdgeHeaderLimits(t *testing.T) {
	e := startEdge(t, nil, nil)
	many := func(n int) [][2]string {
		var hs [][2]string
		for i := range n {
			hs = append(hs, [2]string{fmt.Sprintf("x-h-%d", i), "v"})
		}
		return hs
	}
	for _, tc := range []struct {
		name   string
		hdr    [][2]string
		ok     bool
		status int // HTTP/1.1 answer when refused
	}{
		// HTTP/1.1 counts Host and Connection too (100 in all), HTTP/2 pseudo-headers not.
		{"98 headers", many(98), true, 0},
		{"101 headers", many(101), false, 431},
		{"10000 headers", many(10000), false, 431},
		{"59 KiB header", [][2]string{{"x-big", strings.Repeat("a", 59<<10)}}, true, 0},
		{"61 KiB header", [][2]string{{"x-big", strings.Repeat("a", 61<<10)}}, false, 431},
		{"100 KiB header", [][2]string{{"x-big", strings.Repeat("a", 100<<10)}}, false, 431},
		{"40+30 KiB headers", [][2]string{{"x-a", strings.Repeat("a", 40<<10)}, {"x-b", strings.Repeat("b", 30<<10)}}, false, 431},
		{"underscore", [][2]string{{"x_consumer", "admin"}}, false, 400},
	} {
		for _, p := range protocols {
			t.Run(p.name+" "+tc.name, func(t *testing.T) {
				r := e.get(t, p.h2, "/pub", tc.hdr...)
				switch {
				case tc.ok:
					assert.Equal(t, 200, r.status)
				case p.h2 && tc.status == 431 && r.status == 431:
					// Go's HTTP/2 server answers 431 itself above its own limit.
				case p.h2:
					assert.True(t, r.reset, "stream must be reset, got %d", r.status)
				default:
					assert.Equal(t, tc.status, r.status)
				}
			})
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// use_remote_address: the peer is appended to x-forwarded-for (a loopback peer as
// Envoy's local address), x-forwarded-proto is overwritten, internal-only headers
// are removed, x-envoy-external-address and x-request-id are the gateway's.
func TestEdgeForwardingHeaders(t *testing.T) {
	e := startEdge(t, nil, nil)
	local := localIPv4()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := e.get(t, p.h2, "/pub",
				[2]string{"x-forwarded-for", "1.2.3.4"},
				[2]string{"x-forwarded-for", "5.6.7.8"},
				[2]string{"x-forwarded-proto", "https"},
				[2]string{"x-envoy-internal", "true"},
				[2]string{"x-envoy-retry-on", "5xx"},
				[2]string{"x-envoy-max-retries", "9"},
				[2]string{"x-envoy-upstream-rq-timeout-ms", "1"},
				[2]string{"x-envoy-external-address", "6.6.6.6"},
				[2]string{"x-envoy-downstream-service-cluster", "admin"},
				[2]string{"x-request-id", "mine"},
				[2]string{"x-custom", "kept"},
			)
			require.Equal(t, 200, r.status)
			h := decodeSeen(t, r).Header
			assert.Equal(t, []string{"1.2.3.4,5.6.7.8," + local}, h.Values("x-forwarded-for"))
			assert.Equal(t, []string{"http"}, h.Values("x-forwarded-proto"))
			assert.Equal(t, []string{"127.0.0.1"}, h.Values("x-envoy-external-address"))
			for _, gone := range []string{"x-envoy-internal", "x-envoy-retry-on", "x-envoy-max-retries", "x-envoy-upstream-rq-timeout-ms", "x-envoy-downstream-service-cluster"} {
				assert.Empty(t, h.Values(gone), gone)
			}
			rid := h.Values("x-request-id")
			require.Len(t, rid, 1)
			assert.Regexp(t, uuidRE, rid[0])
			assert.Equal(t, []string{"15000"}, h.Values("x-envoy-expected-rq-timeout-ms"))
			assert.Equal(t, []string{"kept"}, h.Values("x-custom"))
		})
	}
	t.Run("no client x-forwarded-for", func(t *testing.T) {
		h := decodeSeen(t, e.get(t, false, "/pub")).Header
		assert.Equal(t, []string{local}, h.Values("x-forwarded-for"))
	})
}

// localIPv4 is what Envoy appends to x-forwarded-for for a loopback peer: the
// machine's first non-loopback IPv4 address, else 127.0.0.1.
func localIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok && !p.IP.IsLoopback() && p.IP.To4() != nil {
			return p.IP.String()
		}
	}
	return "127.0.0.1"
}

package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/demo"
	"github.com/meshplug/meshplug/internal/gateway"
	"github.com/meshplug/meshplug/internal/gateway/gatewaytest"
)

const key = "test-key"

// policy: an API key, a generous per-consumer limit, a canary hint for a header and
// delays asked for with Envoy's fault header.
func policy(t testing.TB) *v1alpha1.TrafficPolicy {
	sum := sha256.Sum256([]byte(key))
	p, err := v1alpha1.Decode(fmt.Appendf(nil, `
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: e2e, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: e2e}]
  auth:
    api_keys:
      from_headers: [x-api-key]
      keys: [{consumer: tester, sha256: %s}]
    default_rule: {requires: [api_keys]}
  rateLimit:
    rules:
    - name: per-user
      descriptors: [{key: consumer, header: x-consumer}]
      limit: {requests: 100000, unit: second}
  routeHints:
    targets:
    - name: v2
      headers: {x-route-hint: v2}
    - name: v1
    rules:
    - name: beta
      match: {all: [{from: header, name: x-beta, op: exists}]}
      target: v2
  faults:
    faults:
    - name: asked
      delay:
        header_delay: {max_delay: 5s}
        percentage: {numerator: 100}
`, hex.EncodeToString(sum[:])))
	require.NoError(t, err)
	return p
}

type env struct {
	gw       *gateway.Gateway
	url      string
	addr     string
	log      *syncBuffer
	served   chan error
	released chan struct{} // closing it releases the blocking upstream
	arrived  chan struct{} // the blocking upstream got a request
	next     chan struct{} // lets /stream send its second chunk
	upFirst  chan struct{} // /upload read its first request bytes
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t testing.TB) *env {
	t.Helper()
	return startWith(t, false)
}

// startWith starts the gateway with the bundle (the default) or per-filter modules.
func startWith(t testing.TB, perFilter bool) *env {
	t.Helper()
	e := &env{log: &syncBuffer{}, served: make(chan error, 1), released: make(chan struct{}), arrived: make(chan struct{}, 16), next: make(chan struct{}), upFirst: make(chan struct{}, 1)}
	v1 := demo.Upstream("v1")
	up1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			e.arrived <- struct{}{}
			<-e.released
		}
		if r.URL.Path == "/upload" {
			// Reports its first bytes at once, then answers with the size and
			// SHA-256 of the whole body.
			first := make([]byte, 1)
			if _, err := io.ReadFull(r.Body, first); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			e.upFirst <- struct{}{}
			hs := sha256.New()
			hs.Write(first)
			n, err := io.Copy(hs, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			_, _ = fmt.Fprintf(w, "%d %x", n+1, hs.Sum(nil))
			return
		}
		if r.URL.Path == "/stream" {
			// The first chunk, then the rest once the test got the first one.
			w.Header().Set("trailer", "x-checksum")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "first;")
			w.(http.Flusher).Flush()
			select {
			case <-e.next:
			case <-e.released:
			}
			_, _ = io.WriteString(w, "second")
			w.Header().Set("x-checksum", "abc")
			return
		}
		v1.ServeHTTP(w, r)
	}))
	t.Cleanup(up1.Close)
	up2 := httptest.NewServer(demo.Upstream("v2"))
	t.Cleanup(up2.Close)
	gw, err := gateway.New(context.Background(), gateway.Config{
		Policy: policy(t), WasmDir: gatewaytest.WasmDir(t), Workers: 2, PerFilterModules: perFilter,
		Upstreams: []gateway.Upstream{{Name: "v1", Address: up1.Listener.Addr().String()}, {Name: "v2", Address: up2.Listener.Addr().String()}},
		AccessLog: e.log,
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e.gw, e.addr, e.url = gw, ln.Addr().String(), "http://"+ln.Addr().String()
	go func() { e.served <- gw.Serve(ln) }()
	t.Cleanup(func() {
		select {
		case <-e.released:
		default:
			close(e.released)
		}
		_ = gw.Shutdown(context.Background())
	})
	return e
}

func (e *env) do(t *testing.T, c *http.Client, method, path string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	require.NoError(t, err)
	req.Header.Set("x-api-key", key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func h2c() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

func TestGateway(t *testing.T) {
	e := start(t)
	c := &http.Client{}

	t.Run("auth, routing and headers over HTTP/1.1 and h2c", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			client   *http.Client
			hdr      []string
			status   int
			upstream string
			proto    int
		}{
			{"h1 default route", c, nil, 200, "v1", 1},
			{"h1 routed by the hint", c, []string{"x-beta", "1"}, 200, "v2", 1},
			{"h1 wrong key", c, []string{"x-api-key", "nope"}, 401, "", 1},
			{"h2c default route", h2c(), nil, 200, "v1", 2},
			{"h2c routed by the hint", h2c(), []string{"x-beta", "1"}, 200, "v2", 2},
			{"h2c wrong key", h2c(), []string{"x-api-key", "nope"}, 401, "", 2},
			// A client cannot pick the canary by sending the route header itself:
			// routehint strips it.
			{"forged route header", c, []string{"x-route-hint", "v2"}, 200, "v1", 1},
			// Headers the Connection header names are hop-by-hop: never seen by the
			// filters or forwarded.
			{"connection-named header", c, []string{"x-beta", "1", "connection", "x-beta"}, 200, "v1", 1},
			// Envoy's edge setting (headers_with_underscores_action: REJECT_REQUEST).
			{"underscore header", c, []string{"x_beta", "1"}, 400, "", 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, _ := e.do(t, tc.client, "GET", "/x", nil, tc.hdr...)
				assert.Equal(t, tc.status, resp.StatusCode)
				assert.Equal(t, tc.upstream, resp.Header.Get("x-upstream"))
				assert.Equal(t, tc.proto, resp.ProtoMajor)
			})
		}
		assert.Contains(t, e.log.String(), `GET /x 200 v2 v2 consumer="tester"`)
		assert.Contains(t, e.log.String(), `GET /x 401 - - consumer=""`)
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body := e.do(t, c, "HEAD", "/x", nil)
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "v1", resp.Header.Get("x-upstream"))
		assert.Empty(t, body)
	})

	t.Run("injected delay", func(t *testing.T) {
		t0 := time.Now()
		resp, _ := e.do(t, c, "GET", "/slow", nil, "x-envoy-fault-delay-request", "200")
		assert.Equal(t, 200, resp.StatusCode)
		assert.GreaterOrEqual(t, time.Since(t0), 200*time.Millisecond)
	})

	t.Run("multi-MB bodies both ways", func(t *testing.T) {
		body := make([]byte, 6<<20+123)
		_, _ = rand.Read(body)
		for _, cl := range []*http.Client{c, h2c()} {
			resp, got := e.do(t, cl, "POST", "/echo", body, "content-type", "application/octet-stream")
			require.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, len(body), len(got))
			assert.True(t, bytes.Equal(body, got), "body changed on the way")
		}
	})

	t.Run("concurrent clients", func(t *testing.T) {
		const clients, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan string, clients*each)
		for i := range clients {
			wg.Go(func() {
				cl := c
				if i%2 == 1 {
					cl = h2c()
				}
				for j := range each {
					hint := []string{}
					want := "v1"
					if j%2 == 0 {
						hint, want = []string{"x-beta", "1"}, "v2"
					}
					body := fmt.Appendf(nil, "client %d request %d", i, j)
					resp, got := e.do(t, cl, "POST", "/echo", body, hint...)
					if resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.Header.Get("x-upstream") != want {
						errs <- fmt.Sprintf("client %d request %d: %d %q from %q", i, j, resp.StatusCode, got, resp.Header.Get("x-upstream"))
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})

	t.Run("escaped slashes are redirected, dot segments removed", func(t *testing.T) {
		nc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest("GET", e.url+"/a%2Fb", nil)
		resp, err := nc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 307, resp.StatusCode)
		assert.Equal(t, "/a/b", resp.Header.Get("location"))
		conn, err := net.Dial("tcp", e.addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "GET /a/../b//c HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nConnection: close\r\n\r\n", key)
		require.NoError(t, err)
		raw, _ := io.ReadAll(conn)
		assert.Contains(t, string(raw), `"path":"/b/c"`)
	})
}

// Shutdown lets requests in flight finish and refuses new connections.
// Both module layouts serve the same chain: the bundle (one VM per worker, the
// default) and per-filter modules.
func TestGatewayModuleLayouts(t *testing.T) {
	for _, perFilter := range []bool{false, true} {
		t.Run(fmt.Sprintf("per-filter=%v", perFilter), func(t *testing.T) {
			e := startWith(t, perFilter)
			c := &http.Client{}
			resp, _ := e.do(t, c, "GET", "/", nil)
			assert.Equal(t, 200, resp.StatusCode, "a good key passes auth")
			resp, _ = e.do(t, c, "GET", "/", nil, "x-api-key", "wrong")
			assert.Equal(t, 401, resp.StatusCode, "a bad key does not")
		})
	}
}

func TestGatewayShutdownInFlight(t *testing.T) {
	e := start(t)
	type result struct {
		status int
		err    error
	}
	const n = 3
	results := make(chan result, n)
	for range n {
		go func() {
			req, _ := http.NewRequest("GET", e.url+"/block", nil)
			req.Header.Set("x-api-key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			resp.Body.Close()
			results <- result{status: resp.StatusCode}
		}()
	}
	for range n {
		<-e.arrived
	}
	shut := make(chan error, 1)
	go func() { shut <- e.gw.Shutdown(context.Background()) }()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", e.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "the listener must close")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with requests in flight", err)
	default:
	}
	close(e.released)
	for range n {
		r := <-results
		require.NoError(t, r.err)
		assert.Equal(t, 200, r.status)
	}
	assert.NoError(t, <-shut)
	assert.NoError(t, <-e.served)
}

func TestGatewayStartErrors(t *testing.T) {
	up := []gateway.Upstream{{Name: "v1", Address: "127.0.0.1:1"}}
	empty := t.TempDir()
	full := gatewaytest.WasmDir(t)
	bad := policy(t)
	bad.Spec.RateLimit.Rules[0].Limit.Requests = 0
	partial := t.TempDir()
	for _, f := range []string{"auth", "ratelimit", "fault"} {
		b, err := os.ReadFile(filepath.Join(full, f+".wasm"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(partial, f+".wasm"), b, 0o644))
	}
	noAuthzAddr, err := v1alpha1.Decode([]byte(`
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: jwks, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: e2e}]
  auth:
    ext_authz: {http_service: {cluster: authz}}
    default_rule: {requires: [ext_authz]}
`))
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		cfg  gateway.Config
		want []string
	}{
		{"missing wasm", gateway.Config{Policy: policy(t), WasmDir: empty, Upstreams: up},
			[]string{"spec.auth", filepath.Join(empty, "meshplug.wasm"), "make build"}},
		{"missing filter wasm", gateway.Config{Policy: policy(t), WasmDir: empty, Upstreams: up, PerFilterModules: true},
			[]string{"spec.auth", filepath.Join(empty, "auth.wasm"), "make build"}},
		{"one module missing", gateway.Config{Policy: policy(t), WasmDir: partial, Upstreams: up, PerFilterModules: true},
			[]string{"spec.routeHints", filepath.Join(partial, "routehint.wasm")}},
		{"bad policy", gateway.Config{Policy: bad, WasmDir: full, Upstreams: up},
			[]string{"rateLimit.rules[0].limit.requests"}},
		{"callout cluster without address", gateway.Config{Policy: noAuthzAddr, WasmDir: full, Upstreams: up},
			[]string{"spec.auth.ext_authz.http_service.cluster", "--cluster authz="}},
		{"no upstream", gateway.Config{Policy: policy(t), WasmDir: full}, []string{"no upstream"}},
		{"bad upstream", gateway.Config{Policy: policy(t), WasmDir: full, Upstreams: []gateway.Upstream{{Name: "v1", Address: "nope"}}},
			[]string{`upstream "v1"`, "host:port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gateway.New(context.Background(), tc.cfg)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

// Response bodies stream: the client gets the upstream's first chunk, through the
// chain, before the upstream sends the rest; trailers follow the body.
func TestGatewayStreamsResponses(t *testing.T) {
	e := start(t)
	for _, c := range []*http.Client{{}, h2c()} {
		req, err := http.NewRequest("GET", e.url+"/stream", nil)
		require.NoError(t, err)
		req.Header.Set("x-api-key", key)
		resp, err := c.Do(req)
		require.NoError(t, err)
		first := make(chan string, 1)
		go func() {
			b := make([]byte, len("first;"))
			_, _ = io.ReadFull(resp.Body, b)
			first <- string(b)
		}()
		select {
		case got := <-first:
			assert.Equal(t, "first;", got)
		case <-time.After(30 * time.Second): // a hang guard, not a measurement
			t.Fatal("the first chunk did not reach the client while the upstream waited")
		}
		e.next <- struct{}{}
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "second", string(rest))
		assert.Equal(t, "abc", resp.Trailer.Get("x-checksum"))
	}
}

// Request bodies stream: the upstream reads the first bytes of a multi-MB upload
// through the chain while the client has not sent the rest, on HTTP/1.1 (chunked) and
// h2c; the whole body arrives intact.
func TestGatewayStreamsRequests(t *testing.T) {
	e := start(t)
	body := make([]byte, 6<<20)
	_, err := rand.Read(body)
	require.NoError(t, err)
	sum := sha256.Sum256(body)
	for _, c := range []*http.Client{{}, h2c()} {
		pr, pw := io.Pipe()
		// A failing test ends the upload, so the gateway's shutdown does not wait on it.
		t.Cleanup(func() { _ = pw.CloseWithError(io.ErrUnexpectedEOF) })
		req, err := http.NewRequest("POST", e.url+"/upload", pr)
		require.NoError(t, err)
		req.Header.Set("x-api-key", key)
		type result struct {
			resp *http.Response
			err  error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := c.Do(req)
			res <- result{resp, err}
		}()
		half := len(body) / 2
		_, err = pw.Write(body[:half])
		require.NoError(t, err)
		select {
		case <-e.upFirst:
		case <-time.After(30 * time.Second): // a hang guard, not a measurement
			t.Fatal("the upstream got no byte while the client had sent half the body")
		}
		_, err = pw.Write(body[half:])
		require.NoError(t, err)
		require.NoError(t, pw.Close())
		r := <-res
		require.NoError(t, r.err)
		got, err := io.ReadAll(r.resp.Body)
		require.NoError(t, err)
		r.resp.Body.Close()
		assert.Equal(t, 200, r.resp.StatusCode, string(got))
		assert.Equal(t, fmt.Sprintf("%d %x", len(body), sum), string(got))
	}
}

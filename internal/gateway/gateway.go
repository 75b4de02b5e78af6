// Package gateway is the local gateway of `meshplug run`: a real HTTP/1.1 and h2c
// listener that runs every request through a TrafficPolicy's filter chain on testenv's
// embedded proxy-wasm host (a pool of worker VMs per filter, the same .wasm files Envoy
// loads, configured with the bytes the renderers give Envoy), then proxies it to the
// upstream that testenv's router picks from the policy's route hints.
//
// # Envoy at the edge
//
// The gateway behaves as Envoy with the envoy.yaml meshplug renders
// (envoyfilters.EdgeConnectionManager, read at start, and Envoy's defaults for what
// it leaves unset), so what a policy does locally is what it does behind Envoy:
//
//   - Path: normalize_path, merge_slashes and path_with_escaped_slashes_action
//     UNESCAPE_AND_REDIRECT, exactly as Envoy's connection manager applies them before
//     any filter (package internal/envoypath): `/%61dmin`, `/public/%2e%2e/admin` and
//     `/public\..\admin` reach the filters as `/admin`; escaped slashes are redirected
//     (307) to the finished path, never to another host; a fragment or an escaped NUL
//     gets 400; HTTP/1.0 gets 426 (accept_http_10 off); a target that is not a path
//     (`OPTIONS *`) 404; an absolute-form target is reduced to its path first.
//   - Forwarding: the upstream request line carries the `:path` the filters left,
//     byte for byte (nothing is re-encoded), with its query as sent.
//   - Headers: more than 100 headers (max_headers_count) or more than 60 KiB of them
//     (max_request_headers_kb) get 431 on HTTP/1.1 and a reset stream on HTTP/2, as
//     does a header name with an underscore (400 on HTTP/1.1); hop-by-hop headers are
//     dropped; with use_remote_address the peer is appended to x-forwarded-for (a
//     loopback peer as the machine's first non-loopback IPv4 address, Envoy's local
//     address), x-forwarded-proto is overwritten, x-envoy-internal and the other
//     internal-only x-envoy-* headers are removed, x-envoy-external-address and
//     x-request-id are set, and the router adds x-envoy-expected-rq-timeout-ms.
//   - Bodies stream both ways: each read from the client (at most Config.ChunkSize
//     bytes) goes through the filters' request body callbacks as it arrives and on to
//     the upstream as it leaves the chain (Envoy's decodeData path); each read from the
//     upstream goes through the filters and out to the client likewise. A filter that
//     buffers a body beyond Config.BufferLimitBytes (per_connection_buffer_limit_bytes,
//     1 MiB) gets 413 (request) or 500 (response).
//   - Flow control: each direction of a stream holds at most Config.BufferLimitBytes
//     (plus one read) of body read from one side and not yet taken by the other; the
//     gateway stops reading that side until the other catches up, so a client that
//     does not read a large response, or an upstream that does not read an upload,
//     costs a bounded amount of memory.
//   - Timeouts: the route timeout (Config.UpstreamTimeout, 15 s) counts from the end
//     of the request and covers the whole response (504 before the response headers,
//     a reset after); the stream idle timeout (Config.StreamIdleTimeout, 5 min) answers
//     a stream on which nothing moved with 408 (request still coming, e.g. a stalled
//     upload) or 504, or resets it once the response started.
//
// # Where the gateway still differs from Envoy
//
//   - Go's HTTP servers parse the request before the gateway sees it: an invalid
//     percent escape (`/%zz`) gets 400 from Go's HTTP/1.1 server and a PROTOCOL_ERROR
//     from its HTTP/2 server, where Envoy passes it on; a CONNECT request is Go's.
//     Framing is Go's too, which agrees with Envoy's defaults on two different
//     Content-Length values (400), an unsupported transfer coding (501) and a missing
//     Host (400), but accepts Content-Length together with Transfer-Encoding: chunked
//     (it drops Content-Length) where Envoy answers 400 (allow_chunked_length off).
//   - The header block of a request is bounded by the stream idle timeout through Go's
//     server timeouts: HTTP/1.1 ReadHeaderTimeout, and for HTTP/2 the idle timeout of a
//     connection without open streams (a header block that never ends on a connection
//     that has other open streams is not cut). The same idle timeout closes idle
//     keep-alive connections (Envoy's idle_timeout: 1 hour). The connection is closed
//     without a 408.
//   - No request is internal (Envoy's default without internal_address_config), so
//     x-envoy-internal is never set.
//   - Normalization follows the Chromium snapshot Envoy forked (unreserved escapes
//     decoded), see package envoypath.
//   - Flow control counts body bytes read and written; a filter that changes the size
//     of a streamed body skews the count (none of meshplug's filters does).
//   - An HTTP/2 request with `content-length: 0` is taken as ended with its headers:
//     trailers that would follow are not seen.
//   - An upstream answer that comes before the request body ended waits for its end;
//     upstreams are plain HTTP/1.1 (request bodies go chunked); there are no retries
//     and no access-log format of Envoy's.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/configjson"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/testenv"
)

// Upstream is one upstream cluster the gateway proxies to.
type Upstream struct {
	Name    string // cluster name; a route hint target of the same name routes to it
	Address string // host:port (plain HTTP/1.1)
}

// Config configures a Gateway.
type Config struct {
	Policy *v1alpha1.TrafficPolicy
	// WasmDir holds the bundle meshplug.wasm, or with PerFilterModules <filter>.wasm
	// for each section of the policy ("build").
	WasmDir string
	// PerFilterModules runs each filter from its own <filter>.wasm in a VM of its own
	// instead of every filter from the bundle in one VM per worker.
	PerFilterModules bool
	// Upstreams: the first is the default route; the others are reached through the
	// route hint targets of the same name (their headers become the route's header
	// matchers). At least one.
	Upstreams []Upstream
	// Clusters gives callout clusters (JWKS endpoints, ext_authz) their host:port; a
	// cluster not given here takes the host:port of the URL the policy gives it.
	Clusters map[string]string
	// Workers is the number of worker VMs per filter (Envoy's --concurrency); default
	// the number of CPUs.
	Workers int
	// ChunkSize cuts request and response bodies into body callbacks of this many
	// bytes; default 64 KiB.
	ChunkSize int
	// BufferLimitBytes is Envoy's per_connection_buffer_limit_bytes (default 1 MiB):
	// the buffer limit of the filters (a body a filter buffers beyond it gets 413 for
	// a request, 500 for a response) and the flow-control window of each direction of
	// a stream (body bytes read from one side and not yet taken by the other; the
	// gateway stops reading from that side while they are over it).
	BufferLimitBytes int
	// MaxBodyBytes, if > 0, caps request and response bodies (Envoy has no such cap:
	// 0, the default, is none). A larger request body resets the stream (413 if no
	// response started yet), a larger upstream response resets it too.
	MaxBodyBytes int64
	// UpstreamTimeout is the route timeout (Envoy's default: 15 s), counted from the
	// end of the request and covering the whole response: an upstream that has not
	// answered by then gets a 504, one still sending its body is reset.
	UpstreamTimeout time.Duration
	// StreamIdleTimeout is the HCM's stream_idle_timeout (default: the rendered
	// envoy.yaml's, Envoy's 5 minutes): a stream on which nothing moved for that long
	// gets a 408 (request still coming) or 504 (response not started), or is reset.
	// It also bounds an idle connection and a request header block that takes so
	// long (see the package doc).
	StreamIdleTimeout time.Duration
	// AccessLog receives one line per request; nil: none.
	AccessLog io.Writer
	// LogWriter receives the filters' log lines (warnings and above); nil: none.
	LogWriter io.Writer
	// OnDecision is called after each request (for the live view); may be nil.
	OnDecision func(Decision)
}

// Decision is what happened to one request, as the access log line says.
type Decision struct {
	Time       time.Time
	Method     string
	Path       string
	Status     int
	Consumer   string // x-consumer as the filters left it (auth sets it; "" for none)
	Route      string
	Cluster    string
	LocalReply string // response code details of a local reply ("" for none)
	Duration   time.Duration
}

// Gateway serves HTTP through the policy's filter chain.
type Gateway struct {
	cfg       Config
	host      *testenv.Host
	transport *http.Transport
	upstreams map[string]string
	srv       *http.Server
	log       *log.Logger
	edge      edge
}

// Defaults of Config.
const (
	DefaultChunkSize       = 64 << 10
	DefaultUpstreamTimeout = 15 * time.Second
)

// New loads the policy's filters into an embedded host. Errors name the policy field
// or the file that is wrong.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Policy == nil {
		return nil, errors.New("no policy")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("no upstream: give at least one (--upstream NAME=HOST:PORT)")
	}
	if cfg.WasmDir == "" {
		cfg.WasmDir = "build"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.BufferLimitBytes <= 0 {
		cfg.BufferLimitBytes = DefaultBufferLimitBytes
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	e := renderedEdge()
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = e.streamIdle
	}
	e.streamIdle = cfg.StreamIdleTimeout
	plugins, err := envoyfilters.PluginConfigs(cfg.Policy)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, upstreams: map[string]string{}, edge: e}
	for _, u := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(u.Address); err != nil || u.Name == "" {
			return nil, fmt.Errorf("upstream %q: address %q is not host:port", u.Name, u.Address)
		}
		if _, dup := g.upstreams[u.Name]; dup {
			return nil, fmt.Errorf("upstream %q given twice", u.Name)
		}
		g.upstreams[u.Name] = u.Address
	}
	clusters := map[string]string{}
	var chain []testenv.Plugin
	for _, pc := range plugins {
		// The bundle by default, as the renderings: one module and one VM per worker,
		// the filter selected by its root id.
		module, vmID := envoyfilters.BundleModule, envoyfilters.BundleVMID
		if cfg.PerFilterModules {
			module, vmID = pc.Section.Filter+".wasm", pc.Section.Filter
		}
		file := filepath.Join(cfg.WasmDir, module)
		wasm, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.%s needs the module %s: %v (run `make build`, or point --wasm-dir at the directory holding it)",
				cfg.Policy, pc.Section.Field, file, err)
		}
		for _, c := range pc.Section.Callouts(pc.Spec) {
			addr, err := calloutAddress(c, cfg.Clusters)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", cfg.Policy, configjson.Errorf("spec."+pc.Section.Field+"."+c.Path, "%v", err))
			}
			clusters[c.Cluster] = addr
		}
		fp := testenv.FailClosed
		if pc.Section.FailOpen {
			fp = testenv.FailOpen
		}
		chain = append(chain, testenv.Plugin{
			Name: "meshplug." + pc.Section.Filter, RootID: pc.Section.Filter, VMID: vmID,
			Wasm: wasm, Config: pc.JSON, FailurePolicy: fp,
		})
	}
	routes, err := g.routes()
	if err != nil {
		return nil, err
	}
	g.transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	if cfg.AccessLog != nil {
		g.log = log.New(cfg.AccessLog, "", 0)
	}
	h, err := testenv.New(ctx, testenv.Options{
		Workers:           cfg.Workers,
		Clusters:          clusters,
		Routes:            routes,
		AsyncUpstream:     g.proxy,
		RequestChunkSize:  cfg.ChunkSize,
		ResponseChunkSize: cfg.ChunkSize,
		BufferLimitBytes:  cfg.BufferLimitBytes,
		LogRequestHeaders: []string{"x-consumer"},
		LogWriter:         cfg.LogWriter,
		// Kept log lines grow without bound in a long-running gateway: keep errors only
		// in memory, the writer gets the same lines.
		LogLevel: abi.LogError,
	}, chain...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Policy, err)
	}
	g.host = h
	g.srv = &http.Server{
		Handler: g,
		// Envoy's stream idle timer runs from a request's first byte (HTTP/1.1) and
		// closes idle connections (HTTP/2: also one whose header block never ends).
		ReadHeaderTimeout: cfg.StreamIdleTimeout,
		IdleTimeout:       cfg.StreamIdleTimeout,
		// Room above Envoy's header limit so that the handler can apply it exactly.
		MaxHeaderBytes: e.maxHeaderBytes + 64<<10,
		// `OPTIONS *` goes to the handler (Envoy: 404), not Go's built-in answer.
		DisableGeneralOptionsHandler: true,
	}
	g.srv.Protocols = new(http.Protocols)
	g.srv.Protocols.SetHTTP1(true)
	g.srv.Protocols.SetUnencryptedHTTP2(true)
	return g, nil
}

// routes: a route per route hint target whose name is an upstream (matching the
// target's headers), then the default route to the first upstream.
func (g *Gateway) routes() ([]testenv.Route, error) {
	var routes []testenv.Route
	if rh := g.cfg.Policy.Spec.RouteHints; rh != nil {
		routes = hintRoutes(rh, g.upstreams)
	}
	def := g.cfg.Upstreams[0].Name
	return append(routes, testenv.Route{Name: "default", Cluster: def, Match: testenv.RouteMatch{Prefix: "/"}}), nil
}

func hintRoutes(rh *routehintconfig.Spec, upstreams map[string]string) []testenv.Route {
	var routes []testenv.Route
	for _, t := range rh.Targets {
		if _, ok := upstreams[t.Name]; !ok || len(t.Headers) == 0 {
			continue
		}
		names := make([]string, 0, len(t.Headers))
		for n := range t.Headers {
			names = append(names, n)
		}
		sort.Strings(names)
		r := testenv.Route{Name: t.Name, Cluster: t.Name, Match: testenv.RouteMatch{Prefix: "/"}}
		for _, n := range names {
			r.Match.Headers = append(r.Match.Headers, testenv.HeaderMatcher{Name: n, Exact: t.Headers[n]})
		}
		routes = append(routes, r)
	}
	return routes
}

// CalloutAddress is the host:port the gateway sends a callout cluster's requests to:
// given (Config.Clusters, --cluster), or from the cluster's URL.
func CalloutAddress(c v1alpha1.Callout, given map[string]string) (string, error) {
	return calloutAddress(c, given)
}

// calloutAddress is the host:port of a callout cluster: given, or from its URL.
func calloutAddress(c v1alpha1.Callout, given map[string]string) (string, error) {
	if a, ok := given[c.Cluster]; ok {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", fmt.Errorf("cluster %q: address %q is not host:port", c.Cluster, a)
		}
		return a, nil
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err == nil && u.Host != "" {
			if u.Port() != "" {
				return u.Host, nil
			}
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			return net.JoinHostPort(u.Hostname(), port), nil
		}
	}
	return "", fmt.Errorf("cluster %q has no address: give one with --cluster %s=HOST:PORT", c.Cluster, c.Cluster)
}

// Host is the embedded proxy-wasm host (metrics, logs).
func (g *Gateway) Host() *testenv.Host { return g.host }

// Serve accepts HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge) connections on
// ln until Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	err := g.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets the requests in flight finish (or ctx
// end), then closes the host.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	g.transport.CloseIdleConnections()
	return errors.Join(err, g.host.Close(ctx))
}

// ServeHTTP runs one request through the chain and writes what comes out, in the
// steps of Envoy's connection manager: decode the request (the edge checks and
// rewrites of the rendered envoy.yaml, or a local reply), run the stream (the body
// pumped in and the response streamed out under flow control and the stream idle
// timeout), then end it (trailers, a reset, or the answer to a timeout).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, lr := g.decode(r)
	if lr != nil {
		g.record(start, r, req.Path, &testenv.Response{Status: lr.status, LocalReply: true, Details: lr.details, Reset: lr.reset})
		writeLocalReply(w, lr)
		return
	}
	x := g.newExchange(w, r)
	defer x.end()
	req.Tag = x
	resp, out := g.run(w, r, req, x)
	// The stream ended: whether it timed out is decided now, once (a timer going off
	// while the answer is written is no timeout), and the timer is done with w.
	timedOut := x.idle.stop()
	if timedOut && !out.wrote {
		resp = &testenv.Response{Status: x.idleStatus(r.Body), LocalReply: true, Details: "stream_idle_timeout", Route: resp.Route, Cluster: resp.Cluster}
	}
	g.record(start, r, req.Path, resp)
	g.finish(w, resp, out, timedOut, x)
}

// decode is the connection manager's work before the filters: the request's path
// (edge.requestPath) and headers (edge.requestHeaders), or its answer.
func (g *Gateway) decode(r *http.Request) (testenv.Request, *localReply) {
	req := testenv.Request{Method: r.Method, Authority: r.Host, Scheme: "http", SourceAddress: r.RemoteAddr, Worker: -1}
	var lr *localReply
	if req.Path, lr = g.edge.requestPath(r); lr != nil {
		return req, lr
	}
	if req.Headers, lr = g.edge.requestHeaders(r); lr != nil {
		return req, lr
	}
	// Go's HTTP/2 server gives every request a body, empty (ContentLength 0) when
	// its headers ended the stream: that request has none, as on HTTP/1.1 (NoBody)
	// and as Envoy's codec says (end_stream on the headers), and goes upstream
	// without one.
	req.OpenBody = r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	return req, nil
}

// exchange is the gateway's state of one stream, shared by the handler, the request
// body pump and the upstream call (testenv.Request.Tag).
type exchange struct {
	ctx      context.Context // ends with the stream: cancels the upstream request
	cancel   context.CancelFunc
	reqWin   *window // client → upstream
	respWin  *window // upstream → client
	idle     *streamIdle
	reqEnded atomic.Bool   // the whole request went into the chain
	pumped   chan struct{} // closed when pumpBody returned; nil: no body to pump
	tooBig   atomic.Bool   // the request body went over Config.MaxBodyBytes
}

func (g *Gateway) newExchange(w http.ResponseWriter, r *http.Request) *exchange {
	x := &exchange{reqWin: newWindow(g.cfg.BufferLimitBytes), respWin: newWindow(g.cfg.BufferLimitBytes)}
	x.ctx, x.cancel = context.WithCancel(context.Background())
	x.idle = newStreamIdle(g.cfg.StreamIdleTimeout, http.NewResponseController(w), x)
	return x
}

// end ends the stream before the handler returns; after it nothing touches the
// handler's ResponseWriter.
func (x *exchange) end() {
	x.idle.stop()
	x.reqWin.close()
	x.respWin.close()
	x.cancel()
}

// idleStatus is Envoy's answer to a stream idle timeout before the response started:
// 408 while the request was still coming, 504 after. Whether it was is sure only
// once the body pump returned (it may not even have run yet: an HTTP/2 request has
// a body to read even when its headers ended the stream); the timeout's read
// deadline makes that quick. What arrived and the pump did not read is read now,
// to see whether the end of the request came with it.
func (x *exchange) idleStatus(body io.Reader) int {
	if x.pumped != nil {
		<-x.pumped
		if _, err := io.Copy(io.Discard, body); err == nil {
			x.reqEnded.Store(true)
		}
	}
	if x.reqEnded.Load() {
		return http.StatusGatewayTimeout
	}
	return http.StatusRequestTimeout
}

// streamIdle is the stream idle timeout of one stream: when it fires the handler
// resets the stream; a handler blocked writing to a client that does not read, or a
// pump blocked reading a client that does not send, is woken by a deadline.
//
// The deadlines are set from the timer's goroutine, which is safe only while the
// handler runs (HTTP/2's writer is gone once it returned, and HTTP/1.1's deadline
// would cut the next request on the connection): the handler stops the timer before
// it returns, and stop waits for the callback. That wait is short because the
// deadline is in the past and setting it never waits for the handler: HTTP/1.1 sets
// the socket's deadline, HTTP/2 closes the stream's request body pipe (read) or
// queues a RST_STREAM to the connection's serve loop (write), which takes it at once
// or has ended. (The read deadline is the one tool for both protocols: closing the
// request body instead would, on HTTP/1.1, wait for the blocked read itself.)
type streamIdle struct {
	*idleTimer
	wrote atomic.Bool // response headers went out
}

// pastDeadline is a deadline HTTP/2's writer surely finds before its own time.Now,
// so that it acts at once instead of arming a timer through the serve loop (which
// time.Now, read a moment earlier, could still equal).
var pastDeadline = time.Unix(1, 0)

func newStreamIdle(d time.Duration, rc *http.ResponseController, x *exchange) *streamIdle {
	si := &streamIdle{}
	si.idleTimer = newIdleTimer(d, func() {
		_ = rc.SetReadDeadline(pastDeadline)
		if si.wrote.Load() {
			_ = rc.SetWriteDeadline(pastDeadline)
		}
		x.reqWin.close()
		x.respWin.close()
	})
	return si
}

func (si *streamIdle) timedOut() bool {
	select {
	case <-si.fired:
		return true
	default:
		return false
	}
}

// output is what the handler wrote of the response.
type output struct {
	wrote, gone bool
	trailers    testenv.Headers
}

// run starts the stream, pumps the request body into it and writes the response out
// as its frames pass the chain, until the stream ends. A client that goes away resets
// the stream (Envoy's downstream reset), as does the stream idle timeout.
func (g *Gateway) run(w http.ResponseWriter, r *http.Request, req testenv.Request, x *exchange) (*testenv.Response, output) {
	q := &frameQueue{signal: make(chan struct{}, 1)}
	req.OnResponseFrame = q.push
	s := g.host.Start(req)
	if req.OpenBody {
		// The response may start (a local reply) while the client still sends.
		_ = http.NewResponseController(w).EnableFullDuplex()
		x.pumped = make(chan struct{})
		go func() {
			defer close(x.pumped)
			g.pumpBody(r, s, x)
		}()
	} else {
		x.reqEnded.Store(true)
	}
	done := make(chan struct{})
	var resp *testenv.Response
	go func() {
		resp, _ = s.Wait(context.Background()) // never fails without a deadline
		close(done)
	}()
	flusher, _ := w.(http.Flusher)
	var out output
	clientGone, idle := r.Context().Done(), x.idle.fired
	for finished := false; !finished; {
		select {
		case <-q.signal:
		case <-done:
			finished = true
		case <-clientGone:
			clientGone = nil
			if x.idle.timedOut() {
				continue // our own read deadline cancelled the request's context
			}
			out.gone = true
			s.Reset()
		case <-idle:
			idle = nil
			s.Reset()
		}
		frames := q.take()
		if out.gone {
			continue
		}
		for _, f := range frames {
			if f.Headers != nil {
				g.writeHeaders(w, f.Headers)
				out.wrote = true
				x.idle.wrote.Store(true)
			}
			if len(f.Data) > 0 {
				_, _ = w.Write(f.Data)
				x.respWin.sub(len(f.Data))
			}
			if f.Trailers != nil {
				out.trailers = f.Trailers
			}
			x.idle.touch()
		}
		if out.wrote && len(frames) > 0 && flusher != nil && !finished {
			flusher.Flush()
		}
	}
	return resp, out
}

// finish ends the response: nothing for a client that left, the answer to a stream
// idle timeout or an oversized upload, a reset, the local reply that never went
// through the response callbacks, or the trailers.
func (g *Gateway) finish(w http.ResponseWriter, resp *testenv.Response, out output, timedOut bool, x *exchange) {
	switch {
	case out.gone:
		panic(http.ErrAbortHandler) // not Go's default answer to a client that left
	case timedOut && !out.wrote:
		writeLocalReply(w, &localReply{status: resp.Status})
		return
	case resp.Reset && x.tooBig.Load() && !out.wrote:
		writeLocalReply(w, &localReply{status: http.StatusRequestEntityTooLarge})
		return
	case resp.Reset || timedOut:
		panic(http.ErrAbortHandler) // reset the client's stream, as Envoy does
	}
	trailers := out.trailers
	if !out.wrote {
		// A local reply that never went through the response callbacks.
		g.writeHeaders(w, resp.Headers)
		_, _ = w.Write(resp.Body)
		trailers = resp.Trailers
	}
	for _, p := range trailers {
		w.Header().Add(http.TrailerPrefix+p.Key, p.Value)
	}
}

// pumpBody streams the client's request body into s as it is read, each read (at
// most ChunkSize bytes) one chunk through the body callbacks, as Envoy's codec hands
// each decoded piece of the body to the filter manager (ActiveStream::decodeData):
// end_of_stream on the chunk that completes a known Content-Length, else on an empty
// chunk at the end (HTTP/1.1 chunked, HTTP/2 END_STREAM), or with the trailers. It
// reads only while the request's flow-control window has room. A body over
// MaxBodyBytes (if set) resets the stream (the client gets 413 if no response went
// out yet); a client that stops sending mid-body resets it too.
func (g *Gateway) pumpBody(r *http.Request, s *testenv.Stream, x *exchange) {
	var total int64
	for !s.Done() { // a local reply ended it: the rest of the upload is not wanted
		if !x.reqWin.wait() {
			return
		}
		buf := make([]byte, g.cfg.ChunkSize) // handed to the stream: a new one each read
		n, err := r.Body.Read(buf)
		total += int64(n)
		x.idle.touch()
		if g.cfg.MaxBodyBytes > 0 && total > g.cfg.MaxBodyBytes {
			x.tooBig.Store(true)
			s.Reset()
			return
		}
		if n > 0 {
			last := err == io.EOF && len(r.Trailer) == 0 || r.ContentLength >= 0 && total == r.ContentLength
			x.reqWin.add(n)
			if last {
				x.reqEnded.Store(true)
			}
			s.Data(buf[:n], last)
			if last {
				return
			}
		}
		if err == io.EOF {
			x.reqEnded.Store(true)
			var ts [][2]string
			for k, vs := range r.Trailer {
				for _, v := range vs {
					ts = append(ts, [2]string{strings.ToLower(k), v})
				}
			}
			if len(ts) > 0 {
				s.Trailers(ts)
			} else {
				s.Data(nil, true)
			}
			return
		}
		if err != nil {
			s.Reset()
			return
		}
	}
}

func (g *Gateway) writeHeaders(w http.ResponseWriter, h testenv.Headers) {
	hdr := w.Header()
	status := 200
	for _, p := range h {
		if p.Key == ":status" {
			status, _ = strconv.Atoi(p.Value)
			continue
		}
		if strings.HasPrefix(p.Key, ":") || hopByHop[p.Key] {
			continue
		}
		hdr.Add(p.Key, p.Value)
	}
	w.WriteHeader(status)
}

// frameQueue carries response frames from the stream's worker (which must not block)
// to the handler's goroutine.
type frameQueue struct {
	mu     sync.Mutex
	frames []testenv.ResponseFrame
	signal chan struct{}
}

func (q *frameQueue) push(f testenv.ResponseFrame) {
	if f.Headers != nil {
		f.Headers = append(testenv.Headers(nil), f.Headers...)
	}
	if f.Trailers != nil {
		f.Trailers = append(testenv.Headers(nil), f.Trailers...)
	}
	if len(f.Data) > 0 {
		f.Data = append([]byte(nil), f.Data...)
	}
	q.mu.Lock()
	q.frames = append(q.frames, f)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *frameQueue) take() []testenv.ResponseFrame {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.frames
	q.frames = nil
	return f
}

// record writes the access log line and reports the decision.
func (g *Gateway) record(start time.Time, r *http.Request, path string, resp *testenv.Response) {
	d := Decision{Time: start, Method: r.Method, Path: path, Status: resp.Status, Route: resp.Route,
		Cluster: resp.Cluster, Duration: time.Since(start)}
	if resp.LocalReply {
		d.LocalReply = resp.Details
		if d.LocalReply == "" {
			d.LocalReply = "local_reply"
		}
	}
	if resp.Reset {
		d.LocalReply = "reset"
	}
	d.Consumer, _ = resp.LoggedHeaders.Get("x-consumer")
	if g.log != nil {
		g.log.Printf("%s %q %s %s %d %s %s consumer=%q local=%q %dms",
			start.UTC().Format(time.RFC3339Nano), r.RemoteAddr, r.Method, path, d.Status, or(d.Route, "-"), or(d.Cluster, "-"),
			d.Consumer, d.LocalReply, d.Duration.Milliseconds())
	}
	if g.cfg.OnDecision != nil {
		g.cfg.OnDecision(d)
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

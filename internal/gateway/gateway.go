// Package gateway is the local gateway of `meshplug run`: a real HTTP/1.1 and h2c
// listener that runs every request through a TrafficPolicy's filter chain on testenv's
// embedded proxy-wasm host (a pool of worker VMs per filter, the same .wasm files Envoy
// loads, configured with the bytes the renderers give Envoy), then proxies it to the
// upstream that testenv's router picks from the policy's route hints.
//
// Bodies stream both ways: each read from the client (at most Config.ChunkSize bytes)
// goes through the filters' request body callbacks as it arrives and on to the
// upstream as it leaves the chain, so the upstream starts receiving before the client
// finished sending (Envoy's decodeData path; a filter that pauses its headers holds
// the chunks, one that buffers its body more than Config.MaxBodyBytes gets a 413);
// each read from the upstream goes through the filters and out to the client likewise.
//
// Caveats, compared with Envoy in front of the same upstreams: there is no
// back-pressure (chunks a paused filter or a slow upstream has not taken yet queue in
// memory, up to Config.MaxBodyBytes per request); an upstream answer that comes before
// the request body ended waits for its end; upstreams are plain HTTP/1.1 (request
// bodies go chunked); there are no retries, no x-request-id and no
// x-forwarded-* headers.
package gateway

import (
	"bytes"
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
	// WasmDir holds <filter>.wasm for each section of the policy ("build").
	WasmDir string
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
	// MaxBodyBytes caps request and response bodies, and is the filters' buffer limit;
	// default 64 MiB. A larger request body resets the stream (413 if no response
	// started yet), a larger upstream response 502.
	MaxBodyBytes int64
	// UpstreamTimeout is the route timeout (Envoy's default: 15 s): an upstream that has
	// not answered by then gets a 504.
	UpstreamTimeout time.Duration
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
}

// Defaults of Config.
const (
	DefaultChunkSize       = 64 << 10
	DefaultMaxBodyBytes    = 64 << 20
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
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	plugins, err := envoyfilters.PluginConfigs(cfg.Policy)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, upstreams: map[string]string{}}
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
		file := filepath.Join(cfg.WasmDir, pc.Section.Filter+".wasm")
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
			Name: "meshplug." + pc.Section.Filter, VMID: pc.Section.Filter,
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
		BufferLimitBytes:  int(cfg.MaxBodyBytes),
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
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
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

// hopByHop are connection-specific headers that a proxy never forwards (RFC 9110
// 7.6.1; Envoy's codecs drop them, ConnectionManagerUtility::mutateRequestHeaders).
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true, "content-length": true, "host": true,
}

// ServeHTTP runs one request through the chain and writes what comes out.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path, redirect := normalizePath(r.RequestURI)
	if r.RequestURI == "" || r.RequestURI == "*" || !strings.HasPrefix(r.RequestURI, "/") {
		http.Error(w, "bad request target", http.StatusBadRequest)
		return
	}
	if redirect {
		// Envoy's path_with_escaped_slashes_action UNESCAPE_AND_REDIRECT.
		w.Header().Set("location", path)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	req := testenv.Request{
		Method: r.Method, Path: path, Authority: r.Host, Scheme: "http",
		SourceAddress: r.RemoteAddr, Worker: -1,
	}
	// Headers the Connection header names are hop-by-hop too (RFC 9110 7.6.1).
	named := map[string]bool{}
	for _, v := range r.Header.Values("Connection") {
		for _, n := range strings.Split(v, ",") {
			named[strings.ToLower(strings.TrimSpace(n))] = true
		}
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		if strings.Contains(k, "_") {
			// The edge setting the envoy.yaml rendering uses (headers_with_underscores_action
			// REJECT_REQUEST): x_consumer must not slip past filters that match x-consumer.
			http.Error(w, "header names with underscores are not accepted", http.StatusBadRequest)
			return
		}
		names = append(names, k)
	}
	sort.Strings(names) // Go's header map has no order: a stable one for the filters
	for _, k := range names {
		vs := r.Header[k]
		lk := strings.ToLower(k)
		if hopByHop[lk] || named[lk] {
			continue
		}
		for _, v := range vs {
			req.Headers = append(req.Headers, [2]string{lk, v})
		}
	}
	streamBody := r.Body != nil && r.Body != http.NoBody
	req.OpenBody = streamBody
	q := &frameQueue{signal: make(chan struct{}, 1)}
	req.OnResponseFrame = q.push
	s := g.host.Start(req)
	var tooBig atomic.Bool
	if streamBody {
		// The response may start (a local reply) while the client still sends.
		_ = http.NewResponseController(w).EnableFullDuplex()
		go g.pumpBody(r, s, &tooBig)
	}
	done := make(chan struct{})
	var resp *testenv.Response
	go func() {
		resp, _ = s.Wait(context.Background()) // never fails without a deadline
		close(done)
	}()
	// Stream the response out as its frames pass the chain. A client that goes away
	// resets the stream (Envoy's downstream reset); it then ends at once.
	flusher, _ := w.(http.Flusher)
	wrote, gone := false, false
	clientGone := r.Context().Done()
	var trailers testenv.Headers
	for finished := false; !finished; {
		select {
		case <-q.signal:
		case <-done:
			finished = true
		case <-clientGone:
			gone, clientGone = true, nil
			s.Reset()
		}
		frames := q.take()
		if gone {
			continue
		}
		for _, f := range frames {
			if f.Headers != nil {
				g.writeHeaders(w, f.Headers)
				wrote = true
			}
			if len(f.Data) > 0 {
				_, _ = w.Write(f.Data)
			}
			if f.Trailers != nil {
				trailers = f.Trailers
			}
		}
		if wrote && len(frames) > 0 && flusher != nil && !finished {
			flusher.Flush()
		}
	}
	g.record(start, r, path, resp)
	if gone {
		return
	}
	if resp.Reset && tooBig.Load() && !wrote {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	}
	if resp.Reset {
		panic(http.ErrAbortHandler) // reset the client's stream, as Envoy does
	}
	if !wrote {
		// A local reply that never went through the response callbacks.
		g.writeHeaders(w, resp.Headers)
		_, _ = w.Write(resp.Body)
		trailers = resp.Trailers
	}
	for _, p := range trailers {
		w.Header().Add(http.TrailerPrefix+p.Key, p.Value)
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

// proxy is the router's upstream call: a real HTTP/1.1 request to the cluster the
// pumpBody streams the client's request body into s as it is read, each read (at
// most ChunkSize bytes) one chunk through the body callbacks, as Envoy's codec hands
// each decoded piece of the body to the filter manager (ActiveStream::decodeData):
// end_of_stream on the chunk that completes a known Content-Length, else on an empty
// chunk at the end (HTTP/1.1 chunked, HTTP/2 END_STREAM), or with the trailers. A
// body over MaxBodyBytes resets the stream (the client gets 413 if no response went
// out yet); a client that stops sending mid-body resets it too.
func (g *Gateway) pumpBody(r *http.Request, s *testenv.Stream, tooBig *atomic.Bool) {
	var total int64
	for !s.Done() { // a local reply ended it: the rest of the upload is not wanted
		buf := make([]byte, g.cfg.ChunkSize) // handed to the stream: a new one each read
		n, err := r.Body.Read(buf)
		total += int64(n)
		if total > g.cfg.MaxBodyBytes {
			tooBig.Store(true)
			s.Reset()
			return
		}
		if n > 0 {
			last := err == io.EOF && len(r.Trailer) == 0 || r.ContentLength >= 0 && total == r.ContentLength
			s.Data(buf[:n], last)
			if last {
				return
			}
		}
		if err == io.EOF {
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

// route picked, whose response goes into the chain as it is read: the headers, then
// each read of the body as a chunk of at most ChunkSize (as Envoy's codec hands over
// what each socket read decoded), then the trailers. A connection failure is Envoy's
// 503 ("upstream connect error or disconnect/reset before headers"), no response
// within the route timeout its 504 ("upstream request timeout"); a body cut short or
// over MaxBodyBytes resets the stream.
func (g *Gateway) proxy(ur *testenv.UpstreamRequest, uw *testenv.UpstreamWriter) {
	addr, ok := g.upstreams[ur.Cluster]
	if !ok {
		uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: []byte("no healthy upstream")})
		return
	}
	// ur belongs to the stream: copy what the goroutine needs before returning.
	method, path, authority := ur.Method, ur.Path, ur.Authority
	headers := append(testenv.Headers(nil), ur.Headers...)
	var body io.Reader
	if ur.BodyReader != nil {
		body = ur.BodyReader // the request body as it leaves the chain
	} else if ur.Body != nil {
		body = bytes.NewReader(ur.Body)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.UpstreamTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
		if err != nil {
			uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: []byte("upstream connect error or disconnect/reset before headers")})
			return
		}
		req.Host = authority
		for _, p := range headers {
			if !hopByHop[p.Key] {
				req.Header.Add(p.Key, p.Value)
			}
		}
		res, err := g.transport.RoundTrip(req)
		if err != nil {
			if ctx.Err() != nil {
				uw.Respond(&testenv.UpstreamResponse{Status: 504, Body: []byte("upstream request timeout")})
				return
			}
			uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: []byte("upstream connect error or disconnect/reset before headers")})
			return
		}
		defer res.Body.Close()
		var hs [][2]string
		for k, vs := range res.Header {
			lk := strings.ToLower(k)
			if hopByHop[lk] {
				continue
			}
			for _, v := range vs {
				hs = append(hs, [2]string{lk, v})
			}
		}
		if method == http.MethodHead || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified {
			uw.Respond(&testenv.UpstreamResponse{Status: res.StatusCode, Headers: hs}) // no body (RFC 9110 6.4.1)
			return
		}
		if res.ContentLength >= 0 && res.ContentLength <= int64(g.cfg.ChunkSize) && len(res.Trailer) == 0 {
			// A small body of known length: one chunk with end_of_stream, as when
			// Envoy's codec decodes headers and the whole body from one read.
			rb, err := io.ReadAll(io.LimitReader(res.Body, res.ContentLength))
			if err != nil || int64(len(rb)) != res.ContentLength {
				uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: []byte("upstream connect error or disconnect/reset before headers")})
				return
			}
			uw.Respond(&testenv.UpstreamResponse{Status: res.StatusCode, Headers: hs, Body: rb})
			return
		}
		uw.Headers(res.StatusCode, hs, false)
		var total int64
		for {
			buf := make([]byte, g.cfg.ChunkSize)
			n, err := res.Body.Read(buf)
			total += int64(n)
			if total > g.cfg.MaxBodyBytes {
				uw.Reset()
				return
			}
			if n > 0 {
				uw.Data(buf[:n], false)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				uw.Reset()
				return
			}
		}
		var ts [][2]string
		for k, vs := range res.Trailer {
			for _, v := range vs {
				ts = append(ts, [2]string{strings.ToLower(k), v})
			}
		}
		if len(ts) > 0 {
			uw.Trailers(ts)
		} else {
			uw.Data(nil, true)
		}
	}()
}

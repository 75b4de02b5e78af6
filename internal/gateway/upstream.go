package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/meshplug/meshplug/testenv"
)

var (
	errConnect = []byte("upstream connect error or disconnect/reset before headers")
	errTimeout = []byte("upstream request timeout")
)

// proxy is the router's upstream call: a real HTTP/1.1 request to the cluster the
// route picked, with the `:path` the chain left byte for byte (upstreamURL), whose
// response goes into the chain as it is read: the headers, then each read of the
// body as a chunk of at most ChunkSize (as Envoy's codec hands over what each socket
// read decoded), then the trailers. The request body is read from the chain as the
// upstream takes it, which opens the request's flow-control window; the response
// body is read only while the response's window has room. A connection failure is
// Envoy's 503 ("upstream connect error or disconnect/reset before headers"), no
// response within the route timeout (counted from the end of the request) its 504
// ("upstream request timeout"); a body cut short, or the timeout after the headers,
// resets the stream.
func (g *Gateway) proxy(ur *testenv.UpstreamRequest, uw *testenv.UpstreamWriter) {
	addr, ok := g.upstreams[ur.Cluster]
	if !ok {
		uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: []byte("no healthy upstream")})
		return
	}
	x, _ := ur.Tag.(*exchange)
	if x == nil { // not started by ServeHTTP (tests of the host alone)
		x = &exchange{reqWin: newWindow(g.cfg.BufferLimitBytes), respWin: newWindow(g.cfg.BufferLimitBytes), idle: &streamIdle{idleTimer: newIdleTimer(0, nil)}}
		x.ctx, x.cancel = context.WithCancel(context.Background())
	}
	u, err := upstreamURL(addr, ur.Path)
	if err != nil {
		uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: errConnect})
		return
	}
	// ur belongs to the stream: copy what the goroutine needs before returning.
	method, authority := ur.Method, ur.Authority
	headers := append(testenv.Headers(nil), ur.Headers...)
	ctx, cancel := context.WithCancel(x.ctx)
	rt := &routeTimeout{d: g.cfg.UpstreamTimeout, cancel: cancel}
	var body io.Reader
	switch {
	case ur.BodyReader != nil:
		body = &upstreamBody{r: ur.BodyReader, x: x, rt: rt} // the request body as it leaves the chain
	case ur.Body != nil:
		body = bytes.NewReader(ur.Body)
		rt.start()
	default:
		rt.start()
	}
	go func() {
		defer cancel()
		defer rt.stop()
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/", body)
		if err != nil {
			uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: errConnect})
			return
		}
		req.URL = u
		req.Host = authority
		for _, p := range headers {
			if !hopByHop[p.Key] {
				req.Header.Add(p.Key, p.Value)
			}
		}
		// Envoy's router tells the upstream the time it has (suppress_envoy_headers off).
		req.Header.Set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(g.cfg.UpstreamTimeout.Milliseconds(), 10))
		res, err := g.transport.RoundTrip(req)
		rt.start() // an answer before the request ended: its time counts from now
		if err != nil {
			if rt.timedOut.Load() {
				uw.Respond(&testenv.UpstreamResponse{Status: 504, Body: errTimeout})
				return
			}
			uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: errConnect})
			return
		}
		defer res.Body.Close()
		g.relayResponse(method, res, uw, x)
	}()
}

// relayResponse feeds the upstream's response into the chain.
func (g *Gateway) relayResponse(method string, res *http.Response, uw *testenv.UpstreamWriter, x *exchange) {
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
			uw.Respond(&testenv.UpstreamResponse{Status: 503, Body: errConnect})
			return
		}
		uw.Respond(&testenv.UpstreamResponse{Status: res.StatusCode, Headers: hs, Body: rb})
		return
	}
	uw.Headers(res.StatusCode, hs, false)
	var total int64
	for {
		if !x.respWin.wait() { // the stream ended
			uw.Reset()
			return
		}
		buf := make([]byte, g.cfg.ChunkSize)
		n, err := res.Body.Read(buf)
		total += int64(n)
		x.idle.touch()
		if g.cfg.MaxBodyBytes > 0 && total > g.cfg.MaxBodyBytes {
			uw.Reset()
			return
		}
		if n > 0 {
			x.respWin.add(n)
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
}

// upstreamBody is the request body as the upstream connection takes it: each read
// frees room in the request's flow-control window; its end starts the route timeout.
type upstreamBody struct {
	r      io.Reader
	x      *exchange
	rt     *routeTimeout
	closed sync.Once
}

// Close is the transport saying it takes no more of the body (it was sent, or the
// upstream answered and closed the connection early): the rest of the body still
// goes through the filters but then nowhere, as Envoy's router drops what an
// upstream that finished no longer takes, so the client is not held back by a window
// that nobody empties.
func (b *upstreamBody) Close() error {
	b.closed.Do(func() {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := b.r.Read(buf)
				if n > 0 {
					b.x.reqWin.sub(n)
					b.x.idle.touch()
				}
				if err != nil {
					return
				}
			}
		}()
	})
	return nil
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.x.reqWin.sub(n)
		b.x.idle.touch()
	}
	if err == io.EOF {
		b.rt.start()
	}
	return n, err
}

// upstreamURL is the URL of an upstream request whose request line carries path
// (`:path`, with its query) exactly as the filters left it: Go's client would
// otherwise re-encode a parsed path (`/x{` → `/x%7B`), and the upstream must act on
// what the filters matched. A path that cannot be sent as is (not starting with `/`,
// with a space or a control character) is an error.
func upstreamURL(addr, path string) (*url.URL, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, errors.New("path does not start with /")
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f {
			return nil, errors.New("path has a space or a control character")
		}
	}
	p, q, hasQ := strings.Cut(path, "?")
	u := &url.URL{Scheme: "http", Host: addr, RawQuery: q, ForceQuery: hasQ && q == ""}
	if strings.HasPrefix(p, "//") {
		// An opaque "//x" would be sent as "http://x": give the path as escaped form.
		dec, err := url.PathUnescape(p)
		if err != nil {
			return nil, err
		}
		u.Path, u.RawPath = dec, p
	} else {
		u.Opaque = p
	}
	if u.RequestURI() != path {
		return nil, errors.New("path cannot be sent as is")
	}
	return u, nil
}

package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
)

type httpResult struct {
	headers  []abi.Pair
	body     []byte
	trailers []abi.Pair
	failed   bool // reset after response headers: Envoy's onFailure(Reset)
}

// calloutClient makes HTTP callouts. Like Envoy's async client it does not follow
// redirects: a 3xx goes back to the guest.
// Its connections record each response's head, so the guest gets the response
// headers in the order they came (headConn).
var calloutClient = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16,
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &headConn{Conn: c}, nil
	}},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// headConn records the head of the response to the request it carries now (start is
// called when the request gets the connection; Go's client does not pipeline, so what
// is read next begins with that response). Envoy's async client hands the callout's
// response headers to the guest in the order they came (Context::getHeaderMapPairs
// over http_call_response_'s HeaderMapImpl, which keeps the codec's order); Go's
// http.Header is a map, so the order is taken from the recorded head (orderedHeaders).
type headConn struct {
	net.Conn
	mu        sync.Mutex
	head      []byte
	capturing bool
}

// maxHead bounds the recorded head (a longer one keeps the map's names sorted).
const maxHead = 64 << 10

func (c *headConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.capturing && n > 0 {
		c.head = append(c.head, p[:n]...)
		if i := bytes.Index(c.head, []byte("\r\n\r\n")); i >= 0 || len(c.head) > maxHead {
			if i >= 0 {
				c.head = c.head[:i]
			}
			c.capturing = false
		}
	}
	c.mu.Unlock()
	return n, err
}

func (c *headConn) start() {
	c.mu.Lock()
	c.head, c.capturing = c.head[:0], true
	c.mu.Unlock()
}

// response returns the recorded head (status line and header lines).
func (c *headConn) response() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.head)
}

// orderedHeaders returns h's headers (lower-cased names) in the order of their lines
// in head; any the head does not account for follow, sorted by name.
func orderedHeaders(head string, h http.Header) []abi.Pair {
	var out []abi.Pair
	used := map[string]int{}
	lines := strings.Split(head, "\r\n")
	for _, line := range lines[min(1, len(lines)):] { // after the status line
		name, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		if vs := h[key]; used[key] < len(vs) {
			out = append(out, abi.Pair{Key: strings.ToLower(key), Value: vs[used[key]]})
			used[key]++
		}
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k][used[k]:] {
			out = append(out, abi.Pair{Key: strings.ToLower(k), Value: v})
		}
	}
	return out
}

// httpCall implements proxy_http_call. Like Envoy it needs a known cluster, a
// non-negative timeout, and :method, :path and :authority among the headers
// (BadArgument otherwise). The call belongs to the root context:
// proxy_on_http_call_response(root, token, headers, body size, trailers) runs under the
// worker lock when the real HTTP/1.1 exchange with Clusters[cluster] ends. As with
// Envoy's async client, a timeout answers 504 "upstream request timeout" and a failed
// connection 503 "upstream connect error or disconnect/reset before headers..."; a
// reset after the response headers delivers (0, 0, 0) with proxy_get_status =
// BrokenConnection "reset".
//
// Caveat: the timeout is real time, even with a FakeClock (the network is real);
// request trailers are not sent (HTTP/1.1).
func (v *vm) httpCall(st []uint64) abi.Status {
	cluster, ok1 := v.readString(u32(st[0]), u32(st[1]))
	hb, ok2 := v.read(u32(st[2]), u32(st[3]))
	if !ok1 || !ok2 {
		return abi.StatusInvalidMemoryAccess
	}
	hdrs, err := abi.DecodePairs(hb)
	if err != nil {
		return abi.StatusBadArgument
	}
	body, ok := v.read(u32(st[4]), u32(st[5]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	body = append([]byte(nil), body...)
	tb, ok := v.read(u32(st[6]), u32(st[7]))
	if !ok {
		return abi.StatusInvalidMemoryAccess
	}
	timeout := int32(u32(st[8]))
	tokenPtr := u32(st[9])
	addr, known := v.h.opts.Clusters[cluster]
	if !known || timeout < 0 {
		return abi.StatusBadArgument
	}
	var method, path, authority string
	var regular []abi.Pair
	for _, p := range hdrs {
		switch k := lowerASCII(p.Key); k {
		case ":method":
			method = p.Value
		case ":path":
			path = p.Value
		case ":authority": // Envoy checks Host(), the :authority header; "host" is a plain header
			authority = p.Value
		default:
			if !strings.HasPrefix(k, ":") {
				regular = append(regular, abi.Pair{Key: k, Value: p.Value})
			}
		}
	}
	if method == "" || path == "" || authority == "" {
		return abi.StatusBadArgument
	}
	v.nextHTTP++
	if v.nextHTTP == 0 {
		v.nextHTTP++
	}
	token := v.nextHTTP
	if !v.putU32(tokenPtr, token) {
		return abi.StatusInvalidMemoryAccess
	}
	if f := v.h.opts.OnCallout; f != nil {
		trailers, _ := abi.DecodePairs(tb)
		f(CalloutRequest{Worker: v.w.id, Kind: "http", Cluster: cluster, Headers: hdrs, Trailers: trailers,
			Body: body, TimeoutMS: int64(timeout)})
	}
	ctx, cancel := context.WithCancel(v.h.calloutCtx)
	v.httpCalls[token] = cancel
	rid := v.cur.root // cpp-host's http_call dispatches from the caller's root context
	go func() {
		res := doHTTP(ctx, addr, method, path, authority, regular, body, time.Duration(timeout)*time.Millisecond)
		cancel()
		v.w.run(func() { v.deliverHTTP(rid, token, res) })
	}()
	return abi.StatusOK
}

func localHTTP(code int, body string) *httpResult {
	return &httpResult{
		headers: []abi.Pair{{Key: ":status", Value: strconv.Itoa(code)}, {Key: "content-length", Value: strconv.Itoa(len(body))},
			{Key: "content-type", Value: "text/plain"}},
		body: []byte(body),
	}
}

func doHTTP(ctx context.Context, addr, method, path, authority string, hdrs []abi.Pair, body []byte, timeout time.Duration) *httpResult {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return localHTTP(503, "upstream connect error or disconnect/reset before headers. reset reason: "+err.Error())
	}
	req.Host = authority
	for _, p := range hdrs {
		req.Header.Add(p.Key, p.Value)
	}
	if len(body) == 0 {
		req.Body = nil
	}
	var conn *headConn
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if c, ok := info.Conn.(*headConn); ok {
				conn = c
				c.start()
			}
		}}))
	resp, err := calloutClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return localHTTP(504, "upstream request timeout")
		}
		return localHTTP(503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure")
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return localHTTP(504, "upstream request timeout")
		}
		return &httpResult{failed: true}
	}
	res := &httpResult{body: rb}
	res.headers = append(res.headers, abi.Pair{Key: ":status", Value: strconv.Itoa(resp.StatusCode)})
	head := ""
	if conn != nil {
		head = conn.response()
	}
	res.headers = append(res.headers, orderedHeaders(head, resp.Header)...)
	for k, vs := range resp.Trailer {
		for _, val := range vs {
			res.trailers = append(res.trailers, abi.Pair{Key: strings.ToLower(k), Value: val})
		}
	}
	return res
}

func (v *vm) deliverHTTP(rid, token uint32, res *httpResult) {
	if _, ok := v.httpCalls[token]; !ok {
		return
	}
	delete(v.httpCalls, token)
	v.onRoot(rid, func() {
		if res.failed {
			v.status, v.statusMsg = uint32(abi.StatusBrokenConnection), "reset"
			v.call5(v.fns.onHTTPCallResponse, uint64(v.cur.id), uint64(token), 0, 0, 0)
			v.statusMsg = ""
			return
		}
		v.status, v.statusMsg = 0, ""
		v.httpResp = res
		v.call5(v.fns.onHTTPCallResponse, uint64(v.cur.id), uint64(token),
			uint64(len(res.headers)), uint64(len(res.body)), uint64(len(res.trailers)))
		v.httpResp = nil
	})
}

package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/envoypath"
)

// Envoy's defaults for what the rendered envoy.yaml leaves unset.
const (
	// DefaultMaxRequestHeadersKB is the HCM's max_request_headers_kb default.
	DefaultMaxRequestHeadersKB = 60
	// DefaultMaxHeadersCount is common_http_protocol_options.max_headers_count's default.
	DefaultMaxHeadersCount = 100
	// DefaultStreamIdleTimeout is the HCM's stream_idle_timeout default.
	DefaultStreamIdleTimeout = 5 * time.Minute
	// DefaultBufferLimitBytes is the listener's per_connection_buffer_limit_bytes
	// default: the filters' buffer limit and the flow-control window of each
	// direction of a stream.
	DefaultBufferLimitBytes = 1 << 20
)

// edge is the downstream behaviour of the HTTP connection manager the envoy.yaml
// rendering configures (envoyfilters.EdgeConnectionManager), with Envoy's defaults
// for what it leaves unset.
type edge struct {
	path              envoypath.Options
	maxHeaderBytes    int  // max_request_headers_kb
	maxHeaders        int  // common_http_protocol_options.max_headers_count
	rejectUnderscores bool // headers_with_underscores_action REJECT_REQUEST
	useRemoteAddress  bool
	acceptHTTP10      bool          // http_protocol_options.accept_http_10
	streamIdle        time.Duration // stream_idle_timeout
	localAddress      string        // what Envoy appends to XFF for a loopback peer
}

func edgeFrom(h *hcmv3.HttpConnectionManager) edge {
	e := edge{
		path: envoypath.Options{
			NormalizePath: h.GetNormalizePath().GetValue(),
			MergeSlashes:  h.GetMergeSlashes(),
		},
		maxHeaderBytes:   DefaultMaxRequestHeadersKB << 10,
		maxHeaders:       DefaultMaxHeadersCount,
		useRemoteAddress: h.GetUseRemoteAddress().GetValue(),
		acceptHTTP10:     h.GetHttpProtocolOptions().GetAcceptHttp_10(),
		streamIdle:       DefaultStreamIdleTimeout,
		localAddress:     localAddress(),
	}
	switch h.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		e.path.EscapedSlashes = envoypath.RejectRequest
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
		e.path.EscapedSlashes = envoypath.UnescapeAndRedirect
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		e.path.EscapedSlashes = envoypath.UnescapeAndForward
	}
	if kb := h.GetMaxRequestHeadersKb(); kb != nil {
		e.maxHeaderBytes = int(kb.GetValue()) << 10
	}
	if n := h.GetCommonHttpProtocolOptions().GetMaxHeadersCount(); n != nil {
		e.maxHeaders = int(n.GetValue())
	}
	e.rejectUnderscores = h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() == corev3.HttpProtocolOptions_REJECT_REQUEST
	if d := h.GetStreamIdleTimeout(); d != nil {
		e.streamIdle = d.AsDuration()
	}
	return e
}

// renderedEdge is the edge of the rendered envoy.yaml.
func renderedEdge() edge { return edgeFrom(envoyfilters.EdgeConnectionManager()) }

// localAddress is Envoy's local address (LocalInfo, Network::Utility::getLocalAddress):
// the first non-loopback IPv4 address of the machine, else 127.0.0.1.
func localAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if p, ok := a.(*net.IPNet); ok && !p.IP.IsLoopback() && p.IP.To4() != nil {
				return p.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// localReply is an answer of the connection manager itself, before the filters.
type localReply struct {
	status   int
	details  string // Envoy's response code details
	location string // a redirect's
	reset    bool   // reset the stream instead (HTTP/2)
}

// target is the request's `:path` as Envoy's codecs give it: the origin-form target as
// sent, byte for byte; an absolute-form one (`GET http://host/p`) reduced to its path
// and query ("/" for none). ok is false for other forms (`*`, authority form).
func target(r *http.Request) (string, bool) {
	t := r.RequestURI
	if strings.HasPrefix(t, "/") {
		return t, true
	}
	if r.ProtoMajor == 1 && r.URL.IsAbs() {
		if i := strings.Index(t, "://"); i > 0 {
			rest := t[i+3:]
			j := strings.IndexAny(rest, "/?")
			switch {
			case j < 0:
				return "/", true
			case rest[j] == '?':
				return "/" + rest[j:], true
			default:
				return rest[j:], true
			}
		}
	}
	return t, false
}

// requestPath is the `:path` the filters see, or the connection manager's answer:
// 426 for HTTP/1.0 (accept_http_10 false), 404 for a target that is not a path
// (Envoy's absolute_path details), then the path pipeline of the rendered HCM
// (envoypath): 400 for a path it refuses, 307 to the finished path for escaped
// slashes.
func (e *edge) requestPath(r *http.Request) (string, *localReply) {
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 && !e.acceptHTTP10 {
		return r.RequestURI, &localReply{status: http.StatusUpgradeRequired, details: "http1.codec_error"}
	}
	t, ok := target(r)
	if !ok {
		return t, &localReply{status: http.StatusNotFound, details: "absolute_path"}
	}
	p, action := envoypath.Normalize(t, e.path)
	switch action {
	case envoypath.Reject:
		return p, &localReply{status: http.StatusBadRequest, details: "path_normalization_failed"}
	case envoypath.Redirect:
		return p, &localReply{status: http.StatusTemporaryRedirect, details: "path_normalization_failed", location: p}
	}
	return p, nil
}

// hopByHop are connection-specific headers that a proxy never forwards (RFC 9110
// 7.6.1; Envoy's codecs drop them, ConnectionManagerUtility::mutateRequestHeaders).
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "te": true, "trailer": true, "content-length": true, "host": true,
}

// internalOnly are the request headers Envoy removes from a request that is not
// internal (ConnectionManagerUtility::cleanInternalHeaders, edge request): with
// use_remote_address and no internal_address_config no request is internal, so a
// client never sets them. x-envoy-internal is removed from every request.
var internalOnly = map[string]bool{
	"x-envoy-internal":                         true,
	"x-envoy-decorator-operation":              true,
	"x-envoy-downstream-service-cluster":       true,
	"x-envoy-downstream-service-node":          true,
	"x-envoy-retriable-status-codes":           true,
	"x-envoy-retriable-header-names":           true,
	"x-envoy-retry-on":                         true,
	"x-envoy-retry-grpc-on":                    true,
	"x-envoy-max-retries":                      true,
	"x-envoy-upstream-alt-stat-name":           true,
	"x-envoy-upstream-rq-timeout-ms":           true,
	"x-envoy-upstream-rq-per-try-timeout-ms":   true,
	"x-envoy-upstream-rq-timeout-alt-response": true,
	"x-envoy-expected-rq-timeout-ms":           true,
	"x-envoy-force-trace":                      true,
	"x-envoy-ip-tags":                          true,
	"x-envoy-original-url":                     true,
	"x-envoy-hedge-on-per-try-timeout":         true,
}

// setFromConnection are the request headers mutateRequestHeaders sets with
// use_remote_address: x-forwarded-for is appended to, the others replaced.
var setFromConnection = map[string]bool{
	"x-forwarded-for": true, "x-forwarded-proto": true, "x-envoy-external-address": true, "x-request-id": true,
}

// requestHeaders are the regular request headers the filters see, in a stable order
// (Go's header map has none), or the connection manager's answer: Envoy's header
// limits (431 on HTTP/1, a stream reset on HTTP/2), header names with underscores
// refused (400 / reset), hop-by-hop headers dropped, then mutateRequestHeaders with
// use_remote_address: the peer appended to x-forwarded-for (Envoy's local address
// for a loopback peer), x-forwarded-proto overwritten, internal-only headers
// removed, x-envoy-external-address set, a new x-request-id.
func (e *edge) requestHeaders(r *http.Request) ([][2]string, *localReply) {
	h2 := r.ProtoMajor == 2
	count, size := 0, 0
	if !h2 && r.Host != "" {
		count, size = 1, len("host")+len(r.Host)
	}
	named := map[string]bool{} // headers the Connection header names are hop-by-hop too
	names := make([]string, 0, len(r.Header))
	for k, vs := range r.Header {
		count += len(vs)
		for _, v := range vs {
			size += len(k) + len(v)
		}
		if strings.Contains(k, "_") && e.rejectUnderscores {
			// x_consumer must not slip past filters that match x-consumer.
			return nil, &localReply{status: http.StatusBadRequest, details: "http1.unexpected_underscore", reset: h2}
		}
		if k == "Connection" {
			for _, v := range vs {
				for n := range strings.SplitSeq(v, ",") {
					named[strings.ToLower(strings.TrimSpace(n))] = true
				}
			}
		}
		names = append(names, k)
	}
	if count > e.maxHeaders || size > e.maxHeaderBytes {
		return nil, &localReply{status: http.StatusRequestHeaderFieldsTooLarge, details: "http1.headers_too_large", reset: h2}
	}
	sort.Strings(names)
	hs := make([][2]string, 0, count+4)
	var xff []string
	for _, k := range names {
		lk := strings.ToLower(k)
		if hopByHop[lk] || named[lk] {
			continue
		}
		if e.useRemoteAddress && (internalOnly[lk] || setFromConnection[lk]) {
			if lk == "x-forwarded-for" {
				xff = append(xff, r.Header[k]...)
			}
			continue
		}
		for _, v := range r.Header[k] {
			hs = append(hs, [2]string{lk, v})
		}
	}
	if e.useRemoteAddress {
		peer := peerIP(r.RemoteAddr)
		appended := peer
		if a, err := netip.ParseAddr(peer); err == nil && a.IsLoopback() {
			appended = e.localAddress
		}
		hs = append(hs,
			[2]string{"x-forwarded-for", strings.Join(append(xff, appended), ",")},
			[2]string{"x-forwarded-proto", "http"},
			[2]string{"x-envoy-external-address", peer},
			[2]string{"x-request-id", newRequestID()})
	}
	return hs, nil
}

func peerIP(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// newRequestID is a random UUID (version 4), as Envoy's default request ID extension.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	hex.Encode(out[9:13], b[4:6])
	hex.Encode(out[14:18], b[6:8])
	hex.Encode(out[19:23], b[8:10])
	hex.Encode(out[24:], b[10:])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}

// writeLocalReply answers with lr (Envoy's local reply: a short text body).
func writeLocalReply(w http.ResponseWriter, lr *localReply) {
	if lr.reset {
		panic(http.ErrAbortHandler) // RST_STREAM, as Envoy's HTTP/2 codec
	}
	h := w.Header()
	if lr.location != "" {
		h.Set("location", lr.location)
	}
	body := http.StatusText(lr.status)
	if lr.status == http.StatusTemporaryRedirect {
		body = ""
	}
	h.Set("content-type", "text/plain")
	h.Set("content-length", strconv.Itoa(len(body)))
	if lr.status == http.StatusUpgradeRequired || lr.status == http.StatusRequestHeaderFieldsTooLarge {
		h.Set("connection", "close")
	}
	w.WriteHeader(lr.status)
	_, _ = w.Write([]byte(body))
}

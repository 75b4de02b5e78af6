package testenv

import (
	"bytes"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/meshplug/meshplug/filters/abi"
)

// Default addresses of the emulated connection.
const (
	DefaultSourceAddress      = "127.0.0.1:40000"
	DefaultDestinationAddress = "127.0.0.1:10000"
	DefaultUpstreamAddress    = "127.0.0.1:8080"
)

// joined appends the values of header name in m, joined with ",", to out (the VM's
// scratch); NotFound when absent.
func (v *vm) joined(out []byte, m []abi.Pair, name string) ([]byte, abi.Status) {
	n := 0
	for _, h := range m {
		if h.Key == name {
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, h.Value...)
			n++
		}
	}
	v.scratch = out
	if n == 0 {
		return nil, abi.StatusNotFound
	}
	return out, abi.StatusOK
}

var requestIDs atomic.Uint64

// property serializes the property at path (segments joined by NUL) like Envoy's
// Context::getProperty: strings raw, integers as 8-byte little-endian int64 (uint64 for
// connection.id and connection_id), booleans as 1 byte, request.time as 8-byte
// little-endian nanoseconds since the epoch. Unknown paths are NotFound.
//
// Supported: request.{path,url_path,host,scheme,method,headers.<name>,id,useragent,
// referer,query} (from the request header map, so only while the calling context
// still has it, as Envoy's findValue reads request_headers_ or, in proxy_on_log,
// access_log_request_headers_: NotFound after the plugin let the headers go on),
// request.{protocol,time} (stream info, always), response.{code,code_details,
// headers.<name>,trailers.<name>}, upstream.{address,port} (once the router sent the
// request: Options.UpstreamAddress), source.{address,port}, destination.{address,port},
// connection.{id,mtls}, connection_id, plugin_name, plugin_root_id, plugin_vm_id,
// xds.node.id, xds.node.metadata.<KEY> (Options.NodeMetadata; the top-level node.*
// form is gone since Envoy 1.33), xds.route_name, xds.cluster_name (router stage);
// Request.Properties by dotted path (metadata.*, filter_state.*, connection.mtls, …
// whatever a test sets); and what proxy_set_property stored on the stream (by the
// exact path given). request.headers.<name> and response.headers.<name> join repeated
// values with "," (Envoy's HeadersWrapper uses HeaderUtility::getAllOfHeaderAsString).
//
// Caveat: request.id is generated lazily when the request has no x-request-id header;
// the host does not add that header to the request like Envoy's connection manager.
func (v *vm) property(path []byte) ([]byte, abi.Status) {
	s := v.cur.s
	if s != nil {
		if val, ok := s.props[string(path)]; ok {
			return val, abi.StatusOK
		}
		if len(s.req.Properties) > 0 {
			dotted := strings.ReplaceAll(string(path), "\x00", ".")
			if val, ok := s.req.Properties[dotted]; ok {
				return val, abi.StatusOK
			}
		}
	}
	top, rest, _ := bytes.Cut(path, []byte{0})
	p := v.h.plugins[v.plugin]
	out := v.scratch[:0]
	str := func(x string) ([]byte, abi.Status) { v.scratch = append(out, x...); return v.scratch, abi.StatusOK }
	i64v := func(x int64) ([]byte, abi.Status) {
		v.scratch = binary.LittleEndian.AppendUint64(out, uint64(x))
		return v.scratch, abi.StatusOK
	}
	// addressProperty answers the `address` and `port` fields of an address property
	// (`source.*`, `destination.*`, `upstream.*`); ok is false for any other field. A
	// port that does not parse is NotFound.
	addressProperty := func(addr string, field []byte) (val []byte, st abi.Status, ok bool) {
		switch string(field) {
		case "address":
			val, st = str(addr)
			return val, st, true
		case "port":
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, abi.StatusNotFound, true
			}
			n, _ := strconv.Atoi(port)
			val, st = i64v(int64(n))
			return val, st, true
		}
		return nil, 0, false
	}
	switch string(top) {
	case "plugin_name":
		if len(rest) == 0 {
			return str(p.Name)
		}
	case "plugin_root_id":
		if len(rest) == 0 {
			return str(p.RootID)
		}
	case "plugin_vm_id":
		if len(rest) == 0 {
			return str(p.VMID)
		}
	case "xds":
		field, sub, _ := bytes.Cut(rest, []byte{0})
		if string(field) == "node" {
			nf, key, _ := bytes.Cut(sub, []byte{0})
			switch string(nf) {
			case "id":
				if len(key) == 0 {
					return str(NodeID)
				}
			case "metadata":
				if val, ok := v.h.opts.NodeMetadata[string(key)]; ok && len(key) > 0 {
					return str(val)
				}
			}
			return nil, abi.StatusNotFound
		}
	case "connection_id":
		if s != nil && len(rest) == 0 {
			return i64v(1)
		}
	}
	if s == nil {
		return nil, abi.StatusNotFound
	}
	field, sub, _ := bytes.Cut(rest, []byte{0})
	switch string(top) {
	case "xds":
		// xds.route_name / xds.cluster_name: the route the router stage resolves for
		// the request headers as they are now (Envoy reads the stream's cached route;
		// see Stream.route). NotFound without routes or when no route matches.
		if s.h.routes == nil || len(sub) > 0 {
			break
		}
		switch string(field) {
		case "route_name", "cluster_name":
			r := s.route()
			if r == nil {
				return nil, abi.StatusNotFound
			}
			if string(field) == "route_name" {
				return str(r.Name)
			}
			return str(r.Cluster)
		}
	case "request":
		switch string(field) {
		case "protocol":
			return str("HTTP/1.1")
		case "time":
			return i64v(s.startTime().UnixNano())
		}
		if v.cur.maps&mReqHeaders == 0 && s.stage != stLog {
			return nil, abi.StatusNotFound // the plugin let the request headers go
		}
		hdr := func(name string) ([]byte, abi.Status) {
			return v.joined(out, s.reqHeaders, name)
		}
		switch string(field) {
		case "path":
			return hdr(":path")
		case "url_path", "query":
			pth, _ := Headers(s.reqHeaders).Get(":path")
			before, after, _ := strings.Cut(pth, "?")
			if string(field) == "query" {
				return str(after)
			}
			return str(before)
		case "host":
			return hdr(":authority")
		case "scheme":
			return hdr(":scheme")
		case "method":
			return hdr(":method")
		case "useragent":
			return hdr("user-agent")
		case "referer":
			return hdr("referer")
		case "id":
			if val, ok := Headers(s.reqHeaders).Get("x-request-id"); ok {
				return str(val)
			}
			if s.requestID == "" {
				s.requestID = "testenv-" + strconv.FormatUint(requestIDs.Add(1), 10)
			}
			return str(s.requestID)
		case "headers":
			if len(sub) > 0 {
				return hdr(string(v.lowerKey(sub)))
			}
		}
	case "response":
		if len(s.respHeaders) == 0 || s.stage < stResp {
			return nil, abi.StatusNotFound
		}
		switch string(field) {
		case "code":
			code, _ := Headers(s.respHeaders).Get(":status")
			n, _ := strconv.Atoi(code)
			return i64v(int64(n))
		case "code_details":
			if s.local != nil && s.isLocal {
				return str(s.local.details)
			}
			return str("via_upstream")
		case "headers", "trailers":
			m, bit := s.respHeaders, mRespHeaders
			if string(field) == "trailers" {
				m, bit = s.respTrailers, mRespTrailers
			}
			if v.cur.maps&bit == 0 && s.stage != stLog {
				return nil, abi.StatusNotFound // the plugin let them go (Envoy drops its pointer)
			}
			return v.joined(out, m, string(v.lowerKey(sub)))
		}
	case "upstream":
		if !s.upstreamCalled {
			break
		}
		if val, st, ok := addressProperty(or(s.h.opts.UpstreamAddress, DefaultUpstreamAddress), field); ok {
			return val, st
		}
	case "source", "destination":
		addr := or(s.req.SourceAddress, DefaultSourceAddress)
		if string(top) == "destination" {
			addr = DefaultDestinationAddress
		}
		if val, st, ok := addressProperty(addr, field); ok {
			return val, st
		}
	case "connection":
		switch string(field) {
		case "id":
			return i64v(1)
		case "mtls":
			v.scratch = append(out, 0)
			return v.scratch, abi.StatusOK
		}
	}
	return nil, abi.StatusNotFound
}

package conformance

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshplug/meshplug/testenv"
)

// TestPropertiesFollowTheMaps: request.* properties read from the request header map
// are NotFound once the plugin let the request headers go (Envoy's findValue reads
// request_headers_), stream-info ones stay; upstream.* exists once the router sent the
// request; response.headers.* reads the response map the plugin holds.
func TestPropertiesFollowTheMaps(t *testing.T) {
	h := start(t, setup{opts: testenv.Options{UpstreamAddress: "10.1.2.3:8443",
		Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
			return &testenv.UpstreamResponse{Status: 200, Headers: [][2]string{{"x-up", "1"}, {"x-up", "2"}}, Body: []byte("b")}
		}}})
	resp := do(t, h, testenv.Request{Path: "/r", Headers: [][2]string{{"x-op", "response"}}})
	for k, want := range map[string]string{
		"x-request-path-prop":     "not found",
		"x-request-time-prop":     "ok",
		"x-upstream-address-prop": "10.1.2.3:8443/ok",
		"x-response-header-prop":  "1,2/ok",
	} {
		v, _ := resp.Headers.Get(k)
		assert.Equal(t, want, v, k)
	}
}

// TestHeaderMapShape: proxy_add_header_map_value on an inline header (user-agent) joins
// the values with "," like HeaderMapImpl::insertByKey; on another header it adds an
// entry; proxy_replace_header_map_value moves the header to the end (setCopy).
func TestHeaderMapShape(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Path: "/s", Headers: [][2]string{{"x-first", "1"}, {"x-op", "header-shape"},
		{"user-agent", "ua"}, {"x-plain", "1"}}})
	up := resp.Upstream
	if assert.NotNil(t, up) {
		assert.Equal(t, []string{"ua,added"}, up.Headers.Values("user-agent"))
		assert.Equal(t, []string{"1", "2"}, up.Headers.Values("x-plain"))
		assert.Equal(t, "x-first", up.Headers[len(up.Headers)-1].Key)
		assert.Equal(t, "moved", up.Headers[len(up.Headers)-1].Value)
	}
}

// TestSetBufferBytes: proxy_set_buffer_bytes follows Envoy's Buffer::copyFrom: (0, n)
// replaces the first n bytes, a start inside the buffer is BadArgument.
func TestSetBufferBytes(t *testing.T) {
	h := start(t, setup{opts: testenv.Options{Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
		return &testenv.UpstreamResponse{Status: 200, Body: []byte("xyz-tail")}
	}}})
	resp := do(t, h, testenv.Request{Path: "/b", Headers: [][2]string{{"x-op", "body-set"}}})
	assert.Equal(t, "AB-tail|middle:bad argument", string(resp.Body))
}

// TestAddTrailersFromLastBody: a plugin may add trailers from its last body callback of
// a stream that has none (Envoy's addDecodedTrailers / addEncodedTrailers through
// Context::getMap); before the end of the stream the trailer map does not exist.
func TestAddTrailersFromLastBody(t *testing.T) {
	h := start(t, setup{opts: testenv.Options{RequestChunkSize: 3, Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
		return &testenv.UpstreamResponse{Status: 200, Body: []byte("resp")}
	}}})
	resp := do(t, h, testenv.Request{Method: "POST", Path: "/t", Body: []byte("abcd"), Headers: [][2]string{{"x-op", "add-trailers"}}})
	if assert.NotNil(t, resp.Upstream) {
		assert.Equal(t, "abc|early:bad argumentd|add:ok", string(resp.Upstream.Body))
		assert.Equal(t, []string{"t1"}, resp.Upstream.Trailers.Values("x-added-trailer"))
	}
	assert.Equal(t, "resp|add:ok", string(resp.Body))
	assert.Equal(t, []string{"r1"}, resp.Trailers.Values("x-added-trailer"))
}

// TestSecondLocalReply: of two proxy_send_local_response in one callback the first is
// what the client gets (Envoy runs both deferred; the second finds a complete
// response); one sent while the first goes through the response callbacks, before its
// headers reached the client, replaces it (FilterManager::sendLocalReply's direct
// reply).
func TestSecondLocalReply(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Path: "/d", Headers: [][2]string{{"x-op", "double-reply"}}})
	assert.Equal(t, 401, resp.Status)
	assert.Equal(t, "first", resp.Details)
	assert.Equal(t, "first", string(resp.Body))
	resp = do(t, h, testenv.Request{Path: "/d", Headers: [][2]string{{"x-op", "double-reply"}, {"x-second", "1"}}})
	assert.Equal(t, 403, resp.Status)
	assert.Equal(t, "second", resp.Details)
	assert.Equal(t, "second", string(resp.Body))
}

package conformance

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

func backend(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("pong"))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestPauseFromHeaders drives the guest's http-call op (request headers paused on a
// callout, resumed from its callback) and resp-call op (the same on the response
// headers) in both of Envoy's modes. Default (allow_on_headers_stop_iteration off,
// StopAllIterationAndWatermark): no body callback before the resume, the callout
// callback sees no body, and the body callback runs after the resume. With the option
// on (StopIteration): the body callback runs while paused, and its Continue sends the
// request on without waiting for the callout.
func TestPauseFromHeaders(t *testing.T) {
	addr := backend(t)
	for _, tc := range []struct {
		name     string
		allow    bool
		reqBody  string // upstream request body
		paused   string // x-paused-body: body size/status/callbacks seen in the callout callback
		respBody string
	}{
		{name: "envoy default: stop all", reqBody: "payload|body-callback resumed=true", paused: "0/ok/calls=0",
			respBody: "ok|body-callback resumed=true"},
		{name: "allow_on_headers_stop_iteration", allow: true, reqBody: "payload|body-callback resumed=false",
			respBody: "ok|body-callback resumed=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, setup{opts: testenv.Options{AllowOnHeadersStopIteration: tc.allow,
				Clusters: map[string]string{"backend": addr}}})
			resp := do(t, h, testenv.Request{Method: "POST", Path: "/p", Body: []byte("payload"), Headers: [][2]string{
				{"x-op", "http-call"}, {"x-cluster", "backend"}, {"x-call-path", "/"}, {"x-resume", "1"}}})
			require.NotNil(t, resp.Upstream)
			assert.Equal(t, tc.reqBody, string(resp.Upstream.Body))
			v, _ := resp.Upstream.Headers.Get("x-paused-body")
			assert.Equal(t, tc.paused, v, "what the callout callback saw")

			resp = do(t, h, testenv.Request{Path: "/r", Headers: [][2]string{{"x-op", "resp-call"}, {"x-cluster", "backend"}}})
			assert.Equal(t, tc.respBody, string(resp.Body))
			v, _ = resp.Headers.Get("x-paused-body")
			assert.Equal(t, tc.paused, v, "what the response callout callback saw")
		})
	}
}

package gateway_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/gateway"
	"github.com/meshplug/meshplug/internal/gateway/gatewaytest"
)

// The auth filter's ext_authz callout reaches a real authorization server through the
// gateway's cluster map: its verdict decides, and the header it allows reaches the
// upstream.
func TestGatewayExtAuthzCallout(t *testing.T) {
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/check/x" && r.Header.Get("authorization") == "let-me-in" {
			w.Header().Set("x-partner", "p1")
			return
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	t.Cleanup(authz.Close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partner="+r.Header.Get("x-partner"))
	}))
	t.Cleanup(up.Close)
	p, err := v1alpha1.Decode([]byte(`
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: authz, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: e2e}]
  auth:
    ext_authz:
      http_service: {cluster: authz, path_prefix: /check}
      allowed_request_headers: [authorization]
      allowed_upstream_headers: [x-partner]
    default_rule: {requires: [ext_authz]}
`))
	require.NoError(t, err)
	gw, err := gateway.New(context.Background(), gateway.Config{
		Policy: p, WasmDir: gatewaytest.WasmDir(t), Workers: 1,
		Upstreams: []gateway.Upstream{{Name: "app", Address: up.Listener.Addr().String()}},
		Clusters:  map[string]string{"authz": authz.Listener.Addr().String()},
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gw.Serve(ln) }()
	t.Cleanup(func() { _ = gw.Shutdown(context.Background()) })

	for _, tc := range []struct {
		name, auth, partner string
		status              int
		body                string
	}{
		{"allowed", "let-me-in", "", 200, "partner=p1"},
		{"a forged partner header is replaced", "let-me-in", "forged", 200, "partner=p1"},
		{"denied", "nope", "", 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/x", nil)
			req.Header.Set("authorization", tc.auth)
			if tc.partner != "" {
				req.Header.Set("x-partner", tc.partner)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.body != "" {
				assert.Equal(t, tc.body, string(b))
			}
		})
	}
}

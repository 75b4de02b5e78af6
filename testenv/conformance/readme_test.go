package conformance

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

// TestReadmeExample makes the calls of testenv/README.md's snippet, on the conformance
// guest instead of auth, so the snippet keeps compiling and meaning what it says.
func TestReadmeExample(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clock := testenv.NewFakeClock(t0)
	wasm := guest(t)
	h := testenv.NewForTest(t, testenv.Options{
		Workers:  2,
		Clock:    clock,
		Clusters: map[string]string{"jwks": "127.0.0.1:8081"},
		Routes: []testenv.Route{
			{Name: "canary", Cluster: "svc-canary", Match: testenv.RouteMatch{
				Prefix: "/", Headers: []testenv.HeaderMatcher{{Name: "x-canary", Exact: "1"}}}},
			{Name: "default", Cluster: "svc", Match: testenv.RouteMatch{Prefix: "/"}},
		},
		Upstream: func(r *testenv.UpstreamRequest) *testenv.UpstreamResponse {
			return &testenv.UpstreamResponse{Status: 200, Body: []byte(r.Cluster)}
		},
	}, testenv.Plugin{Name: "conformance", VMID: "readme", Wasm: wasm, Config: []byte(`{}`)})
	resp := h.MustDo(t, testenv.Request{Path: "/x", Headers: [][2]string{{"authorization", "Bearer ..."}}})
	assert.Equal(t, 200, resp.Status)
	_, _ = resp.Headers.Get("www-authenticate")
	assert.False(t, resp.LocalReply)
	assert.Empty(t, resp.Details)
	require.NotNil(t, resp.Upstream)
	assert.Equal(t, "default", resp.Route)
	assert.Equal(t, "svc", resp.Cluster)
	assert.Equal(t, "svc", string(resp.Body))

	s := h.Start(testenv.Request{Path: "/y", Headers: [][2]string{{"x-canary", "1"}}})
	clock.Advance(time.Second)
	resp, err := s.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "svc-canary", resp.Cluster)

	n, ok := h.Metric("conformance.requests")
	assert.True(t, ok)
	assert.Equal(t, int64(2), n)
	_ = h.Histogram("name")
	_ = h.Logs()
	_, _, _ = h.SharedData("readme", "k")
	require.NoError(t, h.Reconfigure(context.Background(), 0, []byte(`{"tick_ms":0}`)))
	assert.NotZero(t, h.GuestMemory(0, 0))
}

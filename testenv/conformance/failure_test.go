package conformance

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

// TestFailurePolicy drives a VM failure (a Go fatal error: the runtime calls proc_exit,
// which returns, then traps) under each of Envoy's failure policies.
func TestFailurePolicy(t *testing.T) {
	wasm := guest(t)
	exit := testenv.Request{Path: "/fatal", Headers: [][2]string{{"x-op", "fatal"}}}
	plain := testenv.Request{Path: "/plain"}
	grpcReq := testenv.Request{Method: "POST", Path: "/pkg.Svc/M", Headers: [][2]string{{"content-type", "application/grpc"}}}
	failed := func(t *testing.T, resp *testenv.Response) {
		t.Helper()
		assert.Equal(t, 503, resp.Status)
		assert.True(t, resp.LocalReply)
		assert.Equal(t, "wasm_fail_stream", resp.Details)
		assert.Empty(t, resp.Body, "Envoy's failStream sends no body")
		assert.False(t, resp.Reset)
		assert.Nil(t, resp.Upstream)
	}
	host := func(t *testing.T, pol testenv.FailurePolicy, backoff time.Duration, clock *testenv.FakeClock) *testenv.Host {
		opts := testenv.Options{}
		if clock != nil {
			opts.Clock = clock
		}
		return testenv.NewForTest(t, opts,
			testenv.Plugin{Name: "conformance", VMID: "fail", Wasm: wasm, Config: []byte(`{}`), FailurePolicy: pol, ReloadBackoff: backoff})
	}

	t.Run("fail closed (default)", func(t *testing.T) {
		h := host(t, testenv.FailClosed, 0, nil)
		failed(t, do(t, h, exit))
		failed(t, do(t, h, plain))
		resp := do(t, h, grpcReq)
		assert.Equal(t, 200, resp.Status, "gRPC: trailers-only")
		gs, _ := resp.Headers.Get("grpc-status")
		assert.Equal(t, "14", gs)
	})
	t.Run("fail open", func(t *testing.T) {
		h := host(t, testenv.FailOpen, 0, nil)
		resp := do(t, h, exit)
		assert.Equal(t, 200, resp.Status)
		require.NotNil(t, resp.Upstream, "the failed callback counts as Continue")
		resp = do(t, h, plain)
		assert.Equal(t, 200, resp.Status)
		assert.NotNil(t, resp.Upstream, "later streams skip the plugin")
	})
	t.Run("fail reload", func(t *testing.T) {
		clock := testenv.NewFakeClock(time.Unix(1_700_000_000, 0))
		h := host(t, testenv.FailReload, 0, clock)
		failed(t, do(t, h, exit))
		failed(t, do(t, h, plain)) // less than 1 s (Envoy's default backoff) since the VM was loaded
		clock.Advance(time.Second)
		r := report(t, h, "config")
		assert.Equal(t, float64(1), r["plugins"], "a new VM")
		assert.Equal(t, float64(1), r["vm_starts"])
		assert.Equal(t, 200, do(t, h, plain).Status)

		// The backoff counts from the last load.
		failed(t, do(t, h, exit))
		clock.Advance(500 * time.Millisecond)
		failed(t, do(t, h, plain))
		clock.Advance(500 * time.Millisecond)
		assert.Equal(t, 200, do(t, h, plain).Status)
	})
	t.Run("fail reload with a longer backoff", func(t *testing.T) {
		clock := testenv.NewFakeClock(time.Unix(1_700_000_000, 0))
		h := host(t, testenv.FailReload, 5*time.Second, clock)
		failed(t, do(t, h, exit))
		clock.Advance(4 * time.Second)
		failed(t, do(t, h, plain))
		clock.Advance(time.Second)
		assert.Equal(t, 200, do(t, h, plain).Status)
	})
}

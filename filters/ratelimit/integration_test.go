package main_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/globaltest"
	"github.com/meshplug/meshplug/testenv"
)

// integrationSpec is the policy of the integration test: one limit per user per
// second, counted by the real service. Its failure mode is set per proxy.
func integrationSpec(limit int64, deny bool) *config.Spec {
	return &config.Spec{Mode: "global", Domain: "it",
		Global: &config.GlobalSpec{Cluster: "ratelimit", Timeout: configjson.Duration(2 * time.Second), FailureModeDeny: deny},
		Rules: []config.RuleSpec{{Name: "per-user", Descriptors: []config.DescriptorSpec{{Key: "user", Header: "x-user"}},
			Limit: config.LimitSpec{Requests: limit, Unit: "second"}}}}
}

func proxy(t *testing.T, svc *globaltest.Service, spec *config.Spec) *testenv.Host {
	t.Helper()
	cfg, err := json.Marshal(spec)
	require.NoError(t, err)
	return testenv.NewForTest(t, testenv.Options{Workers: 3, Clusters: map[string]string{"ratelimit": svc.GRPCAddr}},
		testenv.Plugin{Name: "ratelimit", VMID: "rl", Wasm: rlWasm(t), Config: cfg})
}

// burst sends n requests of user, spread over the proxies and their workers,
// concurrently, and counts what reached the upstream and what was answered 429, 500.
// Every request must complete (no stream left paused).
func burst(t *testing.T, proxies []*testenv.Host, user string, n int) (admitted, limited, errored int) {
	t.Helper()
	var a, l, e atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := proxies[i%len(proxies)].Do(ctx, testenv.Request{Path: "/buy", Headers: [][2]string{{"x-user", user}}, Worker: i % 3})
			if !assert.NoError(t, err, "request %d did not complete", i) {
				return
			}
			switch {
			case resp.Upstream != nil:
				a.Add(1)
			case resp.Status == 429:
				l.Add(1)
			case resp.Status == 500:
				e.Add(1)
			default:
				t.Errorf("request %d: unexpected %d %s", i, resp.Status, resp.Details)
			}
		}(i)
	}
	wg.Wait()
	return int(a.Load()), int(l.Load()), int(e.Load())
}

// inOneWindow runs f so that it starts just after a second boundary, and says whether
// it ended in the same second: the service counts in fixed windows of the unit
// (envoyproxy/ratelimit: the window is now truncated to the unit), so a burst is
// compared with the limit only when it fell in one window.
func inOneWindow(f func()) bool {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
	start := time.Now().Unix()
	f()
	return time.Now().Unix() == start
}

// TestGlobalWithRealService: two independent proxies of three worker VMs each, in
// front of envoyproxy/ratelimit on Redis, configured from the same policy by the
// renderer. One user's burst is admitted exactly `limit` times in total (the service
// counts with Redis INCRBY in fixed windows: exact, no local cache configured); the
// next window admits again; Redis killed → the failure mode (allowed on two proxies,
// 500 on a third with failure_mode_deny), every request completes, and limiting
// resumes when Redis is back; the same for the service itself, killed while requests
// wait for it.
func TestGlobalWithRealService(t *testing.T) {
	const limit = 7
	svc := globaltest.Start(t, integrationSpec(limit, false))
	allow := []*testenv.Host{proxy(t, svc, integrationSpec(limit, false)), proxy(t, svc, integrationSpec(limit, false))}
	deny := proxy(t, svc, integrationSpec(limit, true))

	round := func(user string) (admitted, limited, errored int) {
		for try := 0; try < 4; try++ {
			if inOneWindow(func() { admitted, limited, errored = burst(t, allow, user, 4*limit) }) {
				return
			}
			t.Logf("burst %d crossed a second boundary; again", try)
		}
		t.Fatal("no burst fit in one second")
		return
	}
	t.Run("limit across proxies", func(t *testing.T) {
		a, l, e := round("alice")
		assert.Equal(t, limit, a, "admitted across both proxies")
		assert.Equal(t, 3*limit, l)
		assert.Zero(t, e)
	})
	t.Run("next window", func(t *testing.T) {
		a, l, _ := round("alice")
		assert.Equal(t, limit, a)
		assert.Equal(t, 3*limit, l)
	})
	m := func(h *testenv.Host, name string) int64 { v, _ := h.Metric(name); return v }
	recovered := func(t *testing.T) {
		t.Helper()
		// Wait (bounded) until the service answers again: Redis reconnects, and the
		// gRPC channel's reconnect backoff passes.
		for i := 0; i < 300; i++ {
			before := m(allow[0], "meshplug.ratelimit.service.ok") + m(allow[0], "meshplug.ratelimit.service.over_limit")
			burst(t, allow[:1], "probe", 1)
			if m(allow[0], "meshplug.ratelimit.service.ok")+m(allow[0], "meshplug.ratelimit.service.over_limit") > before {
				a, l, e := round("bob")
				assert.Equal(t, limit, a, "limiting resumed")
				assert.Equal(t, 3*limit, l)
				assert.Zero(t, e)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("the service did not answer again")
	}
	outage := func(t *testing.T) {
		t.Helper()
		errBefore := m(allow[0], "meshplug.ratelimit.service.error") + m(allow[1], "meshplug.ratelimit.service.error")
		a, l, e := burst(t, allow, "carol", 4*limit)
		assert.Equal(t, 4*limit, a, "failure_mode_deny false: every request passes")
		assert.Zero(t, l+e)
		errAfter := m(allow[0], "meshplug.ratelimit.service.error") + m(allow[1], "meshplug.ratelimit.service.error")
		assert.Equal(t, int64(4*limit), errAfter-errBefore)
		fa := m(allow[0], "meshplug.ratelimit.service.failure_mode_allowed") + m(allow[1], "meshplug.ratelimit.service.failure_mode_allowed")
		assert.GreaterOrEqual(t, fa, int64(4*limit))
		a, l, e = burst(t, []*testenv.Host{deny}, "carol", 6)
		assert.Equal(t, 6, e, "failure_mode_deny: every request gets status_on_error")
		assert.Zero(t, a+l)
	}
	t.Run("redis killed", func(t *testing.T) {
		svc.Redis.Stop()
		outage(t)
		svc.Redis.Start()
		recovered(t)
	})
	t.Run("service killed", func(t *testing.T) {
		// Killed while requests wait for it: each completes (burst fails the test
		// otherwise), passed or limited.
		done := make(chan struct{})
		go func() {
			defer close(done)
			a, l, e := burst(t, allow, "dave", 20*limit)
			assert.Equal(t, 20*limit, a+l)
			assert.Zero(t, e)
		}()
		time.Sleep(5 * time.Millisecond)
		svc.RLS.Stop()
		<-done
		outage(t)
		svc.RLS.Start()
		recovered(t)
	})
}

package main_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine/enginetest"
	"github.com/meshplug/meshplug/testenv"
)

func rlWasm(t testing.TB) []byte {
	t.Helper()
	return testenv.MustBuildGuest(t, ".")
}

func start(t testing.TB, workers int, clock *testenv.FakeClock, cfg string) *testenv.Host {
	t.Helper()
	return testenv.NewForTest(t, testenv.Options{Workers: workers, Clock: clock},
		testenv.Plugin{Name: "ratelimit", VMID: "rl", Wasm: rlWasm(t), Config: []byte(cfg)})
}

func toRequest(r enginetest.Request, worker int) testenv.Request {
	return testenv.Request{Method: r.Method, Path: r.Path, Headers: r.Headers, SourceAddress: r.Source, Worker: worker}
}

// result is what the client got, in enginetest's terms.
func result(resp *testenv.Response) (status, grpc int, headers map[string]string) {
	headers = map[string]string{}
	for _, h := range resp.Headers {
		headers[h.Key] = h.Value
	}
	grpc = -1
	if v, ok := headers["grpc-status"]; ok && resp.LocalReply {
		fmt.Sscan(v, &grpc)
	}
	return resp.Status, grpc, headers
}

// TestDecisionTable replays the engine's decision table through ratelimit.wasm, with
// two worker VMs taking turns: every bucket is shared across them.
func TestDecisionTable(t *testing.T) {
	for _, c := range enginetest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			clock := testenv.NewFakeClock(enginetest.Start)
			h := start(t, 2, clock, c.Config)
			for i, s := range c.Steps {
				clock.Advance(s.Advance)
				resp := h.MustDo(t, toRequest(s.Req, i%2))
				if s.Status == 200 && s.GRPCStatus == 0 {
					assert.NotNil(t, resp.Upstream, "step %d must reach the upstream", i)
				} else {
					assert.True(t, resp.LocalReply, "step %d must be a local reply", i)
					assert.Nil(t, resp.Upstream, "step %d must not reach the upstream", i)
				}
				status, grpc, headers := result(resp)
				enginetest.Check(t, i, s, status, grpc, headers)
			}
		})
	}
}

func TestRejectionReply(t *testing.T) {
	clock := testenv.NewFakeClock(enginetest.Start)
	h := start(t, 1, clock, `{"rules":[{"name":"per-user","descriptors":[{"key":"user","header":"x-user"}],"limit":{"requests":1,"unit":"minute"}}]}`)
	h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "a"}}})
	resp := h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "a"}}})
	assert.Equal(t, 429, resp.Status)
	assert.Equal(t, "meshplug_ratelimit_limited", resp.Details)
	assert.JSONEq(t, `{"error":"rate_limited","message":"too many requests"}`, string(resp.Body))
	ct, _ := resp.Headers.Get("content-type")
	assert.Equal(t, "application/json", ct)
	ra, _ := resp.Headers.Get("retry-after")
	assert.Equal(t, "60", ra)

	resp = h.MustDo(t, testenv.Request{Path: "/pkg.S/M", Headers: [][2]string{{"x-user", "a"}, {"content-type", "application/grpc"}}})
	require.NotNil(t, resp.GrpcStatus)
	assert.Equal(t, uint32(8), *resp.GrpcStatus)
	msg, _ := resp.Headers.Get("grpc-message")
	assert.Equal(t, "too many requests", msg)
}

func TestMetrics(t *testing.T) {
	clock := testenv.NewFakeClock(enginetest.Start)
	h := start(t, 2, clock, `{"max_keys":64,"rules":[
		{"name":"user","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":1,"unit":"minute"}},
		{"name":"probe","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":1,"unit":"minute"},"shadow":true}]}`)
	for i := 0; i < 3; i++ {
		h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "a"}}, Worker: i % 2})
	}
	h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", "b"}}, Worker: 1})
	m := func(name string) int64 {
		v, ok := h.Metric(name)
		require.True(t, ok, "metric %s is defined", name)
		return v
	}
	assert.Equal(t, int64(2), m("meshplug.ratelimit.user.allowed"))
	assert.Equal(t, int64(2), m("meshplug.ratelimit.user.limited"))
	assert.Equal(t, int64(0), m("meshplug.ratelimit.user.shadow_limited"))
	assert.Equal(t, int64(1), m("meshplug.ratelimit.probe.allowed"))
	assert.Equal(t, int64(3), m("meshplug.ratelimit.probe.shadow_limited"))
	assert.Equal(t, int64(3), m("meshplug.ratelimit.keys_tracked"))
	assert.Equal(t, int64(0), m("meshplug.ratelimit.errors"))
	logs := fmt.Sprint(h.Logs())
	assert.Contains(t, logs, "ratelimit: shadow: rule probe would limit GET /")

	// All buckets full again: the next writes drop idle ones from their groups.
	clock.Advance(time.Hour)
	// (Groups are chosen under a random seed: 200 keys write every group of 32 but
	// with a chance below 1e-7.)
	for i := 0; i < 200; i++ {
		h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", fmt.Sprint("u", i)}}})
	}
	assert.Less(t, m("meshplug.ratelimit.keys_tracked")+m("meshplug.ratelimit.keys_evicted"), int64(200+3), "idle buckets dropped")
	assert.LessOrEqual(t, m("meshplug.ratelimit.keys_tracked"), int64(32*8))
}

func TestMaxKeysBoundsSharedData(t *testing.T) {
	clock := testenv.NewFakeClock(enginetest.Start)
	h := start(t, 1, clock, `{"max_keys":64,"rules":[{"name":"user","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":1,"unit":"hour"}}]}`)
	for i := 0; i < 500; i++ {
		h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", fmt.Sprint("u", i)}}})
	}
	tracked, _ := h.Metric("meshplug.ratelimit.keys_tracked")
	evicted, _ := h.Metric("meshplug.ratelimit.keys_evicted")
	assert.LessOrEqual(t, tracked, int64(32*8), "32 groups of 8")
	assert.Equal(t, int64(500), tracked+evicted)
	groups := 0
	for g := 0; g < 32; g++ {
		if _, _, ok := h.SharedData("rl", fmt.Sprintf("meshplug.ratelimit/ratelimit/32/%d", g)); ok {
			groups++
		}
	}
	assert.Equal(t, 32, groups)
	_, _, ok := h.SharedData("rl", "meshplug.ratelimit/ratelimit/32/32")
	assert.False(t, ok, "no entry beyond the table")
}

// TestTwoPluginsNeverShareBuckets: two ratelimit plugins with the same rule in one
// chain and one vm_id (so one shared VM per worker, with a root context each, and one
// shared-data namespace) keep separate buckets: keys are namespaced by plugin name.
func TestTwoPluginsNeverShareBuckets(t *testing.T) {
	cfg := []byte(`{"rules":[{"name":"r","descriptors":[{"key":"k","value":"all"}],"limit":{"requests":2,"unit":"minute"}}]}`)
	h := testenv.NewForTest(t, testenv.Options{Clock: testenv.NewFakeClock(enginetest.Start)},
		testenv.Plugin{Name: "rl-a", VMID: "shared", Wasm: rlWasm(t), Config: cfg},
		testenv.Plugin{Name: "rl-b", VMID: "shared", Wasm: rlWasm(t), Config: cfg})
	// Each request takes a token from both: with shared buckets the second would be
	// rejected by rl-b.
	assert.Equal(t, 200, h.MustDo(t, testenv.Request{}).Status)
	assert.Equal(t, 200, h.MustDo(t, testenv.Request{}).Status)
	assert.Equal(t, 429, h.MustDo(t, testenv.Request{}).Status)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{`{"rules":[{"name":"r","descriptors":[{"key":"k","header":"x"}],"limit":{"requests":0,"unit":"second"}}]}`, "rules[0].limit.requests: must be 1..1000000000, got 0"},
		{`{"rules":[{"name":"r","descriptors":[{"key":"k"}],"limit":{"requests":1,"unit":"second"}}]}`, "rules[0].descriptors[0]: exactly one of header"},
		{`{"rules":[],"max_keys":"many"}`, "max_keys: expected an integer, got a string"},
		{`not json`, "invalid JSON"},
	} {
		_, err := testenv.New(context.Background(), testenv.Options{}, testenv.Plugin{Name: "ratelimit", Wasm: rlWasm(t), Config: []byte(c.cfg)})
		require.Error(t, err, c.cfg)
		assert.Contains(t, err.Error(), "ratelimit: invalid configuration: "+c.want)
	}
}

// TestAccuracyAcrossWorkers: 8 worker VMs, 64 goroutines, the same keys; every round
// uses fresh keys so that entries are created concurrently, and every other round puts
// all requests on one key. Admitted requests must equal the limit exactly.
func TestAccuracyAcrossWorkers(t *testing.T) {
	const (
		workers    = 8
		goroutines = 64
		maxKeys    = 10
		burst      = 100
		perRound   = maxKeys * burst * 5 // 5× the limit of each key when spread
	)
	total := 100_000
	if testing.Short() {
		total = 10_000
	}
	rounds := total / perRound
	clock := testenv.NewFakeClock(enginetest.Start) // frozen: no refill during a round
	h := start(t, workers, clock, fmt.Sprintf(`{"rules":[{"name":"acc","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":%d,"unit":"hour"}}]}`, burst))
	ctx := context.Background()
	var sent atomic.Int64
	for round := 0; round < rounds; round++ {
		keys := maxKeys
		if round%2 == 1 {
			keys = 1
		}
		var admitted [maxKeys]atomic.Int64
		var next atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(perRound) {
						return
					}
					k := int(i) % keys
					resp, err := h.Do(ctx, testenv.Request{Headers: [][2]string{{"x-user", fmt.Sprintf("r%d-k%d", round, k)}}, Worker: g % workers})
					if err != nil {
						t.Error(err)
						return
					}
					sent.Add(1)
					if resp.Status == 200 {
						admitted[k].Add(1)
					} else if resp.Status != 429 {
						t.Errorf("status %d", resp.Status)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		for k := 0; k < keys; k++ {
			assert.Equal(t, int64(burst), admitted[k].Load(), "round %d key %d", round, k)
		}
	}
	retries, _ := h.Metric("meshplug.ratelimit.cas_retries")
	errs, _ := h.Metric("meshplug.ratelimit.errors")
	assert.Equal(t, int64(0), errs)
	assert.Equal(t, int64(rounds*perRound), sent.Load())
	t.Logf("%d requests in %d rounds over %d worker VMs: %d CAS retries", sent.Load(), rounds, workers, retries)
}

func TestLongKeysAreHashed(t *testing.T) {
	h := start(t, 1, testenv.NewFakeClock(enginetest.Start), `{"rules":[{"name":"r","descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":1,"unit":"hour"}}]}`)
	long := strings.Repeat("x", 4000)
	assert.Equal(t, 200, h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", long}}}).Status)
	assert.Equal(t, 429, h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", long}}}).Status)
	assert.Equal(t, 200, h.MustDo(t, testenv.Request{Headers: [][2]string{{"x-user", long + "y"}}}).Status)
}

// TestReconfiguration: a new configuration (testenv's Host.Reconfigure: a new root
// context in the live VMs, as an xDS update in Envoy) finds the buckets the old one
// left in shared data, which lives as long as the proxy. A rule whose name and limit
// are unchanged keeps its buckets; a changed limit, a renamed rule or another max_keys
// starts afresh. A configuration the plugin refuses leaves the old one running.
func TestReconfiguration(t *testing.T) {
	rules := func(userName string, userLimit, ipLimit, maxKeys int) []byte {
		return []byte(fmt.Sprintf(`{"max_keys":%d,"rules":[
			{"name":%q,"match":{"prefix":"/u"},"descriptors":[{"key":"u","header":"x-user"}],"limit":{"requests":%d,"unit":"minute"}},
			{"name":"ip","match":{"prefix":"/i"},"descriptors":[{"key":"ip","client_address":true}],"limit":{"requests":%d,"unit":"minute"}}]}`, maxKeys, userName, userLimit, ipLimit))
	}
	h := start(t, 2, testenv.NewFakeClock(enginetest.Start), string(rules("user", 2, 2, 64)))
	ctx := context.Background()
	user := func() int {
		return h.MustDo(t, testenv.Request{Path: "/u", Headers: [][2]string{{"x-user", "a"}}, Worker: -1}).Status
	}
	ip := func() int { return h.MustDo(t, testenv.Request{Path: "/i", Worker: -1}).Status }
	exhaust := func() {
		t.Helper()
		for _, take := range []func() int{user, ip} {
			n := 0
			for take() == 200 {
				n++
				require.Less(t, n, 10, "the limit is 2 or 3")
			}
		}
	}
	exhaust()

	require.NoError(t, h.Reconfigure(ctx, 0, rules("user", 2, 3, 64)))
	assert.Equal(t, 429, user(), "unchanged rule keeps its bucket")
	assert.Equal(t, 200, ip(), "changed limit starts afresh")
	exhaust()

	require.NoError(t, h.Reconfigure(ctx, 0, rules("per-user", 2, 3, 64)))
	assert.Equal(t, 200, user(), "renamed rule starts afresh")
	assert.Equal(t, 429, ip(), "the other rule keeps its bucket")
	exhaust()

	err := h.Reconfigure(ctx, 0, []byte(`{"rules":[{"name":"x"}]}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rules[0].descriptors: at least one descriptor entry is required")
	assert.Equal(t, 429, user(), "a refused configuration leaves the old one running")

	require.NoError(t, h.Reconfigure(ctx, 0, rules("per-user", 2, 3, 128)))
	assert.Equal(t, 200, user(), "another max_keys is another table")
	assert.Equal(t, 200, ip())
}

// readmeExamples returns the JSON blocks of README.md marked `<!-- example: NAME -->`.
func readmeExamples(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("README.md")
	require.NoError(t, err)
	re := regexp.MustCompile("(?s)<!-- example: ([a-z-]+) -->\n```json\n(.*?)```")
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		out[m[1]] = m[2]
	}
	require.Len(t, out, 5, "README examples")
	return out
}

// TestReadmeExamples: every ratelimit configuration in the README starts
// ratelimit.wasm.
func TestReadmeExamples(t *testing.T) {
	for name, cfg := range readmeExamples(t) {
		if name == "auth" {
			continue
		}
		_, err := config.Parse([]byte(cfg))
		assert.NoError(t, err, name)
	}
}

// TestReadmeChainAfterAuth runs the README's auth and ratelimit examples as a chain.
func TestReadmeChainAfterAuth(t *testing.T) {
	ex := readmeExamples(t)
	h := testenv.NewForTest(t, testenv.Options{Workers: 2, Clock: testenv.NewFakeClock(enginetest.Start)},
		testenv.Plugin{Name: "auth", VMID: "auth", Wasm: testenv.MustBuildGuest(t, "../auth"), Config: []byte(ex["auth"])},
		testenv.Plugin{Name: "ratelimit", VMID: "rl", Wasm: rlWasm(t), Config: []byte(ex["ratelimit-after-auth"])})
	const zeta, acme = "zeta-key-0123456789abcdef", "acme-key-0123456789abcdef"
	call := func(key string, extra ...[2]string) *testenv.Response {
		return h.MustDo(t, testenv.Request{Path: "/api/orders", Headers: append([][2]string{{"x-api-key", key}}, extra...), Worker: -1})
	}
	for i := 0; i < 2; i++ {
		resp := call(zeta)
		require.Equal(t, 200, resp.Status)
		consumer, _ := resp.Upstream.Headers.Get("x-consumer")
		assert.Equal(t, "zeta", consumer)
	}
	// A zeta caller claiming to be gold-acme is still zeta: auth replaced the header.
	resp := call(zeta, [2]string{"x-consumer", "gold-acme"})
	assert.Equal(t, 429, resp.Status)
	ra, _ := resp.Headers.Get("retry-after")
	assert.Equal(t, "30", ra)
	for i := 0; i < 20; i++ {
		resp := call(acme)
		require.Equal(t, 200, resp.Status, "gold-acme request %d", i)
		limit, _ := resp.Headers.Get("ratelimit-limit")
		assert.Equal(t, "20, 20;w=60", limit)
	}
	assert.Equal(t, 429, call(acme).Status)
	// No key: auth answers 401 before ratelimit; public paths pass both.
	assert.Equal(t, 401, h.MustDo(t, testenv.Request{Path: "/api/orders"}).Status)
	assert.Equal(t, 200, h.MustDo(t, testenv.Request{Path: "/healthz"}).Status)
}

//go:build !wasip1

package main

// These tests drive the compiled routehint.wasm through testenv. The decision table
// runs twice, natively (engine.Request.Read + engine.Engine.Decide, applied to the
// header list the way the glue applies them) and through the .wasm, and both must give
// the upstream the same hint headers. Then what needs the proxy around it: the router
// picking the subset from the hint, sticky splits across worker VMs and restarts,
// metrics, the echo header and configuration errors.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/filters/routehint/engine"
	"github.com/meshplug/meshplug/filters/routehint/routehinttest"
	"github.com/meshplug/meshplug/internal/race"
	"github.com/meshplug/meshplug/testenv"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// The decision table and its configurations live in routehinttest (testenv/cpphost
// runs the same rows on proxy-wasm-cpp-host).
var (
	tableTargets  = routehinttest.Targets
	c             = routehinttest.C
	cond          = routehinttest.Cond
	with          = routehinttest.With
	orderCfg      = routehinttest.OrderCfg
	hintNames     = routehinttest.HintNames
	decisionTable = routehinttest.DecisionTable
)

type tableCase = routehinttest.Case

// applyNative runs the engine on the request and returns the upstream's view of the
// hint headers, applying Strip and Headers as the glue does.
func applyNative(t *testing.T, cfgJSON []byte, tc tableCase) (map[string]string, []string) {
	cfg, err := config.Parse(cfgJSON)
	require.NoError(t, err)
	method, path := tc.Method, tc.Path
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	pairs := []abi.Pair{{Key: ":method", Value: method}, {Key: ":path", Value: path}}
	for _, kv := range tc.Headers {
		pairs = append(pairs, abi.Pair{Key: strings.ToLower(kv[0]), Value: kv[1]})
	}
	var req engine.Request
	req.Read(cfg, abi.PairsView(abi.EncodePairs(pairs)))
	var v engine.Verdict
	engine.New(cfg, func() uint64 { return 0 }).Decide(&req, &v)
	up := map[string]string{}
	for _, p := range pairs {
		up[p.Key] = p.Value
	}
	for _, s := range req.Strip {
		delete(up, s)
	}
	for _, h := range v.Headers {
		up[h.Name] = h.Value
	}
	var targets []string
	for _, a := range v.Applied {
		targets = append(targets, a.Target.Name)
	}
	return hints(func(n string) (string, bool) { v, ok := up[n]; return v, ok }), targets
}

func hints(get func(string) (string, bool)) map[string]string {
	out := map[string]string{}
	for _, n := range hintNames {
		if v, ok := get(n); ok {
			out[n] = v
		}
	}
	// A trusted header arriving with a value the rules do not touch is still a hint.
	return out
}

func TestDecisionTable(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	for _, tc := range decisionTable() {
		t.Run(tc.Name, func(t *testing.T) {
			raw := mustJSON(t, tc.Cfg)
			got, targets := applyNative(t, raw, tc)
			assert.Equal(t, tc.Want, got, "native")
			assert.Equal(t, tc.Targets, targets, "native targets")

			h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm,
				Config: mustJSON(t, with(tc.Cfg, "echo_header", "x-route-target"))})
			resp := h.MustDo(t, testenv.Request{Method: tc.Method, Path: tc.Path, Headers: tc.Headers})
			require.NotNil(t, resp.Upstream, "status %d", resp.Status)
			assert.Equal(t, tc.Want, hints(resp.Upstream.Headers.Get), "wasm")
			assert.Equal(t, subsetOf[tc.Want["x-route-hint"]], resp.Cluster, "the router's choice")
			echo, _ := resp.Headers.Get("x-route-target")
			wantEcho := strings.Join(tc.Targets, ",")
			if wantEcho == "" {
				wantEcho = "-"
			}
			assert.Equal(t, wantEcho, echo, "wasm echo header")
		})
	}
}

// bucketTarget is the documented mapping, computed independently of the engine's
// incremental hashing: XXH64(salt 0x00 key) mod 10000 against the cumulative weights.
func bucketTarget(salt, key string, canaryPercent int) string {
	if int(engine.Bucket(salt, key)) < canaryPercent*100 {
		return "canary"
	}
	return "stable"
}

func splitCfg(canaryWeight int, key map[string]any) map[string]any {
	split := map[string]any{"salt": "exp-1", "weights": []any{
		map[string]any{"target": "canary", "weight": canaryWeight},
		map[string]any{"target": "stable", "weight": 100 - canaryWeight},
	}}
	if key != nil {
		split["key"] = key
	}
	return map[string]any{"targets": tableTargets, "rules": []any{map[string]any{"name": "rollout", "split": split}}}
}

// routes is the router stage standing for the VirtualService in README.md: hint
// x-route-hint=canary → the v2 subset, anything else → v1.
var routes = []testenv.Route{
	{Name: "reviews-canary", Match: testenv.RouteMatch{Prefix: "/", Headers: []testenv.HeaderMatcher{{Name: "x-route-hint", Exact: "canary"}}}, Cluster: "outbound|9080|v2|reviews"},
	{Name: "reviews-beta", Match: testenv.RouteMatch{Prefix: "/", Headers: []testenv.HeaderMatcher{{Name: "x-route-hint", Exact: "beta"}}}, Cluster: "outbound|9080|beta|reviews"},
	{Name: "reviews-default", Match: testenv.RouteMatch{Prefix: "/"}, Cluster: "outbound|9080|v1|reviews"},
}

var subsetOf = map[string]string{"canary": "outbound|9080|v2|reviews", "beta": "outbound|9080|beta|reviews", "stable": "outbound|9080|v1|reviews", "": "outbound|9080|v1|reviews"}

// TestRequestReachesChosenSubset: the router stage (Envoy's route cache cleared by the
// filter's header edits) sends each request to the subset its hint names; a client's
// own hint header does not.
func TestRequestReachesChosenSubset(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: mustJSON(t, orderCfg("first"))})
	for _, tc := range []struct {
		name    string
		path    string
		headers [][2]string
		target  string
	}{
		{"beta user", "/web", [][2]string{{"x-group", "beta"}}, "beta"},
		{"api canary", "/api/reviews/1", nil, "canary"},
		{"rest stable", "/web", nil, "stable"},
		{"spoofed canary hint", "/web", [][2]string{{"x-route-hint", "canary"}}, "stable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.MustDo(t, testenv.Request{Path: tc.path, Headers: tc.headers})
			require.NotNil(t, resp.Upstream)
			assert.Equal(t, subsetOf[tc.target], resp.Cluster)
			assert.Equal(t, subsetOf[tc.target], resp.Upstream.Cluster)
		})
	}

	// Without the filter, the spoofed hint would have won: the router really re-reads
	// the header (the test above can fail).
	bare := testenv.NewForTest(t, testenv.Options{Routes: routes})
	resp := bare.MustDo(t, testenv.Request{Path: "/web", Headers: [][2]string{{"x-route-hint", "canary"}}})
	assert.Equal(t, subsetOf["canary"], resp.Cluster)
}

// TestStickyAcrossVMsAndRestarts: a key lands on the same target on every worker VM
// and after a restart (a new host), and on the target the documented hash names.
func TestStickyAcrossVMsAndRestarts(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	cfg := mustJSON(t, splitCfg(30, map[string]any{"header": "x-consumer"}))
	start := func() *testenv.Host {
		return testenv.NewForTest(t, testenv.Options{Workers: 2, Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: cfg})
	}
	first, restarted := start(), start()
	n := keysFor(2000, 300)
	canaries := 0
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("user-%d", i)
		want := bucketTarget("exp-1", key, 30)
		if want == "canary" {
			canaries++
		}
		for _, run := range []struct {
			h      *testenv.Host
			worker int
		}{{first, 0}, {first, 1}, {restarted, 1}} {
			resp := run.h.MustDo(t, testenv.Request{Path: "/", Worker: run.worker, Headers: [][2]string{{"x-consumer", key}}})
			if !assert.Equal(t, subsetOf[want], resp.Cluster, "key %s on worker %d", key, run.worker) {
				return
			}
		}
	}
	assert.InDelta(t, 0.30, float64(canaries)/float64(n), 0.05, "a 30%% split")
}

// TestDistributionThroughWasm: 100,000 users (10,000 under the race detector) through
// routehint.wasm and the router: each subset gets its weight's share within ±1 point.
func TestDistributionThroughWasm(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm,
		Config: mustJSON(t, splitCfg(10, map[string]any{"header": "x-consumer"}))})
	n, canaries := keysFor(100000, 10000), 0
	req := testenv.Request{Path: "/", Headers: [][2]string{{"x-consumer", ""}}}
	for i := 0; i < n; i++ {
		req.Headers[0][1] = "u" + strconv.Itoa(i)
		switch h.MustDo(t, req).Cluster {
		case subsetOf["canary"]:
			canaries++
		case subsetOf["stable"]:
		default:
			t.Fatalf("user u%d reached no split subset", i)
		}
	}
	assert.InDelta(t, 0.10, float64(canaries)/float64(n), 0.01)
	v, _ := h.Metric("meshplug.routehint.target.canary.chosen")
	assert.EqualValues(t, canaries, v)
}

// TestMonotoneThroughWasm: raising the canary weight from 10 to 25 moves keys from
// stable to canary only.
func TestMonotoneThroughWasm(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	at := func(w int) *testenv.Host {
		return testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm,
			Config: mustJSON(t, splitCfg(w, map[string]any{"cookie": "session"}))})
	}
	low, high := at(10), at(25)
	moved := 0
	for i := 0; i < keysFor(2000, 300); i++ {
		req := testenv.Request{Path: "/", Headers: [][2]string{{"cookie", fmt.Sprintf("session=s%d", i)}}}
		a, b := low.MustDo(t, req).Cluster, high.MustDo(t, req).Cluster
		if a == subsetOf["canary"] {
			require.Equal(t, subsetOf["canary"], b, "session s%d left the canary when its weight rose", i)
		} else if b == subsetOf["canary"] {
			moved++
		}
	}
	assert.Positive(t, moved)
}

// TestRandomSplitAndMissingKey: without a key the split is random per request; a
// missing key falls back to on_missing_key and is counted.
func TestRandomSplitAndMissingKey(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: mustJSON(t, splitCfg(50, nil))})
	n, canaries := keysFor(2000, 400), 0
	for i := 0; i < n; i++ {
		if h.MustDo(t, testenv.Request{Path: "/"}).Cluster == subsetOf["canary"] {
			canaries++
		}
	}
	// 50% of n requests: far more than 6 standard deviations from either end.
	assert.InDelta(t, 0.5, float64(canaries)/float64(n), 0.15)

	cfg := splitCfg(50, map[string]any{"header": "x-consumer"})
	cfg["rules"].([]any)[0].(map[string]any)["split"].(map[string]any)["on_missing_key"] = "stable"
	h = testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: mustJSON(t, cfg)})
	for i := 0; i < 20; i++ {
		assert.Equal(t, subsetOf["stable"], h.MustDo(t, testenv.Request{Path: "/"}).Cluster)
	}
	// A repeated key is no key, nor one spelled so that upstreams read it differently.
	resp := h.MustDo(t, testenv.Request{Path: "/", Headers: [][2]string{{"x-consumer", "a"}, {"x-consumer", "b"}}})
	assert.Equal(t, subsetOf["stable"], resp.Cluster)
	resp = h.MustDo(t, testenv.Request{Path: "/", Headers: [][2]string{{"x_consumer", "a"}}})
	assert.Equal(t, subsetOf["stable"], resp.Cluster)
	v, _ := h.Metric(engine.MetricKeyMissing)
	assert.EqualValues(t, 22, v)
}

// TestClientAddressKey: the split hashes source.address without its port.
func TestClientAddressKey(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm,
		Config: mustJSON(t, splitCfg(50, map[string]any{"client_address": true}))})
	for i := 0; i < 50; i++ {
		ip := fmt.Sprintf("10.0.%d.%d", i/250, i%250)
		want := subsetOf[bucketTarget("exp-1", ip, 50)]
		for _, port := range []int{1000, 2000} {
			resp := h.MustDo(t, testenv.Request{Path: "/", SourceAddress: fmt.Sprintf("%s:%d", ip, port)})
			assert.Equal(t, want, resp.Cluster, "%s:%d", ip, port)
		}
	}
	resp := h.MustDo(t, testenv.Request{Path: "/", SourceAddress: "[2001:db8::1]:443"})
	assert.Equal(t, subsetOf[bucketTarget("exp-1", "2001:db8::1", 50)], resp.Cluster)
	// One client, one target, however the host spells its address.
	for i := 0; i < 50; i++ {
		ip := fmt.Sprintf("10.1.%d.%d", i/250, i%250)
		want := subsetOf[bucketTarget("exp-1", ip, 50)]
		for _, src := range []string{ip + ":1", "[::ffff:" + ip + "]:2", fmt.Sprintf("[::ffff:a01:%x]:3", i)} {
			assert.Equal(t, want, h.MustDo(t, testenv.Request{Path: "/", SourceAddress: src}).Cluster, src)
		}
	}
	for _, src := range []string{"[2001:DB8:0::1]:1", "[2001:db8::1%eth0]:2"} {
		assert.Equal(t, subsetOf[bucketTarget("exp-1", "2001:db8::1", 50)], h.MustDo(t, testenv.Request{Path: "/", SourceAddress: src}).Cluster, src)
	}
}

// TestMetrics: per rule, per target, overrides, spoofed hints, no match.
func TestMetrics(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	cfg := orderCfg("first")
	cfg["rules"] = cfg["rules"].([]any)[:2] // no catch-all
	cfg["override"] = map[string]any{"header": "x-force", "allowed": []string{"canary"}}
	h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: mustJSON(t, cfg)})
	do := func(path string, headers ...[2]string) { h.MustDo(t, testenv.Request{Path: path, Headers: headers}) }
	do("/api/1")
	do("/api/2")
	do("/web", [2]string{"x-group", "beta"})
	do("/web")
	do("/web", [2]string{"x-route-hint", "canary"})
	do("/web", [2]string{"x-force", "canary"})
	do("/web", [2]string{"x-force", "beta"})
	for name, want := range map[string]int64{
		"meshplug.routehint.rule.api.matched":         2,
		"meshplug.routehint.rule.beta-users.matched":  1,
		"meshplug.routehint.target.canary.chosen":     3,
		"meshplug.routehint.target.beta.chosen":       1,
		"meshplug.routehint.target.stable.chosen":     0,
		engine.MetricNoMatch:                          3,
		engine.MetricSpoofedRemoved:                   1,
		engine.MetricOverrideAccepted:                 1,
		engine.MetricOverrideRejected:                 1,
		"wasmcustom.meshplug.routehint.no_match":      3,
		"meshplug.routehint.target.plain.chosen":      0,
		"meshplug.routehint.rule.beta-users.matched ": -1, // not defined: a name with a space
	} {
		v, ok := h.Metric(name)
		if want < 0 {
			assert.False(t, ok, name)
			continue
		}
		assert.True(t, ok, "%s defined", name)
		assert.Equal(t, want, v, name)
	}
}

// TestBadConfigurationRefused: an invalid regex (and other errors) refuse the plugin at
// configure time, naming the field.
func TestBadConfigurationRefused(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	for _, tc := range []struct{ cfg, want string }{
		{string(mustJSON(t, cond(c("header", "x-user", "regex", "a(b")))), "rules[0].match.all[0].value: invalid regex"},
		{`{"targets": [{"name": "a"}], "rules": [{"name": "r", "target": "b"}]}`, `rules[0].target: no target named "b"`},
		{`{"targets": [{"name": "a"}], "bogus": 1}`, "bogus: unknown field"},
		{`not json`, "invalid JSON"},
	} {
		h, err := testenv.New(t.Context(), testenv.Options{}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: []byte(tc.cfg)})
		if !assert.Error(t, err, tc.cfg) {
			h.Close(t.Context())
			continue
		}
		assert.Contains(t, err.Error(), tc.want)
	}
}

// keysFor sizes a loop: fewer requests under the race detector, which slows the host
// tenfold.
func keysFor(normal, underRace int) int {
	if race.Enabled {
		return underRace
	}
	return normal
}

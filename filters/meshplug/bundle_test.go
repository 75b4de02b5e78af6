//go:build !wasip1

package main

// The bundle meshplug.wasm driven through testenv: the four filters in one VM per
// worker, selected by root id; several plugins of one filter in that VM, each with its
// own configuration, buckets and metrics; an unknown root id refused; and what a trap
// in one filter does to the others sharing the VM.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/testenv"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// The chain of DESIGN.md: auth (API key "k-ci" is consumer "ci"), ratelimit (2 per
// minute per consumer), routehint (ci's requests to canary), fault (abort with 503
// when x-fault is "yes").
var (
	authCfg = fmt.Sprintf(`{"api_keys": {"from_headers": ["x-api-key"], "keys": [{"consumer": "ci", "sha256": %q}]},
	  "rules": [{"match": {"prefix": "/"}, "requires": ["api_keys"]}]}`, sha("k-ci"))
	rateCfg = `{"rules": [{"name": "per-consumer", "descriptors": [{"key": "c", "header": "x-consumer"}], "limit": {"requests": 2, "unit": "minute"}}]}`
	hintCfg = `{"targets": [{"name": "canary", "headers": {"x-route-hint": "canary"}}, {"name": "stable"}],
	  "rules": [{"name": "ci", "match": {"all": [{"from": "header", "name": "x-consumer", "op": "equal", "value": "ci"}]}, "target": "canary"}]}`
	faultCfg = `{"faults": [{"name": "chaos", "headers": [{"name": "x-fault", "string_match": {"exact": "yes"}}],
	  "abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`
)

func bundle(t testing.TB) []byte { return testenv.MustBuildGuest(t, ".") }

// chain is the four filters as plugins of one module: the bundle (one VM key) or the
// per-filter modules.
func chain(t testing.TB, bundled bool) []testenv.Plugin {
	var ps []testenv.Plugin
	for _, f := range []struct{ name, cfg string }{{"auth", authCfg}, {"ratelimit", rateCfg}, {"routehint", hintCfg}, {"fault", faultCfg}} {
		p := testenv.Plugin{Name: f.name, RootID: f.name, Config: []byte(f.cfg)}
		if bundled {
			p.Wasm, p.VMID = bundle(t), "meshplug"
		} else {
			p.Wasm, p.VMID = testenv.MustBuildGuest(t, "../"+f.name), f.name
		}
		ps = append(ps, p)
	}
	return ps
}

func req(w int, path string, headers ...[2]string) testenv.Request {
	return testenv.Request{Worker: w, Path: path, Headers: headers}
}

func TestBundleChain(t *testing.T) {
	h := testenv.NewForTest(t, testenv.Options{Workers: 2}, chain(t, true)...)
	key := [2]string{"x-api-key", "k-ci"}
	steps := []struct {
		name   string
		req    testenv.Request
		status int
		hint   string // x-route-hint upstream ("" = none, or not forwarded)
	}{
		{"no key: auth", req(0, "/a"), 401, ""},
		{"key: routed to canary", req(0, "/a", key), 200, "canary"},
		{"fault header: fault aborts", req(1, "/a", key, [2]string{"x-fault", "yes"}), 503, ""},
		{"third request of ci: ratelimit (buckets shared by the workers)", req(1, "/a", key), 429, ""},
	}
	for _, s := range steps {
		resp := h.MustDo(t, s.req)
		assert.Equal(t, s.status, resp.Status, s.name)
		if s.hint != "" {
			require.NotNil(t, resp.Upstream, s.name)
			hint, _ := resp.Upstream.Headers.Get("x-route-hint")
			assert.Equal(t, s.hint, hint, s.name)
		}
	}
	for _, m := range []string{"meshplug.auth.allowed", "meshplug.ratelimit.per-consumer.limited", "meshplug.routehint.rule.ci.matched", "meshplug.fault.aborts_injected"} {
		v, ok := h.Metric(m)
		assert.True(t, ok && v > 0, "metric %s = %d (defined %v): each filter counted under its documented name", m, v, ok)
	}
	// One VM per worker: all four plugins have the same linear memory.
	for w := range 2 {
		mem := h.GuestMemory(0, w)
		for p := 1; p < 4; p++ {
			assert.Equal(t, mem, h.GuestMemory(p, w), "plugin %d on worker %d shares auth's VM", p, w)
		}
	}
}

// Two plugins of one filter in the bundle's VM keep their own configuration, buckets
// and metrics.
func TestBundleTwoPluginsOfOneFilter(t *testing.T) {
	wasm := bundle(t)
	limit := func(n int) []byte {
		return fmt.Appendf(nil, `{"rules": [{"name": "r", "descriptors": [{"key": "k", "value": "all"}], "limit": {"requests": %d, "unit": "minute"}}]}`, n)
	}
	h := testenv.NewForTest(t, testenv.Options{Workers: 2},
		testenv.Plugin{Name: "default.rl-b", RootID: "ratelimit", VMID: "meshplug", Wasm: wasm, Config: limit(3)},
		testenv.Plugin{Name: "default.rl-a", RootID: "ratelimit", VMID: "meshplug", Wasm: wasm, Config: limit(1)})
	statuses := make([]int, 0, 3)
	for i := range 3 {
		statuses = append(statuses, h.MustDo(t, req(i%2, "/")).Status)
	}
	// rl-b (3 a minute, first in the chain) allows all three; rl-a allows 1 and limits
	// the 2nd and 3rd.
	assert.Equal(t, []int{200, 429, 429}, statuses)
	metrics := h.Metrics()
	assert.EqualValues(t, 1, metrics["meshplug.ratelimit.default.rl-a.r.allowed"], "rl-a's own counter")
	assert.EqualValues(t, 2, metrics["meshplug.ratelimit.default.rl-a.r.limited"])
	assert.EqualValues(t, 3, metrics["meshplug.ratelimit.default.rl-b.r.allowed"], "rl-b counted each request it saw, under its own name")
	assert.EqualValues(t, 0, metrics["meshplug.ratelimit.default.rl-b.r.limited"])
	_, plain := metrics["meshplug.ratelimit.r.allowed"]
	assert.False(t, plain, "plugins not named like their filter define no unscoped names: %v", metrics)

	// rl-b's bucket is its own: with rl-a reconfigured to let everything through, rl-b
	// limits the 4th request (its 3 are used).
	require.NoError(t, h.Reconfigure(t.Context(), 1, limit(100)))
	assert.Equal(t, 429, h.MustDo(t, req(0, "/")).Status, "rl-b's bucket kept its 3 requests")
	assert.EqualValues(t, 1, h.Metrics()["meshplug.ratelimit.default.rl-b.r.limited"])
}

func TestBundleRootIDs(t *testing.T) {
	wasm := bundle(t)
	cases := []struct {
		rootID string
		errHas []string // "" = starts
	}{
		{"auth", nil}, {"ratelimit", nil}, {"routehint", nil}, {"fault", nil},
		{"", []string{`no filter registered for root id ""`, "auth, fault, ratelimit, routehint"}},
		{"Auth", []string{`root id "Auth"`}},
		{"auth ", []string{`root id "auth "`}},
		{"meshplug", []string{`root id "meshplug"`}},
	}
	cfg := map[string]string{"auth": authCfg, "ratelimit": rateCfg, "routehint": hintCfg, "fault": faultCfg}
	for _, c := range cases {
		t.Run(c.rootID, func(t *testing.T) {
			conf := cfg[c.rootID]
			if conf == "" {
				conf = authCfg
			}
			h, err := testenv.New(t.Context(), testenv.Options{}, testenv.Plugin{Name: "p", RootID: c.rootID, VMID: "meshplug", Wasm: wasm, Config: []byte(conf)})
			if c.errHas == nil {
				require.NoError(t, err)
				require.NoError(t, h.Close(t.Context()))
				return
			}
			require.Error(t, err, "root id %q must be refused", c.rootID)
			for _, s := range c.errHas {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

// A trap (a Go fatal error: nothing recovers it) in one filter fails the VM of every
// plugin sharing it, and each applies its own failure policy: auth fails closed, so
// in the bundle a trap in any filter stops the chain (503) until the VM is reloaded;
// in separate VMs only the trapping, fail-open filter drops out. The trap is in a test
// bundle (testdata/trapbundle: auth's glue beside a filter that traps on x-trap), as
// meshplug.wasm's filters recover their panics and cannot be made to trap on demand.
func TestBundleTrapFailurePolicies(t *testing.T) {
	trap := testenv.MustBuildGuest(t, "testdata/trapbundle")
	key := [2]string{"x-api-key", "k-ci"}
	cases := []struct {
		name      string
		vmIDs     [2]string // auth's, trap's
		trapping  int       // status of the request that traps
		afterTrap int       // status of a request with the key once the trap happened
		details   string
		noKey     int // status of a request without the key then
	}{
		{"shared VM", [2]string{"bundle", "bundle"}, 503, 503, "wasm_fail_stream", 503},
		{"separate VMs", [2]string{"auth", "trap"}, 200, 200, "", 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{},
				testenv.Plugin{Name: "auth", RootID: "auth", VMID: c.vmIDs[0], Wasm: trap, Config: []byte(authCfg), FailurePolicy: testenv.FailClosed},
				testenv.Plugin{Name: "trap", RootID: "trap", VMID: c.vmIDs[1], Wasm: trap, Config: []byte(`{}`), FailurePolicy: testenv.FailOpen})
			require.Equal(t, 200, h.MustDo(t, req(0, "/", key)).Status, "before the trap")
			resp := h.MustDo(t, req(0, "/", key, [2]string{"x-trap", "1"}))
			// Shared: auth's response callbacks meet the failed VM and fail closed.
			// Separate: trap is fail-open, auth had passed the request.
			assert.Equal(t, c.trapping, resp.Status, "the trapping request")
			after := h.MustDo(t, req(0, "/", key))
			assert.Equal(t, c.afterTrap, after.Status)
			assert.Equal(t, c.details, after.Details)
			assert.Equal(t, c.noKey, h.MustDo(t, req(0, "/")).Status, "no key is refused either way")
			var exited bool
			for _, l := range h.Logs() {
				exited = exited || strings.Contains(l.Message, "wasm trap")
			}
			assert.True(t, exited, "the trap is logged")
		})
	}
}

// TestReadmeSnippet: the binding README's bundling snippet is the test bundle's code.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../proxywasm/README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(readme), "## Several filters in one module")
	require.True(t, ok)
	_, after, ok = strings.Cut(after, "```go\n")
	require.True(t, ok)
	snippet, _, ok := strings.Cut(after, "```")
	require.True(t, ok)
	src, err := os.ReadFile("testdata/trapbundle/main.go")
	require.NoError(t, err)
	assert.Contains(t, string(src), snippet)
}

// A panic (recovered by the binding) fails the stream by the policy of the root id
// that panicked, not by one policy per module: "strict" (FailClosed) answers 500,
// "trap" (FailOpen) lets the request through, in the same VM.
func TestBundlePanicPolicyPerRoot(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, "testdata/trapbundle")
	cases := []struct {
		rootID string
		status int
		local  bool
	}{
		{"strict", 500, true},
		{"trap", 200, false},
	}
	h := testenv.NewForTest(t, testenv.Options{},
		testenv.Plugin{Name: "strict", RootID: "strict", VMID: "bundle", Wasm: wasm, Config: []byte(`{}`), FailurePolicy: testenv.FailOpen},
		testenv.Plugin{Name: "trap", RootID: "trap", VMID: "bundle", Wasm: wasm, Config: []byte(`{}`), FailurePolicy: testenv.FailOpen})
	// Both plugins see x-panic; the strict one runs first.
	resp := h.MustDo(t, req(0, "/", [2]string{"x-panic", "1"}))
	assert.Equal(t, cases[0].status, resp.Status)
	assert.Equal(t, cases[0].local, resp.LocalReply)
	for _, c := range cases[1:] {
		only := testenv.NewForTest(t, testenv.Options{},
			testenv.Plugin{Name: c.rootID, RootID: c.rootID, VMID: "bundle", Wasm: wasm, Config: []byte(`{}`), FailurePolicy: testenv.FailOpen})
		resp := only.MustDo(t, req(0, "/", [2]string{"x-panic", "1"}))
		assert.Equal(t, c.status, resp.Status, c.rootID)
		assert.Equal(t, c.local, resp.LocalReply, c.rootID)
	}
	// The VM survived both panics (no trap): the next request passes both plugins.
	assert.Equal(t, 200, h.MustDo(t, req(0, "/")).Status)
}

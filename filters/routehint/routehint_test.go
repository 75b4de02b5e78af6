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
	"github.com/meshplug/meshplug/internal/race"
	"github.com/meshplug/meshplug/testenv"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// targets used by every table config: canary and beta set two hint headers, stable one,
// plain none.
var tableTargets = []any{
	map[string]any{"name": "canary", "headers": map[string]any{"x-route-hint": "canary", "x-version": "v2"}},
	map[string]any{"name": "stable", "headers": map[string]any{"x-route-hint": "stable"}},
	map[string]any{"name": "beta", "headers": map[string]any{"x-route-hint": "beta", "x-beta": "1"}},
	map[string]any{"name": "plain"},
}

// cond is a config with one rule: conditions all → canary.
func cond(conds ...map[string]any) map[string]any {
	all := make([]any, len(conds))
	for i, c := range conds {
		all[i] = c
	}
	return map[string]any{"targets": tableTargets, "rules": []any{
		map[string]any{"name": "r", "match": map[string]any{"all": all}, "target": "canary"},
	}}
}

func c(from, name, op string, value any) map[string]any {
	m := map[string]any{"from": from, "op": op}
	if name != "" {
		m["name"] = name
	}
	switch v := value.(type) {
	case string:
		if v != "" {
			m["value"] = v
		}
	case []string:
		m["values"] = v
	}
	return m
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}

var (
	canary = map[string]string{"x-route-hint": "canary", "x-version": "v2"}
	stable = map[string]string{"x-route-hint": "stable"}
	beta   = map[string]string{"x-route-hint": "beta", "x-beta": "1"}
	none   = map[string]string{}
)

// orderCfg: first-match (or all) over three rules.
func orderCfg(mode string) map[string]any {
	return map[string]any{"mode": mode, "targets": tableTargets, "rules": []any{
		map[string]any{"name": "beta-users", "match": map[string]any{"all": []any{c("header", "x-group", "equal", "beta")}}, "target": "beta"},
		map[string]any{"name": "api", "match": map[string]any{"all": []any{c("path", "", "prefix", "/api/")}}, "target": "canary"},
		map[string]any{"name": "rest", "target": "stable"},
	}}
}

var overrideCfg = map[string]any{"targets": tableTargets,
	"rules": []any{map[string]any{"name": "rest", "target": "stable"}},
	"override": map[string]any{"header": "x-canary-override", "cookie": "canary_override", "allowed": []string{"canary", "beta"},
		"when": map[string]any{"all": []any{c("header", "x-consumer-group", "equal", "testers")}}},
}

var groupCfg = map[string]any{"targets": tableTargets, "rules": []any{
	map[string]any{"name": "g", "match": map[string]any{
		"all": []any{c("method", "", "in", []string{"GET", "HEAD"})},
		"any": []any{
			map[string]any{"all": []any{c("header", "x-tier", "equal", "gold"), c("cookie", "region", "equal", "eu")}},
			map[string]any{"all": []any{c("query", "canary", "exists", "")}},
		}}, "target": "canary"},
}}

var trustedCfg = map[string]any{"targets": tableTargets, "trusted_headers": []string{"x-version"},
	"rules": []any{map[string]any{"name": "r", "match": map[string]any{"all": []any{c("header", "x-version", "equal", "v3")}}, "target": "beta"}}}

type tableCase struct {
	name    string
	cfg     map[string]any
	method  string
	path    string
	headers [][2]string
	want    map[string]string // hint headers upstream (x-route-hint, x-version, x-beta)
	targets []string          // targets applied, in order
}

var hintNames = []string{"x-route-hint", "x-version", "x-beta", "x_route_hint", "x_version", "x-canary-override"}

func decisionTable() []tableCase {
	h := func(kv ...string) [][2]string {
		var out [][2]string
		for i := 0; i < len(kv); i += 2 {
			out = append(out, [2]string{kv[i], kv[i+1]})
		}
		return out
	}
	return []tableCase{
		// Every operator, holding and not.
		{name: "equal", cfg: cond(c("header", "x-user", "equal", "alice")), headers: h("x-user", "alice"), want: canary, targets: []string{"canary"}},
		{name: "equal other value", cfg: cond(c("header", "x-user", "equal", "alice")), headers: h("x-user", "alicea"), want: none},
		{name: "equal is case-sensitive", cfg: cond(c("header", "x-user", "equal", "alice")), headers: h("x-user", "Alice"), want: none},
		{name: "equal ignore_case", cfg: cond(with(c("header", "x-user", "equal", "ALICE"), "ignore_case", true)), headers: h("x-user", "aLiCe"), want: canary, targets: []string{"canary"}},
		{name: "equal header name any case", cfg: cond(c("header", "X-User", "equal", "alice")), headers: h("X-USER", "alice"), want: canary, targets: []string{"canary"}},
		{name: "equal absent", cfg: cond(c("header", "x-user", "equal", "alice")), want: none},
		{name: "not_equal", cfg: cond(c("header", "x-env", "not_equal", "prod")), headers: h("x-env", "dev"), want: canary, targets: []string{"canary"}},
		{name: "not_equal equal", cfg: cond(c("header", "x-env", "not_equal", "prod")), headers: h("x-env", "prod"), want: none},
		{name: "not_equal absent holds", cfg: cond(c("header", "x-env", "not_equal", "prod")), want: canary, targets: []string{"canary"}},
		{name: "prefix", cfg: cond(c("path", "", "prefix", "/api/v2/")), path: "/api/v2/users?x=1", want: canary, targets: []string{"canary"}},
		{name: "prefix no", cfg: cond(c("path", "", "prefix", "/api/v2/")), path: "/api/v1/users", want: none},
		{name: "prefix ignores query", cfg: cond(c("path", "", "suffix", "/users")), path: "/api/users?next=/x", want: canary, targets: []string{"canary"}},
		{name: "suffix no", cfg: cond(c("path", "", "suffix", "/users")), path: "/api/users/1", want: none},
		{name: "contains", cfg: cond(c("header", "user-agent", "contains", "Mobile")), headers: h("user-agent", "Foo Mobile/1.0"), want: canary, targets: []string{"canary"}},
		{name: "contains ignore_case", cfg: cond(with(c("header", "user-agent", "contains", "mobile"), "ignore_case", true)), headers: h("user-agent", "Foo MOBILE/1.0"), want: canary, targets: []string{"canary"}},
		{name: "contains no", cfg: cond(c("header", "user-agent", "contains", "Mobile")), headers: h("user-agent", "Desktop"), want: none},
		{name: "in", cfg: cond(c("method", "", "in", []string{"GET", "HEAD"})), method: "HEAD", want: canary, targets: []string{"canary"}},
		{name: "in no", cfg: cond(c("method", "", "in", []string{"GET", "HEAD"})), method: "POST", want: none},
		{name: "not_in", cfg: cond(c("method", "", "not_in", []string{"GET", "HEAD"})), method: "POST", want: canary, targets: []string{"canary"}},
		{name: "not_in no", cfg: cond(c("method", "", "not_in", []string{"GET", "HEAD"})), method: "GET", want: none},
		{name: "regex", cfg: cond(c("query", "v", "regex", "2|3")), path: "/?v=3", want: canary, targets: []string{"canary"}},
		{name: "regex is anchored", cfg: cond(c("query", "v", "regex", "2|3")), path: "/?v=23", want: none},
		{name: "exists", cfg: cond(c("cookie", "beta", "exists", "")), headers: h("cookie", "a=1; beta=yes"), want: canary, targets: []string{"canary"}},
		{name: "exists no", cfg: cond(c("cookie", "beta", "exists", "")), headers: h("cookie", "a=1; betax=yes"), want: none},
		{name: "not_exists", cfg: cond(c("header", "x-debug", "not_exists", "")), want: canary, targets: []string{"canary"}},
		{name: "not_exists no", cfg: cond(c("header", "x-debug", "not_exists", "")), headers: h("x-debug", ""), want: none},

		// Repeated inputs: a copy never makes a condition hold.
		{name: "repeated header, one copy differs", cfg: cond(c("header", "x-group", "equal", "beta")), headers: h("x-group", "beta", "x-group", "other"), want: none},
		{name: "repeated header, all equal", cfg: cond(c("header", "x-group", "equal", "beta")), headers: h("x-group", "beta", "x-group", "beta"), want: canary, targets: []string{"canary"}},
		{name: "repeated header, not_equal", cfg: cond(c("header", "x-env", "not_equal", "prod")), headers: h("x-env", "dev", "x-env", "prod"), want: none},
		{name: "cookie on the second Cookie line", cfg: cond(c("cookie", "tier", "equal", "gold")), headers: h("cookie", "a=1", "cookie", "tier=gold"), want: canary, targets: []string{"canary"}},
		{name: "cookie repeated across lines", cfg: cond(c("cookie", "tier", "equal", "gold")), headers: h("cookie", "tier=gold", "cookie", "tier=free"), want: none},
		{name: "quoted cookie", cfg: cond(c("cookie", "tier", "equal", "gold")), headers: h("cookie", `tier="gold"`), want: canary, targets: []string{"canary"}},
		{name: "query name percent-decoded", cfg: cond(c("query", "group", "equal", "beta testers")), path: "/x?gr%6Fup=beta+testers", want: canary, targets: []string{"canary"}},
		{name: "query repeated", cfg: cond(c("query", "group", "equal", "beta")), path: "/x?group=beta&group=x", want: none},
		{name: "query with semicolon dropped", cfg: cond(c("query", "group", "equal", "beta")), path: "/x?group=beta;x=1", want: none},

		// Ambiguous inputs (filters/httpreq's rule): read differently by some upstream,
		// they hold no condition, positive or negated.
		{name: "cookie value Go skips beside the real one", cfg: cond(c("cookie", "tier", "equal", "gold")), headers: h("cookie", `tier=x"1; tier=gold`), want: none},
		{name: "cookie spelled in upper case, not_equal", cfg: cond(c("cookie", "tier", "not_equal", "gold")), headers: h("cookie", "TIER=gold"), want: none},
		{name: "cookie percent-encoded name, not_exists", cfg: cond(c("cookie", "tier", "not_exists", "")), headers: h("cookie", "t%69er=gold"), want: none},
		{name: "cookie after a comma", cfg: cond(c("cookie", "tier", "not_equal", "gold")), headers: h("cookie", "a=1, tier=gold"), want: none},
		{name: "cookie name with spaces, as Go reads it", cfg: cond(c("cookie", "tier", "equal", "gold")), headers: h("cookie", "tier =gold"), want: canary, targets: []string{"canary"}},
		{name: "query invalid escape beside the real one", cfg: cond(c("query", "group", "equal", "beta")), path: "/x?group=x%zz&group=beta", want: none},
		{name: "query bare percent, not_equal", cfg: cond(c("query", "group", "not_equal", "beta")), path: "/x?group=%&group=dev", want: none},
		{name: "query other case, not_equal", cfg: cond(c("query", "group", "not_equal", "beta")), path: "/x?Group=beta", want: none},
		{name: "query double-encoded name, not_exists", cfg: cond(c("query", "group", "not_exists", "")), path: "/x?%2567roup=beta", want: none},
		{name: "query structured name beside the real one", cfg: cond(c("query", "group", "equal", "beta")), path: "/x?group=beta&group[]=x", want: none},
		{name: "query structured name, not_exists", cfg: cond(c("query", "group", "not_exists", "")), path: "/x?group%5Bk%5D=beta", want: none},
		{name: "query bracketed name, not_equal", cfg: cond(c("query", "group", "not_equal", "beta")), path: "/x?[group]=beta", want: none},
		{name: "query leading space, not_exists", cfg: cond(c("query", "group", "not_exists", "")), path: "/x?%20group=beta", want: none},
		{name: "query value not UTF-8, not_equal", cfg: cond(c("query", "group", "not_equal", "beta")), path: "/x?group=beta%FF", want: none},
		{name: "query trailing space is another name", cfg: cond(c("query", "group", "equal", "beta")), path: "/x?group%20=x&group+=y&group=beta", want: canary, targets: []string{"canary"}},
		{name: "query trailing space alone, not_exists", cfg: cond(c("query", "group", "not_exists", "")), path: "/x?group%09=beta", want: canary, targets: []string{"canary"}},
		{name: "header underscore spelling, not_equal", cfg: cond(c("header", "x-env", "not_equal", "prod")), headers: h("x_env", "prod"), want: none},

		// AND/OR groups.
		{name: "group: method and first group", cfg: groupCfg, headers: h("x-tier", "gold", "cookie", "region=eu"), want: canary, targets: []string{"canary"}},
		{name: "group: second group", cfg: groupCfg, path: "/?canary", want: canary, targets: []string{"canary"}},
		{name: "group: first group half", cfg: groupCfg, headers: h("x-tier", "gold", "cookie", "region=us"), want: none},
		{name: "group: method fails", cfg: groupCfg, method: "POST", path: "/?canary=1", want: none},

		// Rule order.
		{name: "first match wins", cfg: orderCfg("first"), path: "/api/x", headers: h("x-group", "beta"), want: beta, targets: []string{"beta"}},
		{name: "second rule", cfg: orderCfg("first"), path: "/api/x", want: canary, targets: []string{"canary"}},
		{name: "catch-all", cfg: orderCfg("first"), path: "/web", want: stable, targets: []string{"stable"}},
		{name: "mode all: later rule wins a header", cfg: orderCfg("all"), path: "/api/x", headers: h("x-group", "beta"),
			want: map[string]string{"x-route-hint": "stable", "x-version": "v2", "x-beta": "1"}, targets: []string{"beta", "canary", "stable"}},

		// Spoofing: client hint headers go, whatever their spelling.
		{name: "spoofed hints removed", cfg: cond(c("header", "x-user", "equal", "alice")),
			headers: h("x-route-hint", "canary", "X-Version", "v2", "x_route_hint", "canary", "x-beta", "1"), want: none},
		{name: "spoofed hint replaced", cfg: orderCfg("first"), path: "/web", headers: h("x-route-hint", "canary", "x-version", "v9"), want: stable, targets: []string{"stable"}},
		{name: "trusted hint kept and matched", cfg: trustedCfg, headers: h("x-version", "v3", "x-route-hint", "canary"),
			want: map[string]string{"x-route-hint": "beta", "x-version": "v3", "x-beta": "1"}, targets: []string{"beta"}},
		{name: "trusted hint's underscore spelling removed", cfg: trustedCfg, headers: h("x_version", "v3"), want: none},

		// Overrides.
		{name: "override accepted", cfg: overrideCfg, headers: h("x-canary-override", "canary", "x-consumer-group", "testers"), want: canary, targets: []string{"canary"}},
		{name: "override by cookie", cfg: overrideCfg, headers: h("cookie", "canary_override=beta", "x-consumer-group", "testers"), want: beta, targets: []string{"beta"}},
		{name: "override header wins over cookie", cfg: overrideCfg, headers: h("cookie", "canary_override=beta", "x-canary-override", "canary", "x-consumer-group", "testers"), want: canary, targets: []string{"canary"}},
		{name: "override to a target not allowed", cfg: overrideCfg, headers: h("x-canary-override", "stable2", "x-consumer-group", "testers"), want: stable, targets: []string{"stable"}},
		{name: "override to plain not allowed", cfg: overrideCfg, headers: h("x-canary-override", "plain", "x-consumer-group", "testers"), want: stable, targets: []string{"stable"}},
		{name: "override outside its condition", cfg: overrideCfg, headers: h("x-canary-override", "canary"), want: stable, targets: []string{"stable"}},
		{name: "override repeated and differing", cfg: overrideCfg, headers: h("x-canary-override", "canary", "x-canary-override", "beta", "x-consumer-group", "testers"), want: stable, targets: []string{"stable"}},
	}
}

// applyNative runs the engine on the request and returns the upstream's view of the
// hint headers, applying Strip and Headers as the glue does.
func applyNative(t *testing.T, cfgJSON []byte, tc tableCase) (map[string]string, []string) {
	cfg, err := config.Parse(cfgJSON)
	require.NoError(t, err)
	method, path := tc.method, tc.path
	if method == "" {
		method = "GET"
	}
	if path == "" {
		path = "/"
	}
	pairs := []abi.Pair{{Key: ":method", Value: method}, {Key: ":path", Value: path}}
	for _, kv := range tc.headers {
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
		t.Run(tc.name, func(t *testing.T) {
			raw := mustJSON(t, tc.cfg)
			got, targets := applyNative(t, raw, tc)
			assert.Equal(t, tc.want, got, "native")
			assert.Equal(t, tc.targets, targets, "native targets")

			h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: wasm,
				Config: mustJSON(t, with(tc.cfg, "echo_header", "x-route-target"))})
			resp := h.MustDo(t, testenv.Request{Method: tc.method, Path: tc.path, Headers: tc.headers})
			require.NotNil(t, resp.Upstream, "status %d", resp.Status)
			assert.Equal(t, tc.want, hints(resp.Upstream.Headers.Get), "wasm")
			assert.Equal(t, subsetOf[tc.want["x-route-hint"]], resp.Cluster, "the router's choice")
			echo, _ := resp.Headers.Get("x-route-target")
			wantEcho := strings.Join(tc.targets, ",")
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

package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/filters/routehint/engine"
	"github.com/meshplug/meshplug/internal/race"
)

func parse(t testing.TB, js string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(js))
	require.NoError(t, err)
	return cfg
}

func view(pairs ...string) abi.PairsView {
	var ps []abi.Pair
	for i := 0; i < len(pairs); i += 2 {
		ps = append(ps, abi.Pair{Key: pairs[i], Value: pairs[i+1]})
	}
	return abi.PairsView(abi.EncodePairs(ps))
}

const readCfg = `{"targets": [{"name": "canary", "headers": {"x-route-hint": "canary", "x_legacy": "1"}}],
  "trusted_headers": ["x_legacy"],
  "override": {"header": "x-force", "allowed": ["canary"]},
  "rules": [{"name": "r", "match": {"all": [{"from": "cookie", "name": "a", "op": "exists"}, {"from": "query", "name": "q", "op": "exists"}]}, "target": "canary"}]}`

// TestRead: one pass sees every copy, decodes the query, parses every Cookie line and
// lists what must be stripped.
func TestRead(t *testing.T) {
	cfg := parse(t, readCfg)
	cases := []struct {
		name    string
		in      abi.PairsView
		method  string
		path    string
		headers []abi.Pair
		cookies map[string][]string // name → values; nil values: ambiguous
		query   map[string][]string
		strip   []string
		spoofed bool
	}{
		{name: "plain", in: view(":method", "GET", ":path", "/a/b?q=1&r=%41+b", "x-a", "1", "x-a", "2"),
			method: "GET", path: "/a/b", headers: pairs("x-a", "1", "x-a", "2"), query: map[string][]string{"q": {"1"}, "r": {"A b"}}},
		{name: "cookies on two lines", in: view(":path", "/", "cookie", ` a=1 ; b="x y"; bad; =v`, "cookie", "a=2"),
			path: "/", headers: pairs("cookie", ` a=1 ; b="x y"; bad; =v`, "cookie", "a=2"),
			cookies: map[string][]string{"a": {"1", "2"}, "b": {"x y"}, "bad": {""}, "c": {}}},
		{name: "ambiguous cookies", in: view(":path", "/", "cookie", `a="x"y"; B=1; c= 1; x=1, d=2`),
			path: "/", headers: pairs("cookie", `a="x"y"; B=1; c= 1; x=1, d=2`),
			cookies: map[string][]string{"a": nil, "b": nil, "c": nil, "d": nil, "x": {"1, d=2"}}},
		{name: "query edge cases", in: view(":path", "/p?&a=1&&%zz=2&b=%zz&c;d=3&e&f=&G=1&h=1&H=2#frag"),
			path: "/p", query: map[string][]string{"a": {"1"}, "b": nil, "c": nil, "d": nil, "e": {""}, "f": {""}, "g": nil, "h": nil, "z": {}}},
		{name: "fragment without query", in: view(":path", "/p#x"), path: "/p"},
		{name: "hint headers stripped in every spelling", in: view(":path", "/", "x-route-hint", "a", "X_Route_Hint", "b", "x-route_hint", "c", "x-other", "d"),
			path: "/", headers: pairs("x-other", "d"), strip: []string{"x-route-hint", "X_Route_Hint", "x-route_hint"}, spoofed: true},
		{name: "trusted exact name kept, other spelling stripped", in: view(":path", "/", "x_legacy", "1", "x-legacy", "2"),
			path: "/", headers: pairs("x_legacy", "1"), strip: []string{"x-legacy"}, spoofed: true},
		{name: "override header read then stripped", in: view(":path", "/", "x-force", "canary", "x-force", "canary"),
			path: "/", headers: pairs("x-force", "canary", "x-force", "canary"), strip: []string{"x-force"}},
		{name: "upper-case hint names stripped", in: view(":path", "/", "X-Route-Hint", "beta", "X-Group", "beta"), path: "/", headers: pairs("X-Group", "beta"),
			strip: []string{"X-Route-Hint"}, spoofed: true},
		{name: "malformed map", in: abi.PairsView{9, 0, 0, 0}},
	}
	var r engine.Request
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r.Read(cfg, c.in) // reused: leftovers from the previous case must not show
			assert.Equal(t, c.method, r.Method)
			assert.Equal(t, c.path, r.Path)
			assert.Equal(t, c.headers, nilIfEmpty(r.Headers))
			for name, want := range c.cookies {
				got, ambiguous := r.CookieValues(name)
				assert.Equal(t, want == nil, ambiguous, "cookie %s", name)
				if want != nil {
					assert.Equal(t, want, append([]string{}, got...), "cookie %s", name)
				}
			}
			for name, want := range c.query {
				got, ambiguous := r.ParamValues(name)
				assert.Equal(t, want == nil, ambiguous, "param %s", name)
				if want != nil {
					assert.Equal(t, want, append([]string{}, got...), "param %s", name)
				}
			}
			assert.Equal(t, c.strip, nilIfEmptyS(r.Strip))
			assert.Equal(t, c.spoofed, r.Spoofed)
		})
	}
}

func pairs(kv ...string) []abi.Pair {
	var out []abi.Pair
	for i := 0; i < len(kv); i += 2 {
		out = append(out, abi.Pair{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func nilIfEmpty(p []abi.Pair) []abi.Pair {
	if len(p) == 0 {
		return nil
	}
	return p
}

func nilIfEmptyS(p []string) []string {
	if len(p) == 0 {
		return nil
	}
	return p
}

func TestSetClientAddress(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3:4567":       "10.1.2.3",
		"[2001:db8::1]:4567":  "2001:db8::1",
		"2001:db8::1":         "2001:db8::1",
		"10.1.2.3":            "10.1.2.3",
		"[::ffff:10.1.2.3]:1": "10.1.2.3",
		"::ffff:10.1.2.3":     "10.1.2.3",
		"[2001:0DB8::0:1]:80": "2001:db8::1",
		"[fe80::1%eth0]:80":   "fe80::1",
		"pipe":                "",
		"":                    "",
	} {
		var r engine.Request
		r.SetClientAddress(in)
		assert.Equal(t, want, r.ClientAddress, in)
	}
}

// TestHoldsEdgeCases: ASCII-only case folding, empty values, absent inputs.
func TestHoldsEdgeCases(t *testing.T) {
	cases := []struct {
		name string
		cond string
		in   abi.PairsView
		want bool
	}{
		{"kelvin sign is not k", `{"from": "header", "name": "x", "op": "equal", "value": "k", "ignore_case": true}`, view("x", "\u212a"), false},
		{"ascii fold", `{"from": "header", "name": "x", "op": "prefix", "value": "AB", "ignore_case": true}`, view("x", "aBc"), true},
		{"suffix fold", `{"from": "header", "name": "x", "op": "suffix", "value": "BC", "ignore_case": true}`, view("x", "aBc"), true},
		{"suffix longer than value", `{"from": "header", "name": "x", "op": "suffix", "value": "abcd"}`, view("x", "bcd"), false},
		{"equal empty value", `{"from": "header", "name": "x", "op": "equal", "value": ""}`, view("x", ""), true},
		{"equal empty, absent", `{"from": "header", "name": "x", "op": "equal", "value": ""}`, view(), false},
		{"in fold", `{"from": "header", "name": "x", "op": "in", "values": ["A", "b"], "ignore_case": true}`, view("x", "B"), true},
		{"not_in absent", `{"from": "cookie", "name": "x", "op": "not_in", "values": ["a"]}`, view(), true},
		{"regex over every copy", `{"from": "header", "name": "x", "op": "regex", "value": "[0-9]+"}`, view("x", "1", "x", "22"), true},
		{"regex one copy fails", `{"from": "header", "name": "x", "op": "regex", "value": "[0-9]+"}`, view("x", "1", "x", "a"), false},
		{"exists with empty value", `{"from": "header", "name": "x", "op": "exists"}`, view("x", ""), true},
		{"contains in empty", `{"from": "header", "name": "x", "op": "contains", "value": "a"}`, view("x", ""), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := parse(t, `{"targets": [{"name": "a"}], "rules": [{"name": "r", "match": {"all": [`+c.cond+`]}, "target": "a"}]}`)
			var r engine.Request
			r.Read(cfg, c.in)
			assert.Equal(t, c.want, r.Matches(&cfg.Rules[0].Match))
		})
	}
}

// TestBucketIsDocumented pins the hash: XXH64(salt 0x00 key) mod 10000, with golden
// values, so that a change of library or of code cannot silently move users.
func TestBucketIsDocumented(t *testing.T) {
	for _, k := range []struct{ salt, key string }{{"exp-1", "user-1"}, {"", ""}, {"rollout", "alice"}} {
		want := uint32(xxhash.Sum64String(k.salt+"\x00"+k.key) % 10000)
		assert.Equal(t, want, engine.Bucket(k.salt, k.key))
	}
	golden := map[string]uint32{}
	for _, key := range []string{"user-1", "user-2", "alice", "bob"} {
		golden[key] = engine.Bucket("exp-1", key)
	}
	assert.Equal(t, map[string]uint32{"user-1": goldenUser1, "user-2": goldenUser2, "alice": goldenAlice, "bob": goldenBob}, golden)
}

// Golden buckets of salt "exp-1" (computed once with XXH64 from github.com/cespare/xxhash/v2).
const (
	goldenUser1 = 419
	goldenUser2 = 3615
	goldenAlice = 3093
	goldenBob   = 7778
)

func splitConfig(t testing.TB, den int, weights ...any) *config.Config {
	var ws []string
	for i := 0; i < len(weights); i += 2 {
		ws = append(ws, fmt.Sprintf(`{"target": %q, "weight": %d}`, weights[i], weights[i+1]))
	}
	var ts []string
	for i := 0; i < len(weights); i += 2 {
		ts = append(ts, fmt.Sprintf(`{"name": %q, "headers": {"x-route-hint": %q}}`, weights[i], weights[i]))
	}
	return parse(t, fmt.Sprintf(`{"targets": [%s], "rules": [{"name": "rollout", "split": {"key": {"header": "x-user"}, "salt": "exp-1", "denominator": %d, "weights": [%s]}}]}`,
		strings.Join(ts, ","), den, strings.Join(ws, ",")))
}

// decider decides one key at a time through Read and Decide, as the filter does.
type decider struct {
	e   *engine.Engine
	cfg *config.Config
	r   engine.Request
	v   engine.Verdict
	buf []byte
}

func newDecider(cfg *config.Config) *decider {
	return &decider{e: engine.New(cfg, func() uint64 { panic("a keyed split must not draw random numbers") }), cfg: cfg}
}

func (d *decider) target(key string) string {
	d.buf = abi.AppendPairs(d.buf[:0], pairs(":path", "/", "x-user", key))
	d.r.Read(d.cfg, abi.PairsView(d.buf))
	d.e.Decide(&d.r, &d.v)
	return d.v.Applied[0].Target.Name
}

func nKeys() int {
	if race.Enabled {
		return 20000
	}
	return 100000
}

// TestDistribution: over 100k keys, each target's share is within ±1 percentage point
// of its weight; and every key lands where the documented bucket says.
func TestDistribution(t *testing.T) {
	cases := []struct {
		name    string
		den     int
		weights []any
	}{
		{"10/90", 100, []any{"canary", 10, "stable", 90}},
		{"1/99", 100, []any{"canary", 1, "stable", 99}},
		{"three ways", 100, []any{"a", 20, "b", 30, "c", 50}},
		{"basis points", 10000, []any{"canary", 25, "stable", 9975}},
		{"drained", 100, []any{"old", 0, "new", 100}},
	}
	n := nKeys()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := splitConfig(t, c.den, c.weights...)
			d := newDecider(cfg)
			counts := map[string]int{}
			sp := cfg.Rules[0].Split
			for i := 0; i < n; i++ {
				key := fmt.Sprintf("user-%d", i)
				got := d.target(key)
				counts[got]++
				if want := engine.Pick(sp, engine.Bucket("exp-1", key)).Name; got != want {
					require.Equal(t, want, got, "key %s", key)
				}
			}
			for i := 0; i < len(c.weights); i += 2 {
				share := float64(counts[c.weights[i].(string)]) / float64(n)
				want := float64(c.weights[i+1].(int)) / float64(c.den)
				assert.InDelta(t, want, share, 0.01, "%s", c.weights[i])
			}
		})
	}
}

// TestMonotone: stepping the canary weight from 0 to 100 moves every key from stable
// to canary at most once and never back; and with three targets, raising the first at
// the expense of the second moves keys only from the second to the first.
func TestMonotone(t *testing.T) {
	n := nKeys()
	canaryFrom := make([]int, n) // the first weight at which the key is canary
	for i := range canaryFrom {
		canaryFrom[i] = -1
	}
	for w := 0; w <= 100; w += 5 {
		d := newDecider(splitConfig(t, 100, "canary", w, "stable", 100-w))
		for i := 0; i < n; i++ {
			isCanary := d.target(fmt.Sprintf("user-%d", i)) == "canary"
			switch {
			case isCanary && canaryFrom[i] < 0:
				canaryFrom[i] = w
			case !isCanary && canaryFrom[i] >= 0:
				t.Fatalf("user-%d was canary at weight %d and stable at %d", i, canaryFrom[i], w)
			}
		}
	}
	for i, w := range canaryFrom {
		require.GreaterOrEqual(t, w, 0, "user-%d never became canary at weight 100", i)
	}

	before := newDecider(splitConfig(t, 100, "a", 10, "b", 40, "c", 50))
	after := newDecider(splitConfig(t, 100, "a", 20, "b", 30, "c", 50))
	moved := 0
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("user-%d", i)
		x, y := before.target(key), after.target(key)
		if x != y {
			require.Equal(t, "b→a", x+"→"+y, key)
			moved++
		}
	}
	assert.InDelta(t, 0.10, float64(moved)/float64(n), 0.01)
}

// TestDecideDoesNotAllocate: a warm request with a keyed split and conditions on
// headers, cookies and the query makes no allocation.
func TestDecideDoesNotAllocate(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	cfg := parse(t, `{"targets": [{"name": "a", "headers": {"x-h": "a"}}, {"name": "b", "headers": {"x-h": "b"}}],
	  "rules": [{"name": "r1", "match": {"all": [{"from": "cookie", "name": "tier", "op": "in", "values": ["gold", "silver"]}, {"from": "query", "name": "v", "op": "regex", "value": "[0-9]+"}]}, "target": "a"},
	            {"name": "r2", "split": {"key": {"header": "x-user"}, "weights": [{"target": "a", "weight": 50}, {"target": "b", "weight": 50}]}}]}`)
	e := engine.New(cfg, func() uint64 { return 0 })
	in := view(":method", "GET", ":path", "/x?v=12&w=3", "x-user", "alice", "cookie", "tier=gold; s=1", "x-h", "spoof")
	var r engine.Request
	var v engine.Verdict
	run := func() {
		r.Read(cfg, in)
		e.Decide(&r, &v)
	}
	run()
	require.Equal(t, "r1", v.Applied[0].Rule.Name)
	assert.Zero(t, testing.AllocsPerRun(100, run))
	in = view(":method", "GET", ":path", "/x", "x-user", "alice")
	run()
	require.Equal(t, "r2", v.Applied[0].Rule.Name)
	assert.Zero(t, testing.AllocsPerRun(100, run))
}

// BenchmarkReadDecide: reading a browser-like request and deciding it, per rule count
// (the same configurations as the filter's BenchmarkWasm). Run natively, and compiled
// for wasip1 to see the engine's own cost inside a Go wasm guest (docs/benchmarks.md).
func BenchmarkReadDecide(b *testing.B) {
	in := view(":method", "GET", ":path", "/api/reviews/42?v=7&page=2", "x-consumer", "alice", "x-group", "staff",
		"cookie", "session=abc123; tier=gold", "user-agent", "bench/1.0", "accept", "application/json", "x-route-hint", "canary")
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			var rules []string
			for i := 0; i < n-1; i++ {
				var cond string
				switch i % 4 {
				case 0:
					cond = fmt.Sprintf(`{"from": "header", "name": "x-group", "op": "equal", "value": "group-%d"}`, i)
				case 1:
					cond = fmt.Sprintf(`{"from": "cookie", "name": "tier", "op": "in", "values": ["t%d", "platinum"]}`, i)
				case 2:
					cond = fmt.Sprintf(`{"from": "query", "name": "v", "op": "regex", "value": "v%d(\\.[0-9]+)?"}`, i)
				default:
					cond = fmt.Sprintf(`{"from": "path", "op": "prefix", "value": "/svc-%d/"}`, i)
				}
				rules = append(rules, fmt.Sprintf(`{"name": "r%d", "match": {"all": [%s]}, "target": "stable"}`, i, cond))
			}
			rules = append(rules, `{"name": "rollout", "split": {"key": {"header": "x-consumer"}, "salt": "bench", "weights": [{"target": "canary", "weight": 10}, {"target": "stable", "weight": 90}]}}`)
			cfg := parse(b, `{"targets": [{"name": "canary", "headers": {"x-route-hint": "canary", "x-version": "v2"}}, {"name": "stable", "headers": {"x-route-hint": "stable"}}], "rules": [`+strings.Join(rules, ",")+`]}`)
			e := engine.New(cfg, func() uint64 { return 0 })
			var r engine.Request
			var v engine.Verdict
			b.ReportAllocs()
			for b.Loop() {
				r.Read(cfg, in)
				e.Decide(&r, &v)
			}
			if v.Applied[0].Rule.Name != "rollout" {
				b.Fatal(v.Applied[0].Rule.Name)
			}
		})
	}
}

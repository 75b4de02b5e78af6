//go:build !wasip1

package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/filters/routehint/engine"
	"github.com/meshplug/meshplug/internal/benchpair"
	"github.com/meshplug/meshplug/testenv"
)

// The routehint benchmarks, reported in docs/benchmarks.md as ratios measured in one
// run: routehint.wasm with 1, 10 and 100 rules against the no-op floor (the benchmark
// guest doing nothing, same request, same host), and the same engine natively.
// Run: go test -run '^$' -bench . ./filters/routehint/

var benchUpstream = &testenv.UpstreamResponse{Status: 200}

// benchConfig has n rules: n-1 that do not match the request (conditions on a header,
// a cookie, the query and the path, in turn) and a last one, a sticky 10% split keyed
// on x-consumer, that does.
func benchConfig(n int) map[string]any {
	rules := make([]any, 0, n)
	for i := 0; i < n-1; i++ {
		var cond map[string]any
		switch i % 4 {
		case 0:
			cond = c("header", "x-group", "equal", fmt.Sprintf("group-%d", i))
		case 1:
			cond = c("cookie", "tier", "in", []string{fmt.Sprintf("t%d", i), "platinum"})
		case 2:
			cond = c("query", "v", "regex", fmt.Sprintf("v%d(\\.[0-9]+)?", i))
		default:
			cond = c("path", "", "prefix", fmt.Sprintf("/svc-%d/", i))
		}
		rules = append(rules, map[string]any{"name": fmt.Sprintf("r%d", i), "match": map[string]any{"all": []any{cond}}, "target": "beta"})
	}
	rules = append(rules, map[string]any{"name": "rollout", "split": map[string]any{"key": map[string]any{"header": "x-consumer"}, "salt": "bench",
		"weights": []any{map[string]any{"target": "canary", "weight": 10}, map[string]any{"target": "stable", "weight": 90}}}})
	return map[string]any{"targets": tableTargets, "rules": rules}
}

// benchRequest: a browser-like request with a spoofed hint header.
var benchRequest = testenv.Request{Path: "/api/reviews/42?v=7&page=2", Headers: [][2]string{
	{"x-consumer", "alice"}, {"x-group", "staff"}, {"cookie", "session=abc123; tier=gold"},
	{"user-agent", "bench/1.0"}, {"accept", "application/json"}, {"x-route-hint", "canary"},
}}

var benchRuleCounts = []int{1, 10, 100}

func benchHost(b *testing.B, wasm, cfg []byte) *testenv.Host {
	return testenv.NewForTest(b, testenv.Options{Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return benchUpstream }},
		testenv.Plugin{Name: "routehint", Wasm: wasm, Config: cfg})
}

func runRequests(b *testing.B, h *testenv.Host, check func(*testenv.Response)) {
	ctx := context.Background()
	resp, err := h.Do(ctx, benchRequest)
	if err != nil || resp.Upstream == nil {
		b.Fatalf("warm-up request: %v", err)
	}
	check(resp)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Do(ctx, benchRequest); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWasm: one request lifecycle through routehint.wasm per rule count, and the
// no-op floor.
func BenchmarkWasm(b *testing.B) {
	floor := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	b.Run("noop-floor", func(b *testing.B) {
		runRequests(b, benchHost(b, floor, []byte("noop")), func(*testenv.Response) {})
	})
	wasm := testenv.MustBuildGuest(b, ".")
	for _, n := range benchRuleCounts {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			runRequests(b, benchHost(b, wasm, mustJSON(b, benchConfig(n))), func(r *testenv.Response) {
				want := bucketTarget("bench", "alice", 10)
				if got, _ := r.Upstream.Headers.Get("x-route-hint"); got != want {
					b.Fatalf("x-route-hint = %q, want %q", got, want)
				}
			})
		})
	}
}

// BenchmarkNative: the same reading and decision, compiled natively.
func BenchmarkNative(b *testing.B) {
	pairs := []abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: benchRequest.Path}}
	for _, kv := range benchRequest.Headers {
		pairs = append(pairs, abi.Pair{Key: kv[0], Value: kv[1]})
	}
	in := abi.PairsView(abi.EncodePairs(pairs))
	for _, n := range benchRuleCounts {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			cfg, err := config.Parse(mustJSON(b, benchConfig(n)))
			if err != nil {
				b.Fatal(err)
			}
			e := engine.New(cfg, func() uint64 { return 0 })
			var r engine.Request
			var v engine.Verdict
			b.ReportAllocs()
			for b.Loop() {
				r.Read(cfg, in)
				e.Decide(&r, &v)
			}
			if len(v.Applied) != 1 || v.Applied[0].Rule.Name != "rollout" {
				b.Fatalf("decided %+v", v.Applied)
			}
		})
	}
}

// BenchmarkBeforeAfter compares routehint.wasm with a baseline built from another
// commit (MESHPLUG_ROUTEHINT_BASELINE_WASM), request by request in alternation, per
// rule count.
func BenchmarkBeforeAfter(b *testing.B) {
	old := benchpair.Baseline(b, "MESHPLUG_ROUTEHINT_BASELINE_WASM")
	wasm := testenv.MustBuildGuest(b, ".")
	ctx := context.Background()
	for _, n := range benchRuleCounts {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			variant := func(name string, w []byte) benchpair.Variant {
				h := benchHost(b, w, mustJSON(b, benchConfig(n)))
				return benchpair.Variant{Name: name, Do: func(b *testing.B) {
					if resp, err := h.Do(ctx, benchRequest); err != nil || resp.Upstream == nil {
						b.Fatalf("request: %v", err)
					}
				}}
			}
			benchpair.Run(b, variant("new", wasm), variant("old", old))
		})
	}
}

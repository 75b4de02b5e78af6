//go:build !wasip1

package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	"github.com/meshplug/meshplug/filters/auth/engine/enginetest"
	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/testenv"
)

// The auth benchmarks, reported in docs/benchmarks.md as ratios measured in one run:
// auth.wasm per case against the no-op floor (the benchmark guest doing nothing, same
// request, same host) and against native Go running the same engine on the same token.
// Run: go test -run '^$' -bench . ./filters/auth/

var benchUpstream = &testenv.UpstreamResponse{Status: 200}

const benchAPIKey = "k-bench-0123456789abcdef"

func benchConfig(cache bool) map[string]any {
	cfg := corpConfig(map[string]any{
		"api_keys": map[string]any{"keys": []any{map[string]any{"consumer": "ci", "sha256": config.HashSecret("", benchAPIKey)}}},
		"rules": []any{
			map[string]any{"match": map[string]any{"prefix": "/key"}, "requires": []any{"api_keys"}},
			map[string]any{"match": map[string]any{"prefix": "/"}, "requires": []any{"corp"}},
		},
	})
	if !cache {
		cfg["token_cache"] = map[string]any{"max_entries": 0}
	}
	return cfg
}

type benchCase struct {
	name  string
	cache bool
	deny  bool
	req   testenv.Request
}

func benchCases(now time.Time) []benchCase {
	bearer := func(s *jwttest.Signer) [][2]string {
		return [][2]string{{"authorization", "Bearer " + corpToken(s, "alice", now)}, {"user-agent", "bench"}}
	}
	cs := []benchCase{{name: "cache-hit", cache: true, req: testenv.Request{Path: "/api", Headers: bearer(rsSigner)}}}
	for _, s := range signers {
		cs = append(cs, benchCase{name: "miss-" + s.Alg.String(), req: testenv.Request{Path: "/api", Headers: bearer(s)}})
	}
	cs = append(cs, benchCase{name: "api-key", cache: true, req: testenv.Request{Path: "/key", Headers: [][2]string{{"x-api-key", benchAPIKey}, {"user-agent", "bench"}}}})
	// A browser-sized request: 100 header lines, the credential last.
	many := [][2]string{}
	for i := range 99 {
		many = append(many, [2]string{fmt.Sprintf("x-header-%02d", i), "value"})
	}
	many = append(many, bearer(rsSigner)[0])
	cs = append(cs, benchCase{name: "cache-hit-100-headers", cache: true, req: testenv.Request{Path: "/api", Headers: many}})
	// The same forged RS256 token again and again (negative cache).
	forged := corpToken(rsSigner, "alice", now)
	forged = forged[:len(forged)-4] + "AAAA"
	cs = append(cs, benchCase{name: "forged-RS256-repeated", deny: true, req: testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + forged}}}})
	return cs
}

func benchHost(b *testing.B, wasm []byte, cfg []byte) *testenv.Host {
	return testenv.NewForTest(b, testenv.Options{Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return benchUpstream }},
		testenv.Plugin{Name: "auth", Wasm: wasm, Config: cfg})
}

func runRequests(b *testing.B, h *testenv.Host, req testenv.Request, wantUpstream bool) {
	ctx := context.Background()
	resp, err := h.Do(ctx, req)
	if err != nil || (resp.Upstream != nil) != wantUpstream {
		b.Fatalf("warm-up request: %v (status %d)", err, resp.Status)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Do(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWasm: one request lifecycle through auth.wasm per case, and the no-op floor.
func BenchmarkWasm(b *testing.B) {
	now := time.Now()
	floor := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	b.Run("noop-floor", func(b *testing.B) {
		h := benchHost(b, floor, []byte("noop"))
		runRequests(b, h, benchCases(now)[0].req, true)
	})
	wasm := authWasm(b)
	// Before/after in one run: MESHPLUG_AUTH_BASELINE_WASM names an auth.wasm built
	// from another commit (see docs/benchmarks.md); each case then runs on it right
	// after the current one.
	var old []byte
	if path := os.Getenv("MESHPLUG_AUTH_BASELINE_WASM"); path != "" {
		var err error
		if old, err = os.ReadFile(path); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range benchCases(now) {
		b.Run(c.name, func(b *testing.B) {
			h := benchHost(b, wasm, mustJSON(b, benchConfig(c.cache)))
			runRequests(b, h, c.req, !c.deny)
		})
		if old != nil {
			b.Run("baseline-"+c.name, func(b *testing.B) {
				h := benchHost(b, old, mustJSON(b, benchConfig(c.cache)))
				runRequests(b, h, c.req, !c.deny)
			})
		}
	}
}

// BenchmarkNative: the same engine, configuration and tokens, compiled natively.
func BenchmarkNative(b *testing.B) {
	now := time.Now()
	for _, c := range benchCases(now) {
		b.Run(c.name, func(b *testing.B) {
			cfg, err := config.Parse(mustJSON(b, benchConfig(c.cache)))
			if err != nil {
				b.Fatal(err)
			}
			e := engine.New(cfg)
			req := &engine.Request{Method: "GET", Path: c.req.Path, Now: now, Headers: enginetest.Lines(c.req.Headers)}
			var x engine.Extracted
			e.Read(req, &x)
			if v := e.Decide(&x); (v.Kind == engine.Allow) == c.deny {
				b.Fatalf("native %s: %v %s", c.name, v.Kind, v.Detail)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.Read(req, &x)
				e.Decide(&x)
			}
		})
	}
}

var _ = jwt.RS256

// BenchmarkBeforeAfter compares auth.wasm with a baseline auth.wasm built from another
// commit (MESHPLUG_AUTH_BASELINE_WASM; skipped without it) request by request: each
// iteration sends the case's request through the no-op floor, the current build and
// the baseline, timing each, so that all three see the same machine load (shared
// machines move a benchmark by ±30% between runs). Reported: ns per request of each
// (floor-ns, new-ns, old-ns), each build's multiple of the floor, and new÷old.
func BenchmarkBeforeAfter(b *testing.B) {
	path := os.Getenv("MESHPLUG_AUTH_BASELINE_WASM")
	if path == "" {
		b.Skip("MESHPLUG_AUTH_BASELINE_WASM not set")
	}
	old, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	floorWasm := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	wasm := authWasm(b)
	ctx := context.Background()
	for _, c := range benchCases(now) {
		b.Run(c.name, func(b *testing.B) {
			cfg := mustJSON(b, benchConfig(c.cache))
			floor, cur, base := benchHost(b, floorWasm, []byte("noop")), benchHost(b, wasm, cfg), benchHost(b, old, cfg)
			for _, h := range []*testenv.Host{floor, cur, base} {
				if _, err := h.Do(ctx, c.req); err != nil {
					b.Fatal(err)
				}
			}
			var tf, tn, to time.Duration
			timed := func(h *testenv.Host, acc *time.Duration) {
				start := time.Now()
				resp, err := h.Do(ctx, c.req)
				*acc += time.Since(start)
				if err != nil || h != floor && (resp.Upstream != nil) == c.deny {
					b.Fatalf("unexpected outcome: %v (status %d)", err, resp.Status)
				}
			}
			i := 0
			for b.Loop() {
				// Rotate the order so that none always runs first.
				for j := range 3 {
					switch (i + j) % 3 {
					case 0:
						timed(floor, &tf)
					case 1:
						timed(cur, &tn)
					case 2:
						timed(base, &to)
					}
				}
				i++
			}
			n := float64(b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(tf.Nanoseconds())/n, "floor-ns")
			b.ReportMetric(float64(tn.Nanoseconds())/n, "new-ns")
			b.ReportMetric(float64(to.Nanoseconds())/n, "old-ns")
			b.ReportMetric(float64(tn)/float64(tf), "new×floor")
			b.ReportMetric(float64(to)/float64(tf), "old×floor")
			b.ReportMetric(float64(tn)/float64(to), "new÷old")
		})
	}
}

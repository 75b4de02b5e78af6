//go:build !wasip1

package main

import (
	"context"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/fault/engine"
	"github.com/meshplug/meshplug/internal/benchpair"
	"github.com/meshplug/meshplug/testenv"
)

// The fault benchmarks, reported in docs/benchmarks.md as ratios measured in one run:
// fault.wasm per case against the no-op floor (the benchmark guest doing nothing, same
// request, same host), and the engine compiled natively.
// Run: go test -run '^$' -bench . -benchmem ./filters/fault/

var benchUpstream = &testenv.UpstreamResponse{Status: 200}

// A request like one a sidecar sees: a few ordinary headers, an identity header.
var benchRequest = testenv.Request{Path: "/reviews/1", Headers: [][2]string{
	{"user-agent", "bench"}, {"accept", "*/*"}, {"x-request-id", "0f0e0d0c-0b0a-0908-0706-050403020100"},
	{"end-user", "mike"}}}

type benchCase struct {
	name, config string
	req          testenv.Request
	upstream     bool
}

var benchCases = []benchCase{
	{"no-fault/bookinfo", bookinfo, benchRequest, true},
	{"no-fault/0.01%-of-all", `{"faults": [{
	  "abort": {"http_status": 503, "percentage": {"numerator": 1, "denominator": "TEN_THOUSAND"}}}]}`, benchRequest, true},
	{"no-fault/header-controlled-no-header", `{"faults": [{
	  "delay": {"header_delay": {}, "percentage": {"numerator": 100}},
	  "abort": {"header_abort": {}, "percentage": {"numerator": 100}}}]}`, benchRequest, true},
	{"no-fault/capped-0%", `{"max_active_faults": 10, "faults": [{
	  "abort": {"http_status": 503, "percentage": {"numerator": 0}}}]}`, benchRequest, true},
	{"abort/uncapped", `{"faults": [{"abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`, benchRequest, false},
	{"abort/capped", `{"max_active_faults": 10, "faults": [{"abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`, benchRequest, false},
}

func benchHost(b *testing.B, wasm []byte, cfg string) *testenv.Host {
	return testenv.NewForTest(b, testenv.Options{Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return benchUpstream }},
		testenv.Plugin{Name: "fault", VMID: "fault", Wasm: wasm, Config: []byte(cfg)})
}

func runRequests(b *testing.B, h *testenv.Host, req testenv.Request, wantUpstream bool) {
	ctx := context.Background()
	resp, err := h.Do(ctx, req)
	if err != nil || (resp.Upstream != nil) != wantUpstream {
		b.Fatalf("warm-up request: %v (upstream %v, want %v)", err, resp.Upstream != nil, wantUpstream)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := h.Do(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWasm: one request lifecycle through fault.wasm per case, and the no-op
// floor with the same request.
func BenchmarkWasm(b *testing.B) {
	floor := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	b.Run("noop-floor", func(b *testing.B) {
		runRequests(b, benchHost(b, floor, "noop"), benchRequest, true)
	})
	wasm := testenv.MustBuildGuest(b, ".")
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			runRequests(b, benchHost(b, wasm, c.config), c.req, c.upstream)
		})
	}
}

// BenchmarkNative: engine.Decide for the no-fault cases, compiled natively.
func BenchmarkNative(b *testing.B) {
	for _, c := range benchCases[:4] {
		b.Run(c.name, func(b *testing.B) {
			cfg, err := config.Parse([]byte(c.config))
			if err != nil {
				b.Fatal(err)
			}
			req := &nativeReq{headers: c.req.Headers}
			rng := engine.NewRand(1)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if v := engine.Decide(cfg, req, engine.NewDraws(rng), nopSlots{}); v.Delay != 0 || v.Abort != nil {
					b.Fatal("faulted")
				}
			}
		})
	}
}

type nativeReq struct{ headers [][2]string }

func (r *nativeReq) Header(name string) (string, bool) { return r.FirstHeader(name) }
func (r *nativeReq) FirstHeader(name string) (string, bool) {
	for _, h := range r.headers {
		if h[0] == name {
			return h[1], true
		}
	}
	return "", false
}
func (r *nativeReq) UpstreamCluster() string { return "" }
func (r *nativeReq) RouteName() string       { return "" }

type nopSlots struct{}

func (nopSlots) TryAcquire(uint64) bool { return true }

// BenchmarkRatio measures each no-fault case against the no-op floor interleaved: the
// two hosts take turns running batches of requests, and the fastest batch of each
// gives its per-request time. On a shared, noisy machine this keeps the ratio stable
// where separate sub-benchmarks (BenchmarkWasm) drift apart by ±30%. Reported as
// floor-ns/req, fault-ns/req and x-floor.
func BenchmarkRatio(b *testing.B) {
	floor := benchHost(b, testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest"), "noop")
	wasm := testenv.MustBuildGuest(b, ".")
	for _, c := range benchCases[:4] {
		b.Run(c.name, func(b *testing.B) {
			h := benchHost(b, wasm, c.config)
			ctx := context.Background()
			batch := func(h *testenv.Host) time.Duration {
				const n = 200
				start := time.Now()
				for range n {
					if _, err := h.Do(ctx, c.req); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(start) / n
			}
			batch(floor)
			batch(h)
			bestFloor, bestFault := time.Hour, time.Hour
			for b.Loop() {
				bestFloor = min(bestFloor, batch(floor))
				bestFault = min(bestFault, batch(h))
			}
			b.ReportMetric(float64(bestFloor.Nanoseconds()), "floor-ns/req")
			b.ReportMetric(float64(bestFault.Nanoseconds()), "fault-ns/req")
			b.ReportMetric(float64(bestFault)/float64(bestFloor), "x-floor")
		})
	}
}

// BenchmarkBeforeAfter compares fault.wasm with a baseline built from another commit
// (MESHPLUG_FAULT_BASELINE_WASM), request by request in alternation, per case.
func BenchmarkBeforeAfter(b *testing.B) {
	old := benchpair.Baseline(b, "MESHPLUG_FAULT_BASELINE_WASM")
	wasm := testenv.MustBuildGuest(b, ".")
	ctx := context.Background()
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			variant := func(name string, w []byte) benchpair.Variant {
				h := benchHost(b, w, c.config)
				return benchpair.Variant{Name: name, Do: func(b *testing.B) {
					if resp, err := h.Do(ctx, c.req); err != nil || (resp.Upstream != nil) != c.upstream {
						b.Fatalf("request: %v", err)
					}
				}}
			}
			benchpair.Run(b, variant("new", wasm), variant("old", old))
		})
	}
}

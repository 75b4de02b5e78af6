//go:build !wasip1

package main_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket/buckettest"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
	"github.com/meshplug/meshplug/internal/benchpair"
	"github.com/meshplug/meshplug/testenv"
)

// The ratelimit benchmarks, reported in docs/benchmarks.md as ratios measured in one
// run: ratelimit.wasm on the allowed and the limited path against the no-op floor (the
// benchmark guest doing nothing, same requests, same host), for 1, 2, 4 and 8 worker
// VMs, with 10,000 distinct keys; and the same engine compiled natively.
// Run: go test -run '^$' -bench . ./filters/ratelimit/

const benchKeys = 10_000

var benchUpstream = &testenv.UpstreamResponse{Status: 200}

// benchConfig limits each consumer to requests per unit.
func benchConfig(requests int, unit string) []byte {
	return []byte(fmt.Sprintf(`{"rules":[{"name":"per-consumer","descriptors":[{"key":"consumer","header":"x-consumer"}],
		"limit":{"requests":%d,"unit":%q}}]}`, requests, unit))
}

var (
	neverLimited  = benchConfig(1_000_000_000, "second")
	alwaysLimited = benchConfig(1, "hour") // after the warm-up request of each key
)

var benchRequests = func() []testenv.Request {
	rs := make([]testenv.Request, benchKeys)
	for i := range rs {
		rs[i] = testenv.Request{Path: "/api/orders", Headers: [][2]string{{"x-consumer", fmt.Sprintf("consumer-%d", i)}, {"user-agent", "bench"}}, Worker: -1}
	}
	return rs
}()

func benchHost(b *testing.B, workers int, wasm, cfg []byte) *testenv.Host {
	return testenv.NewForTest(b, testenv.Options{Workers: workers, Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return benchUpstream }},
		testenv.Plugin{Name: "ratelimit", VMID: "rl", Wasm: wasm, Config: cfg})
}

// run sends the requests round-robin over the keys: from one goroutine with one
// worker, else from parallel goroutines spread over the host's workers. Every request
// must get want.
func run(b *testing.B, h *testenv.Host, want int) {
	ctx := context.Background()
	for i := range benchRequests { // warm every key (and, for the limited path, empty its bucket)
		if _, err := h.Do(ctx, benchRequests[i]); err != nil {
			b.Fatal(err)
		}
	}
	if resp, err := h.Do(ctx, benchRequests[0]); err != nil || resp.Status != want {
		b.Fatalf("warm-up: status %d, want %d (%v)", resp.Status, want, err)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	if h.Workers() == 1 {
		i := 0
		for b.Loop() {
			resp, err := h.Do(ctx, benchRequests[i%benchKeys])
			if err != nil || resp.Status != want {
				b.Fatalf("status %d, want %d (%v)", resp.Status, want, err)
			}
			i++
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1)) % benchKeys
			resp, err := h.Do(ctx, benchRequests[i])
			if err != nil || resp.Status != want {
				b.Errorf("status %d, want %d (%v)", resp.Status, want, err)
				return
			}
		}
	})
}

// BenchmarkWasm: the no-op floor, the allowed path (a limit never reached) and the
// limited path (every bucket empty), per worker count.
func BenchmarkWasm(b *testing.B) {
	floor := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	wasm := rlWasm(b)
	for _, workers := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("noop-floor/workers=%d", workers), func(b *testing.B) {
			run(b, benchHost(b, workers, floor, []byte("noop")), 200)
		})
		b.Run(fmt.Sprintf("allowed/workers=%d", workers), func(b *testing.B) {
			run(b, benchHost(b, workers, wasm, neverLimited), 200)
		})
		b.Run(fmt.Sprintf("limited/workers=%d", workers), func(b *testing.B) {
			run(b, benchHost(b, workers, wasm, alwaysLimited), 429)
		})
	}
}

// BenchmarkPaired measures the floor and ratelimit.wasm request by request in
// alternation (one request to each host per iteration, timed separately) and reports
// both means and their ratio: on a shared, noisy machine a burst of load then hits both
// figures alike, where separate sub-benchmarks can land in different bursts.
func BenchmarkPaired(b *testing.B) {
	floorWasm := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	wasm := rlWasm(b)
	for _, path := range []struct {
		name string
		cfg  []byte
		want int
	}{{"allowed", neverLimited, 200}, {"limited", alwaysLimited, 429}} {
		for _, workers := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%s/workers=%d", path.name, workers), func(b *testing.B) {
				paired(b, workers, floorWasm, wasm, path.cfg, path.want)
			})
		}
	}
}

// paired runs BenchmarkPaired's loop for one configuration.
func paired(b *testing.B, workers int, floorWasm, wasm, cfg []byte, want int) {
	floor := benchHost(b, workers, floorWasm, []byte("noop"))
	rl := benchHost(b, workers, wasm, cfg)
	ctx := context.Background()
	for i := range benchRequests {
		floor.Do(ctx, benchRequests[i])
		rl.Do(ctx, benchRequests[i])
	}
	var floorNs, rlNs, next atomic.Int64
	one := func(i int) bool {
		req := benchRequests[i%benchKeys]
		t0 := time.Now()
		_, err := floor.Do(ctx, req)
		t1 := time.Now()
		resp, err2 := rl.Do(ctx, req)
		t2 := time.Now()
		if err != nil || err2 != nil || resp.Status != want {
			b.Errorf("status %d, want %d (%v %v)", resp.Status, want, err, err2)
			return false
		}
		floorNs.Add(int64(t1.Sub(t0)))
		rlNs.Add(int64(t2.Sub(t1)))
		return true
	}
	b.ResetTimer()
	if workers == 1 {
		i := 0
		for b.Loop() {
			if !one(i) {
				return
			}
			i++
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !one(int(next.Add(1))) {
					return
				}
			}
		})
	}
	n := float64(b.N)
	b.ReportMetric(float64(floorNs.Load())/n, "floor-ns/req")
	b.ReportMetric(float64(rlNs.Load())/n, "ratelimit-ns/req")
	b.ReportMetric(float64(rlNs.Load())/float64(floorNs.Load()), "x-floor")
}

// BenchmarkNative: the read step and the engine, compiled natively, on the fake store
// (which copies values on get and set as the proxy does), allowed path.
func BenchmarkNative(b *testing.B) {
	cfg, err := config.Parse(neverLimited)
	if err != nil {
		b.Fatal(err)
	}
	tb := bucket.NewTable(&buckettest.Store{}, "bench", cfg.Groups)
	if err := tb.Init(nil); err != nil {
		b.Fatal(err)
	}
	e := engine.New(cfg, tb)
	views := make([]abi.PairsView, benchKeys)
	for i, r := range benchRequests {
		pairs := []abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: r.Path}, {Key: ":authority", Value: "example.com"}}
		for _, h := range r.Headers {
			pairs = append(pairs, abi.Pair{Key: h[0], Value: h[1]})
		}
		views[i] = abi.PairsView(abi.EncodePairs(pairs))
	}
	var req engine.Request
	var v engine.Verdict
	now := int64(1_700_000_000_000_000_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req.Read(cfg, views[i%benchKeys], "")
		e.Decide(&req, now, &v)
		if v.Limited {
			b.Fatal("limited")
		}
		i++
	}
}

// BenchmarkBeforeAfter compares ratelimit.wasm with a baseline built from another
// commit (MESHPLUG_RATELIMIT_BASELINE_WASM), request by request in alternation, on the
// allowed and the limited path with one worker.
func BenchmarkBeforeAfter(b *testing.B) {
	old := benchpair.Baseline(b, "MESHPLUG_RATELIMIT_BASELINE_WASM")
	wasm := rlWasm(b)
	ctx := context.Background()
	for _, path := range []struct {
		name string
		cfg  []byte
		want int
	}{{"allowed", neverLimited, 200}, {"limited", alwaysLimited, 429}} {
		b.Run(path.name, func(b *testing.B) {
			variant := func(name string, w []byte) benchpair.Variant {
				h := benchHost(b, 1, w, path.cfg)
				for i := range benchRequests { // warm every key (and empty its bucket for the limited path)
					if _, err := h.Do(ctx, benchRequests[i]); err != nil {
						b.Fatal(err)
					}
				}
				i := 0
				return benchpair.Variant{Name: name, Do: func(b *testing.B) {
					resp, err := h.Do(ctx, benchRequests[i%benchKeys])
					i++
					if err != nil || resp.Status != path.want {
						b.Fatalf("status %d, want %d (%v)", resp.Status, path.want, err)
					}
				}}
			}
			benchpair.Run(b, variant("new", wasm), variant("old", old))
		})
	}
}

//go:build !wasip1

package main_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket/buckettest"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
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

// Package benchmarks measures the host and the guest binding together: one request
// lifecycle through a compiled guest, per host path and per worker count. Figures are
// written up in docs/benchmarks.md; run them with `make bench`.
package benchmarks

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshplug/meshplug/testenv"
)

// emptyUpstream answers every benchmark request without allocating.
var emptyUpstream = &testenv.UpstreamResponse{Status: 200}

// host starts a host with the benchmark guest in mode; mode "raw" is testenv's
// hand-written guest without the binding (testenv/testdata/rawguest, its noop mode):
// the floor of wazero plus the host, against which the binding's cost shows.
func host(tb testing.TB, mode string, workers int) *testenv.Host {
	tb.Helper()
	pkg, config := "./guest", mode
	if mode == "raw" {
		pkg, config = "../testdata/rawguest", "noop"
	}
	return testenv.NewForTest(tb,
		testenv.Options{Workers: workers, Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return emptyUpstream }},
		testenv.Plugin{Name: "bench", VMID: "bench", Wasm: testenv.MustBuildGuest(tb, pkg), Config: []byte(config)})
}

var benchRequest = testenv.Request{Path: "/bench", Headers: [][2]string{{"x-a", "1"}, {"x-b", "2"}}}

// TestBenchmarkGuest checks that each benchmark does what it says, so the figures mean
// something.
func TestBenchmarkGuest(t *testing.T) {
	ctx := context.Background()
	h := host(t, "headers", 1)
	resp, err := h.Do(ctx, benchRequest)
	if err != nil || resp.Upstream == nil {
		t.Fatalf("headers mode: %v", err)
	}
	if v, _ := resp.Upstream.Headers.Get("x-seen"); v != "1" {
		t.Errorf("headers mode did not add x-seen")
	}
	// BenchmarkCalls' modes start and pass the request through.
	for _, mode := range []string{"get16", "pairs16", "remove16"} {
		resp, err := host(t, mode, 1).Do(ctx, benchRequest)
		if err != nil || resp.Upstream == nil {
			t.Fatalf("%s mode: %v", mode, err)
		}
	}
	h = host(t, "cas", 2)
	for i := 0; i < 10; i++ {
		req := benchRequest
		req.Worker = i % 2
		if _, err := h.Do(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if v, _, _ := h.SharedData("bench", "counter"); string(v) != "10" {
		t.Errorf("cas counter = %q, want 10", v)
	}
	// Fresh counters created by several worker VMs at once: no increment may be lost
	// (a create with cas 0 would lose one whenever two VMs create the same key).
	h = host(t, "cas", 4)
	const rounds, perRound = 50, 32
	var wg sync.WaitGroup
	for r := 0; r < rounds; r++ {
		for g := 0; g < perRound; g++ {
			wg.Add(1)
			go func(r, g int) {
				defer wg.Done()
				req := benchRequest
				req.Headers = append([][2]string{{"x-key", fmt.Sprint("fresh-", r)}, {"x-widen-race", "1"}}, req.Headers...)
				req.Worker = g % 4
				if _, err := h.Do(ctx, req); err != nil {
					t.Error(err)
				}
			}(r, g)
		}
	}
	wg.Wait()
	for r := 0; r < rounds; r++ {
		if v, _, _ := h.SharedData("bench", fmt.Sprint("fresh-", r)); string(v) != strconv.Itoa(perRound) {
			t.Errorf("counter fresh-%d = %q, want %d: an increment was lost", r, v, perRound)
		}
	}
	if _, err := testenv.New(ctx, testenv.Options{}, testenv.Plugin{Name: "bench", Wasm: testenv.MustBuildGuest(t, "./guest"), Config: []byte("nope")}); err == nil {
		t.Error("unknown mode must fail configure")
	}
}

// BenchmarkLifecycle is one request through one plugin: context create, request
// headers, upstream, response headers, done, log, delete.
func BenchmarkLifecycle(b *testing.B) {
	for _, mode := range []string{"raw", "noop", "headers", "cas"} {
		b.Run(mode, func(b *testing.B) {
			h := host(b, mode, 1)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := h.Do(ctx, benchRequest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCalls measures what one host call costs a guest written on the binding, by
// kind: each iteration sends one request to the no-op mode and one to each mode that
// makes 16 calls of a kind (get16: HeaderMap.Get, which returns data the host writes
// into a block from the guest's proxy_on_memory_allocate and the binding copies into a
// string; pairs16: HeaderMap.AppendAll into a reused buffer, the same round trip
// without a Go allocation; remove16: HeaderMap.Remove of an absent header, no data
// back), timing each, so that load bursts hit all alike. Reported per call: (mode −
// noop) / 16.
func BenchmarkCalls(b *testing.B) {
	modes := []string{"noop", "get16", "pairs16", "remove16"}
	hosts := make([]*testenv.Host, len(modes))
	for i, m := range modes {
		hosts[i] = host(b, m, 1)
	}
	ctx := context.Background()
	spent := make([]time.Duration, len(modes))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range modes {
			k := (i + j) % len(modes) // rotate so that none always runs first
			start := time.Now()
			if _, err := hosts[k].Do(ctx, benchRequest); err != nil {
				b.Fatal(err)
			}
			spent[k] += time.Since(start)
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(spent[0].Nanoseconds())/n, "noop-ns")
	for k, m := range modes[1:] {
		b.ReportMetric(float64((spent[k+1]-spent[0]).Nanoseconds())/n/16, m[:len(m)-2]+"-ns/call")
	}
}

// BenchmarkWorkers runs requests from parallel goroutines spread over N worker VMs.
// With the cas mode every request contends on one shared-data key.
func BenchmarkWorkers(b *testing.B) {
	for _, mode := range []string{"noop", "cas"} {
		for _, workers := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/workers=%d", mode, workers), func(b *testing.B) {
				h := host(b, mode, workers)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					req := benchRequest
					req.Worker = -1
					for pb.Next() {
						if _, err := h.Do(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				if mode == "cas" {
					v, _, _ := h.SharedData("bench", "counter")
					if n, _ := strconv.Atoi(string(v)); n < b.N {
						b.Errorf("cas counter %d < %d requests: an update was lost", n, b.N)
					}
				}
			})
		}
	}
}

//go:build !wasip1

package main_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/globaltest"
	"github.com/meshplug/meshplug/testenv"
)

// BenchmarkGlobal: the latency the global mode adds to a request over the local mode,
// one worker, requests one at a time (the callout's round trip is on the request's
// path), measured in alternation as BenchmarkPaired does: each iteration sends one
// request to a local-mode host and one to a global-mode host, timed separately.
// "fake-service" answers OK at once from an in-process gRPC server (the filter's
// encoding, the host's gRPC call on loopback h2c, decoding, resuming); "real-service" is
// envoyproxy/ratelimit on Redis (skipped without them: hack/ratelimit-service.sh).
// Run: go test -run '^$' -bench Global ./filters/ratelimit/
func BenchmarkGlobal(b *testing.B) {
	wasm := rlWasm(b)
	spec := func() *config.Spec {
		return &config.Spec{Mode: "global", Domain: "bench",
			Global: &config.GlobalSpec{Cluster: "ratelimit", Timeout: configjson.Duration(5 * time.Second)},
			Rules: []config.RuleSpec{{Name: "per-consumer", Descriptors: []config.DescriptorSpec{{Key: "consumer", Header: "x-consumer"}},
				Limit: config.LimitSpec{Requests: 1_000_000_000, Unit: "second"}}}}
	}
	ok, err := marshal(&rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK,
			CurrentLimit: &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 1_000_000_000, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND}, LimitRemaining: 999_999_999}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, svc := range []string{"fake-service", "real-service"} {
		b.Run(svc, func(b *testing.B) {
			var addr string
			if svc == "fake-service" {
				addr = startFakeRLS(b, func(*rlsv3.RateLimitRequest) ([]byte, error) { return ok, nil }).addr
			} else {
				addr = globaltest.Start(b, spec()).GRPCAddr
			}
			cfg, err := json.Marshal(spec())
			if err != nil {
				b.Fatal(err)
			}
			local := benchHost(b, 1, wasm, neverLimited)
			global := testenv.NewForTest(b, testenv.Options{Workers: 1, Clusters: map[string]string{"ratelimit": addr},
				Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return benchUpstream }},
				testenv.Plugin{Name: "ratelimit", VMID: "rl", Wasm: wasm, Config: cfg})
			ctx := context.Background()
			for i := 0; i < 200; i++ {
				local.Do(ctx, benchRequests[i])
				global.Do(ctx, benchRequests[i])
			}
			var localNs, globalNs int64
			i := 0
			b.ResetTimer()
			for b.Loop() {
				req := benchRequests[i%benchKeys]
				t0 := time.Now()
				r1, err1 := local.Do(ctx, req)
				t1 := time.Now()
				r2, err2 := global.Do(ctx, req)
				t2 := time.Now()
				if err1 != nil || err2 != nil || r1.Upstream == nil || r2.Upstream == nil {
					b.Fatalf("a request did not pass (%v %v)", err1, err2)
				}
				localNs += int64(t1.Sub(t0))
				globalNs += int64(t2.Sub(t1))
				i++
			}
			n := float64(b.N)
			b.ReportMetric(float64(localNs)/n, "local-ns/req")
			b.ReportMetric(float64(globalNs)/n, "global-ns/req")
			b.ReportMetric(float64(globalNs-localNs)/n, "added-ns/req")
			if m, _ := global.Metric("meshplug.ratelimit.service.ok"); m == 0 {
				b.Fatal("the service never answered OK")
			}
		})
	}
}

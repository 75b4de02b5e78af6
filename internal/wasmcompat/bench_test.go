package wasmcompat

import (
	"context"
	"testing"

	"github.com/meshplug/meshplug/internal/benchpair"
	"github.com/meshplug/meshplug/testenv"
)

// BenchmarkRewrittenFilters: one request through each filter, the untouched module
// and its rewrite request by request in alternation (benchpair), on testenv; reported
// in docs/benchmarks.md with the module sizes (ReportMetric bytes).
//
//	go test -run '^$' -bench RewrittenFilters -benchtime 20000x ./internal/wasmcompat
func BenchmarkRewrittenFilters(b *testing.B) {
	req := func(path string, headers ...[2]string) testenv.Request {
		return testenv.Request{Path: path, Headers: append([][2]string{{"user-agent", "bench"}, {"accept", "*/*"}}, headers...)}
	}
	for _, tc := range []struct {
		name, dir, config string
		req               testenv.Request
		status            int
	}{
		{"auth/api-key", "../../filters/auth", `{
  "api_keys": {"keys": [{"consumer": "ci-bot", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]},
  "rules": [{"match": {"prefix": "/"}, "requires": ["api_keys"]}]}`,
			req("/orders", [2]string{"x-api-key", "test"}), 200},
		{"ratelimit/local", "../../filters/ratelimit", `{
  "rules": [{"name": "per-consumer", "match": {"prefix": "/api"},
     "descriptors": [{"key": "consumer", "header": "x-consumer"}],
     "limit": {"requests": 1000000000, "unit": "second"}}]}`,
			req("/api/x", [2]string{"x-consumer", "zeta"}), 200},
		{"routehint/split", "../../filters/routehint", `{
  "targets": [{"name": "canary", "headers": {"x-route-hint": "canary"}}, {"name": "stable"}],
  "rules": [{"name": "rollout", "match": {"all": [{"from": "path", "op": "prefix", "value": "/reviews"}]},
     "split": {"key": {"header": "x-consumer"}, "salt": "reviews-v2",
               "weights": [{"target": "canary", "weight": 10}, {"target": "stable", "weight": 90}]}}]}`,
			req("/reviews/1", [2]string{"x-consumer", "alice"}), 200},
		{"fault/header-abort", "../../filters/fault", `{"faults": [{
  "abort": {"header_abort": {}, "percentage": {"numerator": 100}}}]}`,
			req("/", [2]string{"x-envoy-fault-abort-request", "503"}), 503},
	} {
		b.Run(tc.name, func(b *testing.B) {
			raw := testenv.MustBuildGuest(b, tc.dir)
			rewritten, _, err := Rewrite(raw)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			variant := func(name string, wasm []byte) benchpair.Variant {
				h := testenv.NewForTest(b, testenv.Options{}, testenv.Plugin{Name: "f", Wasm: wasm, Config: []byte(tc.config)})
				return benchpair.Variant{Name: name, Do: func(b *testing.B) {
					resp, err := h.Do(ctx, tc.req)
					if err != nil || resp.Status != tc.status {
						b.Fatalf("%s: status %v, want %d (%v)", name, resp, tc.status, err)
					}
				}}
			}
			benchpair.Run(b, variant("rewritten", rewritten), variant("raw", raw))
			b.ReportMetric(float64(len(raw)), "raw-bytes")
			b.ReportMetric(float64(len(rewritten)), "rewritten-bytes")
		})
	}
}

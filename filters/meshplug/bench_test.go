//go:build !wasip1

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/meshplug/meshplug/filters/auth/jwt"
	"github.com/meshplug/meshplug/filters/auth/jwt/jwttest"
	"github.com/meshplug/meshplug/internal/benchpair"
	"github.com/meshplug/meshplug/testenv"
)

// benchConfigs: auth accepts 8 API keys (consumers c0..c7): the mixed requests below spread
// over them, so ratelimit tracks 8 buckets and routehint sends c0 to canary.
func benchConfigs() map[string]string {
	keys := ""
	for i := range 8 {
		if i > 0 {
			keys += ","
		}
		keys += fmt.Sprintf(`{"consumer": "c%d", "sha256": %q}`, i, sha(fmt.Sprintf("k%d", i)))
	}
	return map[string]string{
		"auth": `{"api_keys": {"from_headers": ["x-api-key"], "keys": [` + keys + `]},
		  "rules": [{"match": {"prefix": "/public"}, "public": true}, {"match": {"prefix": "/"}, "requires": ["api_keys"]}]}`,
		"ratelimit": `{"rules": [{"name": "per-consumer", "descriptors": [{"key": "c", "header": "x-consumer"}], "limit": {"requests": 1000, "unit": "minute"}}]}`,
		"routehint": `{"targets": [{"name": "canary", "headers": {"x-route-hint": "canary"}}, {"name": "stable"}],
		  "rules": [{"name": "c0", "match": {"all": [{"from": "header", "name": "x-consumer", "op": "equal", "value": "c0"}]}, "target": "canary"}]}`,
		"fault": faultCfg,
	}
}

// mixedRequests are 32 requests cycled through: 8 consumers on several paths, one in
// 16 without a key (401), one in 16 aborted by fault (503), the rest allowed until a
// consumer's 1,000 a minute are spent (429 after).
func mixedRequests() []testenv.Request {
	var rs []testenv.Request
	for i := range 32 {
		r := testenv.Request{Path: fmt.Sprintf("/api/v1/items/%d?page=%d", i%5, i%3), Headers: [][2]string{
			{"x-api-key", fmt.Sprintf("k%d", i%8)}, {"user-agent", "bench"}, {"accept", "application/json"}}}
		switch i % 16 {
		case 7:
			r.Headers = r.Headers[1:]
		case 11:
			r.Headers = append(r.Headers, [2]string{"x-fault", "yes"})
		case 13:
			r.Path = "/public/health"
		}
		rs = append(rs, r)
	}
	return rs
}

// benchChain is the four filters from the layout's modules: "bundled" (meshplug.wasm),
// "bundled-defaultgc" (the same without its GC setting, testdata/defaultgc) or
// "separate" (the four <filter>.wasm).
func benchChain(b testing.TB, layout string) []testenv.Plugin {
	cfg := benchConfigs()
	var ps []testenv.Plugin
	for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
		p := testenv.Plugin{Name: f, RootID: f, Config: []byte(cfg[f])}
		switch layout {
		case "bundled":
			p.Wasm, p.VMID = bundle(b), "meshplug"
		case "bundled-defaultgc":
			p.Wasm, p.VMID = testenv.MustBuildGuest(b, "testdata/defaultgc"), "meshplug"
		default:
			p.Wasm, p.VMID = testenv.MustBuildGuest(b, "../"+f), f
		}
		ps = append(ps, p)
	}
	return ps
}

// BenchmarkChain drives the four filters through b.N mixed requests on one worker,
// bundled (meshplug.wasm, one VM; and the same with Go's default GC) or separate
// (four modules, four VMs), and reports
// the worker's linear memory at the end (the sum of its VMs' for separate): run it
// with -benchtime 20000x (or 1000000x) for "memory after N requests", and compare
// ns/op of the two in the same run for the per-request cost.
//
//	go test -run '^$' -bench BenchmarkChain -benchtime 20000x ./filters/meshplug
func BenchmarkChain(b *testing.B) {
	for _, layout := range []string{"bundled", "bundled-defaultgc", "separate"} {
		b.Run(layout, func(b *testing.B) {
			bundled := layout != "separate"
			h := testenv.NewForTest(b, testenv.Options{Workers: 1}, benchChain(b, layout)...)
			reqs := mixedRequests()
			statuses := map[int]int{}
			memory := func() uint32 {
				mem := h.GuestMemory(0, 0)
				if !bundled {
					for p := 1; p < 4; p++ {
						mem += h.GuestMemory(p, 0)
					}
				}
				return mem
			}
			start := memory()
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				resp, err := h.Do(ctx, reqs[i%len(reqs)])
				if err != nil {
					b.Fatal(err)
				}
				statuses[resp.Status]++
			}
			b.StopTimer()
			b.ReportMetric(float64(start)/(1<<20), "MiB/worker-at-start")
			b.ReportMetric(float64(memory())/(1<<20), "MiB/worker")
			if !bundled {
				for p, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
					b.ReportMetric(float64(h.GuestMemory(p, 0))/(1<<20), "MiB-"+f)
				}
			}
			for _, s := range []int{200, 401, 429, 503} {
				b.ReportMetric(float64(statuses[s])/float64(b.N), fmt.Sprintf("share-%d", s))
			}
		})
	}
}

// BenchmarkCompile is wazero's compilation (compiler mode, as testenv and meshplug run
// use) of the bundle vs the four per-filter modules: cold (a new runtime, no cache)
// and from a warm compilation cache on disk (a new runtime each time, as a restarted
// process). Run it with -benchtime 3x.
//
//	go test -run '^$' -bench BenchmarkCompile -benchtime 3x ./filters/meshplug
func BenchmarkCompile(b *testing.B) {
	layouts := map[string][][]byte{"bundled": {bundle(b)}}
	for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
		layouts["separate"] = append(layouts["separate"], testenv.MustBuildGuest(b, "../"+f))
	}
	ctx := context.Background()
	for _, layout := range []string{"bundled", "separate"} {
		mods := layouts[layout]
		for _, cached := range []bool{false, true} {
			name := layout + "/cold"
			var cache wazero.CompilationCache
			if cached {
				name = layout + "/cached"
				var err error
				if cache, err = wazero.NewCompilationCacheWithDir(b.TempDir()); err != nil {
					b.Fatal(err)
				}
				compileAll(ctx, b, cache, mods) // warm it
			}
			b.Run(name, func(b *testing.B) {
				for range b.N {
					compileAll(ctx, b, cache, mods)
				}
			})
		}
	}
}

func compileAll(ctx context.Context, b *testing.B, cache wazero.CompilationCache, mods [][]byte) {
	cfg := wazero.NewRuntimeConfigCompiler()
	if cache != nil {
		cfg = cfg.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	defer r.Close(ctx)
	for _, m := range mods {
		if _, err := r.CompileModule(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChainPaired sends each mixed request through the bundled chain and then
// through the separate one, alternating request by request on two hosts, and reports
// the time per request of each and their ratio: on a shared, noisy machine both sides
// see the same noise, which sequential benchmarks do not.
//
//	go test -run '^$' -bench BenchmarkChainPaired -benchtime 20000x ./filters/meshplug
func BenchmarkChainPaired(b *testing.B) {
	hosts := []*testenv.Host{
		testenv.NewForTest(b, testenv.Options{Workers: 1}, benchChain(b, "bundled")...),
		testenv.NewForTest(b, testenv.Options{Workers: 1}, benchChain(b, "separate")...),
	}
	reqs := mixedRequests()
	ctx := context.Background()
	var spent [2]time.Duration
	b.ResetTimer()
	for i := range b.N {
		for j, h := range hosts {
			t0 := time.Now()
			if _, err := h.Do(ctx, reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			spent[j] += time.Since(t0)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(spent[0].Nanoseconds())/float64(b.N), "bundled-ns/req")
	b.ReportMetric(float64(spent[1].Nanoseconds())/float64(b.N), "separate-ns/req")
	b.ReportMetric(float64(spent[0])/float64(spent[1]), "bundled/separate")
}

// bundleCase is one per-request path through the bundle: the plugins it runs (root
// id and configuration, in chain order), the request, and the status it must get.
type bundleCase struct {
	name    string
	plugins [][2]string // {root id, configuration}
	req     testenv.Request
	status  int
}

// bundleCases are the paths issue 23 measures against the no-op floor: auth's JWT
// cache hit (RS256) and API key, ratelimit's allowed path, routehint with one rule,
// and the four filters in a chain (an allowed request through all of them).
func bundleCases() []bundleCase {
	now := time.Now()
	rs := jwttest.New(jwt.RS256, "rs1")
	jwtAuth := fmt.Sprintf(`{"providers": {"corp": {"issuer": "https://idp", "audiences": ["api"], "algorithms": ["RS256"],
	  "local_jwks": {"inline_string": %q}, "claim_to_headers": [{"claim": "sub", "header": "x-user-id"}]}},
	  "rules": [{"match": {"prefix": "/"}, "requires": ["corp"]}]}`, jwttest.JWKS(rs))
	tok := rs.Sign(map[string]any{"iss": "https://idp", "aud": "api", "sub": "alice", "iat": now.Unix() - 5, "exp": now.Unix() + 3600})
	cfg := benchConfigs()
	neverLimited := `{"rules": [{"name": "per-consumer", "descriptors": [{"key": "c", "header": "x-consumer"}], "limit": {"requests": 1000000000, "unit": "second"}}]}`
	keyReq := testenv.Request{Path: "/api/v1/items/1?page=1", Headers: [][2]string{{"x-api-key", "k1"}, {"user-agent", "bench"}, {"accept", "application/json"}}}
	return []bundleCase{
		{name: "auth-cache-hit", plugins: [][2]string{{"auth", jwtAuth}}, status: 200,
			req: testenv.Request{Path: "/api", Headers: [][2]string{{"authorization", "Bearer " + tok}, {"user-agent", "bench"}}}},
		{name: "auth-api-key", plugins: [][2]string{{"auth", cfg["auth"]}}, req: keyReq, status: 200},
		{name: "ratelimit-allowed", plugins: [][2]string{{"ratelimit", neverLimited}}, status: 200,
			req: testenv.Request{Path: "/api/orders", Headers: [][2]string{{"x-consumer", "c1"}, {"user-agent", "bench"}}}},
		{name: "routehint-1-rule", plugins: [][2]string{{"routehint", cfg["routehint"]}}, status: 200,
			req: testenv.Request{Path: "/api/reviews/42?v=7", Headers: [][2]string{{"x-consumer", "c0"}, {"user-agent", "bench"}, {"x-route-hint", "spoofed"}}}},
		{name: "chain-allowed", plugins: [][2]string{{"auth", cfg["auth"]}, {"ratelimit", neverLimited}, {"routehint", cfg["routehint"]}, {"fault", cfg["fault"]}},
			req: keyReq, status: 200},
	}
}

// BenchmarkBundleBeforeAfter compares this build of meshplug.wasm with a baseline
// bundle built from another commit (MESHPLUG_BUNDLE_BASELINE_WASM; skipped without
// it) and with the no-op floor (the benchmark guest, one no-op plugin per plugin of the
// case, in one VM), request by request in a rotating order so that all three see the
// same machine load. Reported: ns per request of each, each build's multiple of the
// floor and new÷old.
//
//	base=$(mktemp -d) && git archive <commit> | tar -x -C "$base" &&
//	  (cd "$base" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o meshplug.wasm ./filters/meshplug)
//	MESHPLUG_BUNDLE_BASELINE_WASM="$base/meshplug.wasm" go test -run '^$' -bench BundleBeforeAfter -benchtime 20000x -count 3 ./filters/meshplug
func BenchmarkBundleBeforeAfter(b *testing.B) {
	old := benchpair.Baseline(b, "MESHPLUG_BUNDLE_BASELINE_WASM")
	cur := bundle(b)
	floorWasm := testenv.MustBuildGuest(b, "../../testenv/benchmarks/guest")
	upstream := &testenv.UpstreamResponse{Status: 200}
	ctx := context.Background()
	for _, c := range bundleCases() {
		b.Run(c.name, func(b *testing.B) {
			host := func(wasm []byte, floor bool) *testenv.Host {
				var ps []testenv.Plugin
				for i, p := range c.plugins {
					if floor {
						ps = append(ps, testenv.Plugin{Name: fmt.Sprintf("noop%d", i), Wasm: wasm, VMID: "floor", Config: []byte("noop")})
					} else {
						ps = append(ps, testenv.Plugin{Name: p[0], RootID: p[0], Wasm: wasm, VMID: "meshplug", Config: []byte(p[1])})
					}
				}
				return testenv.NewForTest(b, testenv.Options{Workers: 1, Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse { return upstream }}, ps...)
			}
			variant := func(name string, h *testenv.Host, want int) benchpair.Variant {
				return benchpair.Variant{Name: name, Do: func(b *testing.B) {
					resp, err := h.Do(ctx, c.req)
					if err != nil || resp.Status != want {
						b.Fatalf("%s: status %d, want %d (%v)", name, resp.Status, want, err)
					}
				}}
			}
			vs := []benchpair.Variant{variant("new", host(cur, false), c.status), variant("old", host(old, false), c.status), variant("floor", host(floorWasm, true), 200)}
			ns := benchpair.Run(b, vs...)
			b.ReportMetric(ns[0]/ns[2], "new×floor")
			b.ReportMetric(ns[1]/ns[2], "old×floor")
		})
	}
}

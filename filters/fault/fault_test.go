//go:build !wasip1

package main

// These tests drive the compiled fault.wasm through testenv with a fake clock: delays
// resumed from the tick at their due time, aborts (HTTP and gRPC), header-controlled
// faults and their bounds, max_active_faults across worker VMs, streams reset during a
// delay, bodies held during a delay, and the percentages over 100k requests.

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/fault/engine"
	"github.com/meshplug/meshplug/testenv"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func start(t testing.TB, opts testenv.Options, cfg string) *testenv.Host {
	t.Helper()
	return testenv.NewForTest(t, opts, testenv.Plugin{Name: "fault", VMID: "fault", Wasm: testenv.MustBuildGuest(t, "."), Config: []byte(cfg)})
}

func metric(h *testenv.Host, name string) int64 {
	v, _ := h.Metric(name)
	return v
}

// counter returns the shared active-fault count: the sum of the leases' slots
// ("v1 <vm>:<held>:<expires> ...").
func counter(t testing.TB, h *testenv.Host) int {
	t.Helper()
	v, _, ok := h.SharedData("fault", CounterKeyPrefix+"fault")
	require.True(t, ok, "shared counter missing")
	f := strings.Fields(string(v))
	require.Equal(t, "v1", f[0], "counter %q", v)
	n := 0
	for _, l := range f[1:] {
		parts := strings.Split(l, ":")
		require.Len(t, parts, 3, "lease %q", l)
		held, err := strconv.Atoi(parts[1])
		require.NoError(t, err)
		n += held
	}
	return n
}

func wait(t testing.TB, s *testenv.Stream) *testenv.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.StuckStreamTimeout)
	defer cancel()
	resp, err := s.Wait(ctx)
	require.NoError(t, err)
	return resp
}

// The bookinfo example of the README: jason gets a 7 s delay, everyone else nothing.
const bookinfo = `{"faults": [{
  "name": "jason-delay",
  "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}],
  "delay": {"fixed_delay": "7s", "percentage": {"numerator": 100}}
}]}`

func TestDelayResumesAtItsDueTime(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock}, bookinfo)

	resp := h.MustDo(t, testenv.Request{Path: "/reviews/1", Headers: [][2]string{{"end-user", "mike"}}})
	require.NotNil(t, resp.Upstream, "others are not delayed")

	s := h.Start(testenv.Request{Path: "/reviews/1", Headers: [][2]string{{"End-User", "jason"}}})
	assert.False(t, s.Done())
	assert.EqualValues(t, 1, metric(h, MetricActiveFaults))
	clock.Advance(7*time.Second - time.Millisecond)
	assert.False(t, s.Done(), "resumed before its delay")
	clock.Advance(time.Millisecond)
	require.True(t, s.Done(), "not resumed at its due time")
	resp = wait(t, s)
	require.NotNil(t, resp.Upstream)
	assert.Equal(t, 200, resp.Status)
	assert.EqualValues(t, 1, metric(h, MetricDelaysInjected))
	assert.EqualValues(t, 0, metric(h, MetricActiveFaults))
	assert.EqualValues(t, 0, metric(h, MetricAbortsInjected))
}

// Many delayed streams at once, each resumed at its own due time (the tick is armed
// for the earliest one, to the millisecond).
func TestManyDelaysEachAtItsOwnTime(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock, Workers: 2}, `{"faults": [{
	  "delay": {"header_delay": {}, "percentage": {"numerator": 100}}}]}`)
	const n = 60
	streams := make([]*testenv.Stream, n)
	delays := make([]time.Duration, n)
	for i := range streams {
		delays[i] = time.Duration(37*i%500+1) * time.Millisecond
		streams[i] = h.Start(testenv.Request{Path: "/", Worker: i % 2,
			Headers: [][2]string{{"x-envoy-fault-delay-request", strconv.Itoa(int(delays[i] / time.Millisecond))}}})
	}
	done := make([]time.Duration, n)
	for elapsed := time.Duration(0); elapsed <= 600*time.Millisecond; elapsed += time.Millisecond {
		for i, s := range streams {
			if done[i] == 0 && s.Done() {
				done[i] = elapsed
			}
		}
		clock.Advance(time.Millisecond)
	}
	for i := range streams {
		assert.Equal(t, delays[i], done[i], "stream %d resumed at the wrong time", i)
		assert.NotNil(t, wait(t, streams[i]).Upstream)
	}
	assert.EqualValues(t, n, metric(h, MetricDelaysInjected))
	assert.EqualValues(t, 0, metric(h, MetricActiveFaults))
}

func TestAbortsPerStatus(t *testing.T) {
	for _, tc := range []struct {
		name, abort string
		status      int
		body, ct    string
		extra       [2]string
	}{
		{"503", `"http_status": 503`, 503, `{"error":"fault_filter_abort","message":"fault filter abort"}`, "application/json", [2]string{}},
		{"200", `"http_status": 200`, 200, `{"error":"fault_filter_abort","message":"fault filter abort"}`, "application/json", [2]string{}},
		{"599", `"http_status": 599`, 599, `{"error":"fault_filter_abort","message":"fault filter abort"}`, "application/json", [2]string{}},
		{"body and headers", `"http_status": 429, "body": "slow down", "response_headers": [{"name": "Retry-After", "value": "3"}]`,
			429, "slow down", "text/plain; charset=utf-8", [2]string{"retry-after", "3"}},
		{"own content-type", `"http_status": 418, "body": "<teapot/>", "response_headers": [{"name": "content-type", "value": "application/xml"}]`,
			418, "<teapot/>", "application/xml", [2]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, testenv.Options{}, `{"faults": [{"abort": {`+tc.abort+`, "percentage": {"numerator": 100}}}]}`)
			resp := h.MustDo(t, testenv.Request{Method: "POST", Path: "/x", Body: []byte("payload")})
			assert.Nil(t, resp.Upstream)
			assert.True(t, resp.LocalReply)
			assert.Equal(t, tc.status, resp.Status)
			assert.Equal(t, tc.body, string(resp.Body))
			assert.Equal(t, engine.Details, resp.Details)
			ct, _ := resp.Headers.Get("content-type")
			assert.Equal(t, tc.ct, ct)
			if tc.extra[0] != "" {
				v, _ := resp.Headers.Get(tc.extra[0])
				assert.Equal(t, tc.extra[1], v)
			}
			assert.EqualValues(t, 1, metric(h, MetricAbortsInjected))
			assert.EqualValues(t, 0, metric(h, MetricActiveFaults), "slot released when the stream ended")
		})
	}
}

func TestGRPCAborts(t *testing.T) {
	grpcReq := func(hdrs ...[2]string) testenv.Request {
		return testenv.Request{Method: "POST", Path: "/pkg.Svc/Call",
			Headers: append([][2]string{{"content-type", "application/grpc"}, {"te", "trailers"}}, hdrs...)}
	}
	for _, tc := range []struct {
		name, abort string
		req         testenv.Request
		status      int
		grpc        string
	}{
		{"http status mapped", `"http_status": 503`, grpcReq(), 200, "14"},
		{"http 429 mapped", `"http_status": 429`, grpcReq(), 200, "14"},
		{"grpc status", `"grpc_status": 8`, grpcReq(), 200, "8"},
		{"header grpc", `"header_abort": {}`, grpcReq([2]string{"x-envoy-fault-abort-grpc-request", "5"}), 200, "5"},
		{"header http wins", `"header_abort": {}`, grpcReq([2]string{"x-envoy-fault-abort-grpc-request", "5"}, [2]string{"x-envoy-fault-abort-request", "403"}), 200, "7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, testenv.Options{}, `{"faults": [{"abort": {`+tc.abort+`, "percentage": {"numerator": 100}}}]}`)
			resp := h.MustDo(t, tc.req)
			assert.Nil(t, resp.Upstream)
			assert.Equal(t, tc.status, resp.Status)
			gs, _ := resp.Headers.Get("grpc-status")
			if gs == "" {
				gs, _ = resp.Trailers.Get("grpc-status")
			}
			assert.Equal(t, tc.grpc, gs)
			msg, _ := resp.Headers.Get("grpc-message")
			assert.Equal(t, "fault filter abort", strings.ReplaceAll(msg, "%20", " "))
			assert.Empty(t, resp.Body)
		})
	}
}

// Content types Envoy does not treat as gRPC (Grpc::Common::hasGrpcContentType, the
// one rule every filter uses: httpreq.IsGRPC) get the HTTP reply with its JSON body.
func TestNotGRPCContentTypesGetHTTPAborts(t *testing.T) {
	h := start(t, testenv.Options{}, `{"faults": [{"abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`)
	for _, ct := range []string{"application/grpc-web", "application/grpc-web+proto", "application/grpc;charset=utf-8", "application/grpcx"} {
		resp := h.MustDo(t, testenv.Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: [][2]string{{"content-type", ct}}})
		assert.Equal(t, 503, resp.Status, ct)
		assert.Contains(t, string(resp.Body), "fault_filter_abort", ct)
	}
	resp := h.MustDo(t, testenv.Request{Method: "POST", Path: "/pkg.Svc/Call", Headers: [][2]string{{"content-type", "application/grpc+proto"}}})
	assert.Equal(t, 200, resp.Status)
	assert.Empty(t, resp.Body)
}

// A grpc_status abort of a plain HTTP request is an HTTP 200 with the body, as in
// Envoy (the gRPC status only shapes gRPC replies).
func TestGRPCStatusAbortOfHTTPRequest(t *testing.T) {
	h := start(t, testenv.Options{}, `{"faults": [{"abort": {"grpc_status": 8, "percentage": {"numerator": 100}}}]}`)
	resp := h.MustDo(t, testenv.Request{Path: "/"})
	assert.Nil(t, resp.Upstream)
	assert.Equal(t, 200, resp.Status)
	assert.Contains(t, string(resp.Body), "fault_filter_abort")
}

func TestHeaderControlledFaults(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock}, `{"faults": [{
	  "headers": [{"name": ":path", "prefix_match": "/hdr"}],
	  "delay": {"header_delay": {"max_delay": "2s"}, "percentage": {"numerator": 100}},
	  "abort": {"header_abort": {}, "percentage": {"numerator": 100}}
	}, {
	  "abort": {"http_status": 500, "percentage": {"numerator": 0}}
	}]}`)
	type hdr = [2]string
	for _, tc := range []struct {
		name    string
		path    string
		headers [][2]string
		delay   time.Duration // expected delay (0: none)
		status  int           // expected final status
	}{
		{"no headers", "/hdr", nil, 0, 200},
		{"delay", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "300"}}, 300 * time.Millisecond, 200},
		{"delay capped", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "999999999"}}, 2 * time.Second, 200},
		{"delay 0", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "0"}}, 0, 200},
		{"delay junk", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "1e3"}}, 0, 200},
		{"delay negative", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "-5"}}, 0, 200},
		{"delay first value only", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "junk"}, hdr{"x-envoy-fault-delay-request", "500"}}, 0, 200},
		{"delay percentage 0", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "300"}, hdr{"x-envoy-fault-delay-request-percentage", "0"}}, 0, 200},
		{"abort", "/hdr", [][2]string{hdr{"x-envoy-fault-abort-request", "418"}}, 0, 418},
		{"abort out of range", "/hdr", [][2]string{hdr{"x-envoy-fault-abort-request", "600"}}, 0, 200},
		{"abort 199", "/hdr", [][2]string{hdr{"x-envoy-fault-abort-request", "199"}}, 0, 200},
		{"abort percentage 0", "/hdr", [][2]string{hdr{"x-envoy-fault-abort-request", "418"}, hdr{"x-envoy-fault-abort-request-percentage", "0"}}, 0, 200},
		{"delay then abort", "/hdr", [][2]string{hdr{"x-envoy-fault-delay-request", "100"}, hdr{"x-envoy-fault-abort-request", "503"}}, 100 * time.Millisecond, 503},
		// The second rule has fixed providers: the headers are not honoured there.
		{"not enabled", "/other", [][2]string{hdr{"x-envoy-fault-delay-request", "300"}, hdr{"x-envoy-fault-abort-request", "418"}}, 0, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Start(testenv.Request{Path: tc.path, Headers: tc.headers})
			if tc.delay > 0 {
				clock.Advance(tc.delay - time.Millisecond)
				require.False(t, s.Done(), "resumed early")
				clock.Advance(time.Millisecond)
			}
			require.True(t, s.Done(), "still delayed")
			assert.Equal(t, tc.status, wait(t, s).Status)
		})
	}
	assert.EqualValues(t, 0, metric(h, MetricActiveFaults))
}

// Delays beyond what one tick period can express (the ABI's uint32 of milliseconds,
// about 49.7 days) resume at their due time too: the period is clamped and re-armed,
// never cut to 32 bits (2^32 ms would have been 0, "stop ticking", and 2^32+1 ms 1 ms).
func TestDelaysBeyondOneTickPeriod(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock}, `{"faults": [{
	  "headers": [{"name": ":path", "prefix_match": "/hdr"}],
	  "delay": {"header_delay": {}, "percentage": {"numerator": 100}}
	}, {
	  "delay": {"fixed_delay": "4294967.297s", "percentage": {"numerator": 100}}
	}]}`)
	for _, tc := range []struct {
		path  string
		delay time.Duration
	}{
		{"/hdr", (1<<32 - 1) * time.Millisecond},
		{"/hdr", 1 << 32 * time.Millisecond},
		{"/hdr", (1<<32 + 1) * time.Millisecond},
		{"/hdr", (1<<33 + 5) * time.Millisecond},
		{"/hdr", 3 * (1 << 32) * time.Millisecond},
		{"/fixed", (1<<32 + 1) * time.Millisecond},
	} {
		t.Run(tc.delay.String()+tc.path, func(t *testing.T) {
			var headers [][2]string
			if tc.path == "/hdr" {
				headers = [][2]string{{"x-envoy-fault-delay-request", strconv.FormatInt(int64(tc.delay/time.Millisecond), 10)}}
			}
			s := h.Start(testenv.Request{Path: tc.path, Headers: headers})
			require.False(t, s.Done())
			clock.Advance(tc.delay - time.Millisecond)
			require.False(t, s.Done(), "resumed early")
			clock.Advance(time.Millisecond)
			require.True(t, s.Done(), "not resumed at its due time")
			assert.Equal(t, 200, wait(t, s).Status)
		})
	}
	assert.EqualValues(t, 0, metric(h, MetricActiveFaults))
}

// The percentage header lowers the configured percentage, never raises it.
func TestHeaderPercentageIsBoundedByConfig(t *testing.T) {
	h := start(t, testenv.Options{}, `{"faults": [{
	  "abort": {"header_abort": {}, "percentage": {"numerator": 10}}}]}`)
	const n = 4000
	for _, tc := range []struct {
		pct  string
		want float64
	}{{"100", 0.10}, {"5", 0.05}, {"junk", 0.10}} {
		aborted := 0
		for range n {
			resp := h.MustDo(t, testenv.Request{Path: "/", Headers: [][2]string{
				{"x-envoy-fault-abort-request", "503"}, {"x-envoy-fault-abort-request-percentage", tc.pct}}})
			if resp.Status == 503 {
				aborted++
			}
		}
		assertBinomial(t, aborted, n, tc.want, "percentage header "+tc.pct)
	}
}

// Percentages hold over 100k requests through fault.wasm (randomly seeded per VM):
// within 5 standard deviations of the binomial mean (a false failure about once in
// 1.7 million runs), for each denominator.
func TestPercentagesOver100kRequests(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	h := start(t, testenv.Options{Workers: 2}, `{"faults": [
	  {"headers": [{"name": "x-d", "exact_match": "h"}], "abort": {"http_status": 503, "percentage": {"numerator": 25}}},
	  {"headers": [{"name": "x-d", "exact_match": "t"}], "abort": {"http_status": 503, "percentage": {"numerator": 125, "denominator": "TEN_THOUSAND"}}},
	  {"headers": [{"name": "x-d", "exact_match": "m"}], "abort": {"http_status": 503, "percentage": {"numerator": 333333, "denominator": "MILLION"}}}
	]}`)
	for _, tc := range []struct {
		d string
		p float64
	}{{"h", 0.25}, {"t", 0.0125}, {"m", 0.333333}} {
		// Both worker VMs at once (two cores), each with its own generator.
		var aborted atomic.Int64
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n / 2 {
					resp, err := h.Do(context.Background(), testenv.Request{Path: "/", Worker: w, Headers: [][2]string{{"x-d", tc.d}}})
					if err != nil {
						t.Error(err)
						return
					}
					if resp.Status == 503 {
						aborted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		assertBinomial(t, int(aborted.Load()), n, tc.p, "denominator "+tc.d)
	}
}

func TestBinomialBoundCanFail(t *testing.T) {
	assert.False(t, withinBinomial(26_000, 100_000, 0.25), "1%% off at 100k is 7 sigma")
	assert.True(t, withinBinomial(25_100, 100_000, 0.25))
}

func withinBinomial(k, n int, p float64) bool {
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(k)-float64(n)*p) <= 5*sigma
}

func assertBinomial(t *testing.T, k, n int, p float64, what string) {
	t.Helper()
	assert.True(t, withinBinomial(k, n, p), "%s: %d of %d, expected %.1f ± %.1f (5σ)", what, k, n,
		float64(n)*p, 5*math.Sqrt(float64(n)*p*(1-p)))
}

// max_active_faults holds exactly across worker VMs: one shared counter updated by
// CAS. Faults over the cap are skipped (the request goes on unfaulted) and counted as
// overflows; slots come back when delays end.
func TestMaxActiveFaultsAcrossVMs(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock, Workers: 3}, `{"max_active_faults": 4, "faults": [{
	  "delay": {"fixed_delay": "1s", "percentage": {"numerator": 100}}}]}`)
	var delayed []*testenv.Stream
	passed := 0
	for i := range 12 {
		s := h.Start(testenv.Request{Path: "/", Worker: i % 3})
		if s.Done() {
			passed++
			assert.NotNil(t, wait(t, s).Upstream)
		} else {
			delayed = append(delayed, s)
		}
	}
	assert.Len(t, delayed, 4)
	assert.Equal(t, 8, passed)
	assert.Equal(t, 4, counter(t, h))
	assert.EqualValues(t, 4, metric(h, MetricActiveFaults))
	assert.EqualValues(t, 8, metric(h, MetricFaultsOverflow))
	clock.Advance(time.Second)
	for _, s := range delayed {
		require.True(t, s.Done())
	}
	assert.Equal(t, 0, counter(t, h))
	assert.EqualValues(t, 0, metric(h, MetricActiveFaults))
	// Slots are free again.
	s := h.Start(testenv.Request{Path: "/", Worker: 2})
	assert.False(t, s.Done())
	clock.Advance(time.Second)
	assert.True(t, s.Done())
}

// Aborts take a slot too (Envoy's tryIncActiveFaults), held until the stream ends.
func TestMaxActiveFaultsCountsDelayedAborts(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock}, `{"faults": [{"max_active_faults": 1,
	  "delay": {"fixed_delay": "1s", "percentage": {"numerator": 100}},
	  "abort": {"http_status": 503, "percentage": {"numerator": 100}}}]}`)
	a := h.Start(testenv.Request{Path: "/"})
	require.False(t, a.Done())
	// The slot is taken: the second request overflows on the delay and on the abort.
	b := h.MustDo(t, testenv.Request{Path: "/"})
	assert.Equal(t, 200, b.Status)
	assert.EqualValues(t, 2, metric(h, MetricFaultsOverflow))
	clock.Advance(time.Second)
	assert.Equal(t, 503, wait(t, a).Status)
	assert.Equal(t, 0, counter(t, h))
}

// A stream reset during its delay is cleaned up at proxy_on_done: never resumed, its
// slot given back, other delays unaffected.
func TestResetDuringDelay(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock}, `{"max_active_faults": 10, "faults": [{
	  "delay": {"header_delay": {}, "percentage": {"numerator": 100}}}]}`)
	gone := h.Start(testenv.Request{Path: "/gone", Headers: [][2]string{{"x-envoy-fault-delay-request", "500"}}})
	stays := h.Start(testenv.Request{Path: "/stays", Headers: [][2]string{{"x-envoy-fault-delay-request", "800"}}})
	assert.Equal(t, 2, counter(t, h))
	clock.Advance(100 * time.Millisecond)
	gone.Reset()
	resp := wait(t, gone)
	assert.True(t, resp.Reset)
	assert.Nil(t, resp.Upstream)
	assert.Equal(t, 1, counter(t, h))
	assert.EqualValues(t, 1, metric(h, MetricActiveFaults))
	clock.Advance(time.Second)
	assert.Nil(t, wait(t, gone).Upstream, "a reset stream was resumed")
	resp = wait(t, stays)
	require.NotNil(t, resp.Upstream)
	assert.Equal(t, "/stays", resp.Upstream.Path)
	assert.Equal(t, 0, counter(t, h))
	for _, l := range h.Logs() {
		assert.NotContains(t, l.Message, "resuming stream", "no resume of a finished stream")
	}
}

// The request body and trailers are held during the delay: nothing reaches the
// upstream before the delay ends, then all of it does. In Envoy's default mode a Pause
// from request headers is StopAllIterationAndWatermark (the host holds the body
// without calling the filter); with allow_on_headers_stop_iteration it is
// StopIteration and the body callbacks run, so the filter holds them itself (as
// Envoy's fault filter does with StopIterationAndWatermark from decodeData).
func TestBodyHeldDuringDelay(t *testing.T) {
	for _, mode := range []bool{false, true} {
		for _, tc := range []struct {
			name     string
			trailers [][2]string
		}{{"body", nil}, {"body and trailers", [][2]string{{"x-t", "1"}}}} {
			t.Run(fmt.Sprintf("%s/allow_on_headers_stop_iteration=%v", tc.name, mode), func(t *testing.T) {
				clock := testenv.NewFakeClock(t0)
				h := start(t, testenv.Options{Clock: clock, AllowOnHeadersStopIteration: mode}, `{"faults": [{
				  "delay": {"fixed_delay": "250ms", "percentage": {"numerator": 100}}}]}`)
				s := h.Start(testenv.Request{Method: "POST", Path: "/upload", Body: []byte("hello body"), Trailers: tc.trailers})
				clock.Advance(240 * time.Millisecond)
				require.False(t, s.Done(), "the request went on during the delay")
				clock.Advance(10 * time.Millisecond)
				resp := wait(t, s)
				require.NotNil(t, resp.Upstream)
				assert.Equal(t, "hello body", string(resp.Upstream.Body))
				if tc.trailers != nil {
					tv, _ := resp.Upstream.Trailers.Get("x-t")
					assert.Equal(t, "1", tv)
				}
			})
		}
	}
}

// Targeting: headers (all must match, repeated values joined by ","), downstream
// nodes, upstream cluster and route name (testenv's router stage sets xds.cluster_name
// and xds.route_name from the route, as Envoy does before the filter chain runs); the
// first matching rule applies.
func TestTargeting(t *testing.T) {
	routes := []testenv.Route{
		{Name: "r1", Cluster: "reviews", Match: testenv.RouteMatch{Prefix: "/reviews/v1"}},
		{Name: "r2", Cluster: "reviews", Match: testenv.RouteMatch{Prefix: "/reviews"}},
		{Name: "default", Cluster: "web", Match: testenv.RouteMatch{Prefix: "/"}},
	}
	h := start(t, testenv.Options{Routes: routes}, `{"faults": [
	  {"name": "cluster", "upstream_cluster": "reviews", "route_name": "r1", "abort": {"http_status": 501, "percentage": {"numerator": 100}}},
	  {"name": "node", "downstream_nodes": ["productpage"], "abort": {"http_status": 502, "percentage": {"numerator": 100}}},
	  {"name": "joined", "headers": [{"name": "x-g", "exact_match": "a,b"}], "abort": {"http_status": 503, "percentage": {"numerator": 100}}},
	  {"name": "method+path", "headers": [{"name": ":method", "exact_match": "DELETE"}, {"name": ":path", "safe_regex_match": {"regex": "/items/[0-9]+"}}],
	   "abort": {"http_status": 504, "percentage": {"numerator": 100}}},
	  {"name": "absent", "headers": [{"name": "x-canary", "present_match": false}, {"name": ":path", "prefix_match": "/absent"}],
	   "abort": {"http_status": 505, "percentage": {"numerator": 100}}}
	]}`)
	for _, tc := range []struct {
		name string
		req  testenv.Request
		want int
	}{
		{"cluster and route", testenv.Request{Path: "/reviews/v1/3"}, 501},
		{"cluster, other route", testenv.Request{Path: "/reviews/3"}, 200},
		{"node", testenv.Request{Path: "/", Headers: [][2]string{{"x-envoy-downstream-service-node", "productpage"}}}, 502},
		{"other node", testenv.Request{Path: "/", Headers: [][2]string{{"x-envoy-downstream-service-node", "ratings"}}}, 200},
		{"joined values", testenv.Request{Path: "/", Headers: [][2]string{{"x-g", "a"}, {"x-g", "b"}}}, 503},
		{"one value", testenv.Request{Path: "/", Headers: [][2]string{{"x-g", "a"}}}, 200},
		{"method and path", testenv.Request{Method: "DELETE", Path: "/items/42"}, 504},
		{"regex is anchored", testenv.Request{Method: "DELETE", Path: "/items/42/x"}, 200},
		{"wrong method", testenv.Request{Method: "GET", Path: "/items/42"}, 200},
		{"absent header", testenv.Request{Path: "/absent"}, 505},
		{"present header", testenv.Request{Path: "/absent", Headers: [][2]string{{"x-canary", "1"}}}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, h.MustDo(t, tc.req).Status)
		})
	}
}

func TestConfigErrorRejectsThePlugin(t *testing.T) {
	for _, cfg := range []string{`{}`, `{"faults": [{"abort": {"http_status": 503}}]}`, `not json`,
		`{"faults": [{"response_rate_limit": {"fixed_limit": {"limit_kbps": 10}}, "abort": {"http_status": 503, "percentage": {"numerator": 1}}}]}`} {
		_, err := testenv.New(context.Background(), testenv.Options{},
			testenv.Plugin{Name: "fault", Wasm: testenv.MustBuildGuest(t, "."), Config: []byte(cfg)})
		assert.Error(t, err, "config %s", cfg)
	}
}

// The README's JSON examples are tested claims: each starts fault.wasm.
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := strings.Split(string(readme), "```json\n")[1:]
	require.NotEmpty(t, blocks)
	for i, b := range blocks {
		cfg, _, _ := strings.Cut(b, "```")
		_, err := testenv.New(context.Background(), testenv.Options{},
			testenv.Plugin{Name: "fault", Wasm: testenv.MustBuildGuest(t, "."), Config: []byte(cfg)})
		assert.NoError(t, err, "README example %d:\n%s", i, cfg)
	}
	assert.Contains(t, string(readme), bookinfo, "the README's bookinfo example is the one tested here")
}

// A VM that died holding slots leaks them only until its lease expires (60 s); a live
// VM renews its lease from its tick while its streams are delayed.
func TestMaxActiveFaultsLeases(t *testing.T) {
	clock := testenv.NewFakeClock(t0)
	h := start(t, testenv.Options{Clock: clock, Workers: 2}, `{"max_active_faults": 2, "faults": [{
	  "delay": {"fixed_delay": "300s", "percentage": {"numerator": 100}}}]}`)
	key := CounterKeyPrefix + "fault"
	// A dead VM's lease holding one slot, expiring in 60 s.
	dead := fmt.Sprintf("v1 dead:1:%d", t0.Add(60*time.Second).UnixMilli())
	require.Equal(t, abi.StatusOK, h.SetSharedData("fault", key, []byte(dead), 0))

	long := h.Start(testenv.Request{Path: "/", Worker: 0})
	require.False(t, long.Done(), "one slot was free")
	over := h.MustDo(t, testenv.Request{Path: "/", Worker: 1})
	assert.NotNil(t, over.Upstream, "cap of 2 reached: not delayed")
	assert.EqualValues(t, 1, metric(h, MetricFaultsOverflow))

	// Past the dead lease's expiry, and past the live one's first 60 s: the live VM
	// renewed its lease, the dead one is dropped.
	clock.Advance(200 * time.Second)
	require.False(t, long.Done())
	s := h.Start(testenv.Request{Path: "/", Worker: 1})
	assert.False(t, s.Done(), "the dead VM's slot came back")
	assert.Equal(t, 2, counter(t, h))
	over = h.MustDo(t, testenv.Request{Path: "/", Worker: 1})
	assert.NotNil(t, over.Upstream, "the live VM's renewed lease still counts")
	clock.Advance(400 * time.Second)
	assert.True(t, long.Done())
	assert.True(t, s.Done())
	assert.Equal(t, 0, counter(t, h))
}

// FuzzWasmHeaderControlled sends arbitrary x-envoy-fault-* values through fault.wasm:
// the VM never traps or logs an error, a reply is either the upstream's or a
// deliberate abort (200–599, gRPC status 0–16), and a delay never exceeds max_delay.
func FuzzWasmHeaderControlled(f *testing.F) {
	f.Add("300", "100", "503", "", "100", false)
	f.Add("99999999999999999999999", "-1", "600", "17", "4294967296", true)
	f.Add(" +5 ", "", "", "14", "", true)
	f.Add("\x00\xff", "1e9", "２００", "0x10", " ", false)
	clock := testenv.NewFakeClock(t0)
	h := start(f, testenv.Options{Clock: clock}, `{"max_active_faults": 100, "faults": [{
	  "delay": {"header_delay": {"max_delay": "5s"}, "percentage": {"numerator": 100}},
	  "abort": {"header_abort": {}, "percentage": {"numerator": 100}}}]}`)
	f.Fuzz(func(t *testing.T, delay, delayPct, abort, grpc, abortPct string, isGRPC bool) {
		hdrs := [][2]string{}
		for _, kv := range [][2]string{{"x-envoy-fault-delay-request", delay}, {"x-envoy-fault-delay-request-percentage", delayPct},
			{"x-envoy-fault-abort-request", abort}, {"x-envoy-fault-abort-grpc-request", grpc},
			{"x-envoy-fault-abort-request-percentage", abortPct}} {
			if kv[1] != "" && !strings.ContainsAny(kv[1], "\r\n\x00") {
				hdrs = append(hdrs, kv)
			}
		}
		if isGRPC {
			hdrs = append(hdrs, [2]string{"content-type", "application/grpc"})
		}
		s := h.Start(testenv.Request{Method: "POST", Path: "/", Headers: hdrs})
		clock.Advance(5 * time.Second)
		require.True(t, s.Done(), "delayed beyond max_delay")
		resp := wait(t, s)
		require.False(t, resp.Reset, "stream reset (trap?)")
		if resp.Upstream == nil {
			require.True(t, resp.LocalReply)
			assert.Equal(t, engine.Details, resp.Details)
			assert.True(t, resp.Status >= 200 && resp.Status <= 599, "status %d", resp.Status)
			if gs, ok := resp.Headers.Get("grpc-status"); ok {
				n, err := strconv.Atoi(gs)
				require.NoError(t, err)
				assert.True(t, n >= 0 && n <= 16, "grpc-status %d", n)
			}
		}
		for _, l := range h.Logs() {
			require.Less(t, l.Level, abi.LogError, "logged: %s", l.Message)
		}
	})
}

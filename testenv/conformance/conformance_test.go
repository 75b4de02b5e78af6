// Package conformance drives the compiled conformance guest (./guest, built on
// meshplug's guest binding) through every host call of the proxy-wasm ABI v0.2.1 that
// testenv offers, and checks each answer — including error statuses — against Envoy's
// semantics. It is the test of both sides at once: the binding in filters/proxywasm
// and the host in testenv.
package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/testenv"
)

func guest(t testing.TB) []byte {
	t.Helper()
	return testenv.MustBuildGuest(t, "./guest")
}

type setup struct {
	opts     testenv.Options
	config   string
	vmConfig string
	vmID     string
}

func start(t testing.TB, s setup) *testenv.Host {
	t.Helper()
	if s.config == "" {
		s.config = `{}`
	}
	return testenv.NewForTest(t, s.opts, testenv.Plugin{
		Name: "conformance", RootID: "conformance_root", VMID: s.vmID,
		Wasm: guest(t), Config: []byte(s.config), VMConfig: []byte(s.vmConfig),
	})
}

func do(t testing.TB, h *testenv.Host, req testenv.Request) *testenv.Response {
	t.Helper()
	return h.MustDo(t, req)
}

// report sends an op request and decodes the guest's JSON report from its local reply.
func report(t testing.TB, h *testenv.Host, op string, headers ...[2]string) map[string]any {
	t.Helper()
	resp := do(t, h, testenv.Request{Path: "/op/" + op, Headers: append([][2]string{{"x-op", op}}, headers...)})
	if resp.Status != 200 || !resp.LocalReply {
		t.Fatalf("op %s: want a 200 local reply with the report, got status %d local=%v body %q",
			op, resp.Status, resp.LocalReply, resp.Body)
	}
	var r map[string]any
	if err := json.Unmarshal(resp.Body, &r); err != nil {
		t.Fatalf("op %s: report is not JSON: %v: %q", op, err, resp.Body)
	}
	return r
}

// expect checks report fields against wanted values (compared as fmt %v strings).
func expect(t testing.TB, r map[string]any, want map[string]any) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		got, ok := r[k]
		if !ok {
			t.Errorf("%s: missing from report", k)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want[k]) {
			t.Errorf("%s = %v, want %v", k, got, want[k])
		}
	}
}

func TestHeaderMaps(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Method: "POST", Path: "/things?q=1", Authority: "api.example.com",
		Headers: [][2]string{{"x-op", "headers"}, {"x-one", "1"}, {"x-two", "2"}, {"X-Mixed-Case", "mc"}}})
	if resp.LocalReply || resp.Upstream == nil {
		t.Fatalf("headers op must reach the upstream; got status %d local=%v", resp.Status, resp.LocalReply)
	}
	up := resp.Upstream
	raw, _ := up.Headers.Get("x-report")
	var r map[string]any
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatalf("x-report header: %v: %q", err, raw)
	}
	expect(t, r, map[string]any{
		"get": "1", "get_status": "ok",
		"get_missing_status": "not found",
		"path":               "/things?q=1", "method": "POST", "authority": "api.example.com",
		"lowercased": "mc", "all_status": "ok", "size_status": "ok",
		"add": "ok", "replace": "ok", "replace_new": "ok", "remove": "ok", "remove_missing": "ok",
		"end_of_stream": true,
	})
	if r["size"] != r["size_expected"] {
		t.Errorf("header map size %v, want the size of its encoding %v", r["size"], r["size_expected"])
	}
	keys := fmt.Sprint(r["all_keys"])
	if !strings.HasPrefix(keys, "[:authority :path :method :scheme") && !strings.HasPrefix(keys, "[:method :path :authority :scheme") &&
		!strings.HasPrefix(keys, "[:") {
		t.Errorf("pseudo-headers must come first, got %s", keys)
	}
	if !strings.Contains(keys, "x-mixed-case") {
		t.Errorf("header names must be lowercased, got %s", keys)
	}
	if s := r["response_map_during_request"]; s == "ok" {
		t.Errorf("response headers must not be readable during request headers, got %v", s)
	}
	if s := r["http_call_map_outside_callback"]; s == "ok" {
		t.Errorf("http call headers must not be readable outside the callback, got %v", s)
	}
	if got := up.Headers.Values("x-added"); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("upstream x-added = %v, want [a1 a2]", got)
	}
	if v, _ := up.Headers.Get("x-one"); v != "replaced" {
		t.Errorf("upstream x-one = %q, want replaced", v)
	}
	if v, _ := up.Headers.Get("x-new"); v != "fresh" {
		t.Errorf("upstream x-new = %q, want fresh", v)
	}
	if _, ok := up.Headers.Get("x-two"); ok {
		t.Errorf("x-two was removed but reached the upstream")
	}
	if up.Method != "POST" || up.Path != "/things?q=1" || up.Authority != "api.example.com" {
		t.Errorf("upstream request line %s %s %s", up.Method, up.Authority, up.Path)
	}
	if v, _ := resp.Headers.Get("x-response-seen"); v != "headers/200" {
		t.Errorf("response headers callback: x-response-seen = %q, want headers/200", v)
	}
}

func TestSetHeaderMapPairs(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Path: "/original", Headers: [][2]string{{"x-op", "headers"}, {"x-set-all", "1"}, {"x-one", "1"}}})
	if resp.Upstream == nil {
		t.Fatal("request did not reach the upstream")
	}
	if resp.Upstream.Path != "/rewritten" {
		t.Errorf("path after set_header_map_pairs = %q, want /rewritten", resp.Upstream.Path)
	}
	if v, _ := resp.Upstream.Headers.Get("x-only"); v != "this" {
		t.Errorf("x-only = %q", v)
	}
	if _, ok := resp.Upstream.Headers.Get("x-one"); ok {
		t.Errorf("x-one survived set_header_map_pairs")
	}
}

// TestBodiesAndTrailers runs with allow_on_headers_stop_iteration on: the "body" op
// pauses its headers until it has seen the body (impossible in Envoy's default mode,
// where a headers Pause holds the body back until the plugin continues).
func TestBodiesAndTrailers(t *testing.T) {
	var got []byte
	h := start(t, setup{opts: testenv.Options{AllowOnHeadersStopIteration: true, Upstream: func(r *testenv.UpstreamRequest) *testenv.UpstreamResponse {
		got = r.Body
		return &testenv.UpstreamResponse{Status: 201, Body: []byte("response body")}
	}}})
	resp := do(t, h, testenv.Request{Method: "POST", Path: "/b", Body: []byte("hello world"),
		Headers: [][2]string{{"x-op", "body"}}})
	if string(got) != "REPLACED:hello world:APPENDED" {
		t.Errorf("upstream body = %q", got)
	}
	up := resp.Upstream
	if v, _ := up.Headers.Get("x-body-seen"); v != "hello world" {
		t.Errorf("body seen by guest = %q", v)
	}
	if v, _ := up.Headers.Get("x-body-part"); v != "llo" {
		t.Errorf("get_buffer_bytes(2,3) = %q, want llo", v)
	}
	if v, _ := up.Headers.Get("x-body-size"); v != "11/11" {
		t.Errorf("body size/status = %q, want 11/11", v)
	}
	if resp.Status != 201 || string(resp.Body) != "response body" {
		t.Errorf("client got %d %q", resp.Status, resp.Body)
	}

	// Response body rewrite, and the request map after the request path is done.
	resp = do(t, h, testenv.Request{Path: "/r", Headers: [][2]string{{"x-op", "response"}}})
	if string(resp.Body) != "RESPONSE BODY" {
		t.Errorf("response body after rewrite = %q", resp.Body)
	}
	// Envoy drops its pointer to the request headers once a filter lets them go on
	// (Context::decodeHeaders on Continue), so a later phase cannot read them.
	if v, _ := resp.Headers.Get("x-request-map-in-response"); v != "bad argument" {
		t.Errorf("request headers during response headers after Continue: %q, want bad argument (as in Envoy)", v)
	}

	// Trailers.
	resp = do(t, h, testenv.Request{Method: "POST", Path: "/t", Body: []byte("x"),
		Headers: [][2]string{{"x-op", "trailers"}}, Trailers: [][2]string{{"x-trailer", "tv"}}})
	if resp.Upstream == nil {
		t.Fatal("trailers request did not reach upstream")
	}
	if v, _ := resp.Upstream.Trailers.Get("x-trailer-seen"); v != "tv/ok/1" {
		t.Errorf("trailer seen = %q, want tv/ok/1", v)
	}
}

func TestLocalReply(t *testing.T) {
	reached := false
	h := start(t, setup{opts: testenv.Options{Upstream: func(*testenv.UpstreamRequest) *testenv.UpstreamResponse {
		reached = true
		return &testenv.UpstreamResponse{Status: 200}
	}}})
	resp := do(t, h, testenv.Request{Path: "/teapot", Headers: [][2]string{{"x-op", "local-reply"}}})
	if reached || resp.Upstream != nil {
		t.Error("a local reply must stop the request before the upstream")
	}
	if resp.Status != 418 || !resp.LocalReply || string(resp.Body) != "short and stout" || resp.Details != "conformance_teapot" {
		t.Errorf("local reply: status %d local %v body %q details %q", resp.Status, resp.LocalReply, resp.Body, resp.Details)
	}
	if v, _ := resp.Headers.Get("x-local"); v != "yes" {
		t.Errorf("x-local = %q", v)
	}

	// gRPC request: Envoy answers with a trailers-only gRPC response.
	resp = do(t, h, testenv.Request{Method: "POST", Path: "/pkg.Svc/Method", Headers: [][2]string{
		{"x-op", "local-reply"}, {"x-grpc-status", "16"}, {"content-type", "application/grpc"}}})
	if resp.GrpcStatus == nil || *resp.GrpcStatus != 16 {
		t.Errorf("grpc status passed = %v, want 16", resp.GrpcStatus)
	}
	all := append(append(testenv.Headers{}, resp.Headers...), resp.Trailers...)
	if v, _ := all.Get("grpc-status"); v != "16" {
		t.Errorf("grpc-status header = %q, want 16 (headers %v trailers %v)", v, resp.Headers, resp.Trailers)
	}
	if resp.Status != 200 {
		t.Errorf("gRPC local replies have HTTP status 200, got %d", resp.Status)
	}
}

func TestProperties(t *testing.T) {
	h := start(t, setup{vmID: "vm-props", opts: testenv.Options{NodeMetadata: map[string]string{"REGION": "eu-west-1"}}})
	r := report(t, h, "properties", [2]string{"x-one", "uno"}, [2]string{"user-agent", "conformance/1"},
		[2]string{"x-multi", "a"}, [2]string{"x-multi", "b"})
	expect(t, r, map[string]any{
		"request.path": "/op/properties", "request.url_path": "/op/properties", "request.method": "GET",
		"request.host": "example.com", "request.scheme": "http", "request.headers.x-one": "uno",
		"request.useragent": "conformance/1",
		"plugin_name":       "conformance", "plugin_root_id": "conformance_root", "plugin_vm_id": "vm-props",
		"xds.node.metadata.REGION": "eu-west-1", "xds.node.id": testenv.NodeID, "node.id#status": "not found",
		"request.headers.x-multi": "a,b", "upstream.address#status": "not found",
		"source.address": "127.0.0.1:40000", "source.port": "40000",
		"no.such.property#status": "not found",
		"set":                     "ok", "get_after_set": "stored", "get_after_set#status": "ok",
	})
	if id, _ := r["request.id"].(string); id == "" {
		t.Error("request.id must be set (x-request-id)")
	}
	for _, k := range []string{"source.port#status", "connection.id#status", "request.time#status"} {
		if r[k] != "ok" {
			t.Errorf("%s = %v", k, r[k])
		}
	}
}

func TestSharedDataCAS(t *testing.T) {
	h := start(t, setup{vmID: "vm-shared", opts: testenv.Options{Workers: 2}})
	r := report(t, h, "shared-data", [2]string{"x-key", "k1"})
	expect(t, r, map[string]any{
		"get_missing": "not found", "set_unconditional": "ok", "get1": "v1", "get1_status": "ok",
		"cas1_nonzero": true, "set_with_cas": "ok", "get2": "v2", "cas_changed": true,
		"set_stale_cas": "cas mismatch", "after_stale": "v2", "set_empty": "ok", "get_empty_status": "ok",
		"append": "pre:v2", "append_status": "ok", "append_cas_same": true, "append_missing": "pre:", "append_missing_status": "not found",
	})
	// Visible to the test and to the other worker's VM, in the same vm_id only.
	if v, _, ok := h.SharedData("vm-shared", "k1"); !ok || string(v) != "v2" {
		t.Errorf("host view of k1 = %q %v", v, ok)
	}
	if _, _, ok := h.SharedData("other-vm", "k1"); ok {
		t.Error("shared data leaked across vm_ids")
	}
	resp := do(t, h, testenv.Request{Worker: 1, Path: "/op", Headers: [][2]string{{"x-op", "shared-data"}, {"x-key", "k1"}}})
	var r2 map[string]any
	json.Unmarshal(resp.Body, &r2)
	if r2["get_missing"] != "ok" {
		t.Errorf("worker 1 must see worker 0's key: get = %v", r2["get_missing"])
	}
	// Host-side CAS matches the guest-side one.
	_, cas, _ := h.SharedData("vm-shared", "k1")
	if s := h.SetSharedData("vm-shared", "k1", []byte("x"), cas+1000); s != abi.StatusCasMismatch {
		t.Errorf("stale host CAS: %v", s)
	}
	if s := h.SetSharedData("vm-shared", "k1", []byte("x"), cas); s != abi.StatusOK {
		t.Errorf("fresh host CAS: %v", s)
	}
}

func TestSharedQueues(t *testing.T) {
	h := start(t, setup{vmID: "vm-q", config: `{"queue":"jobs"}`, opts: testenv.Options{Workers: 2}})
	for i, item := range []string{"a", "b"} {
		resp := do(t, h, testenv.Request{Worker: i % 2, Path: "/q", Headers: [][2]string{
			{"x-op", "queue"}, {"x-queue", "jobs"}, {"x-vm-id", "vm-q"}, {"x-item", item}}})
		var r map[string]any
		json.Unmarshal(resp.Body, &r)
		expect(t, r, map[string]any{"resolve": "ok", "enqueue": "ok", "resolve_missing": "not found",
			"enqueue_unknown": "not found", "dequeue_unknown": "not found", "register": "ok", "dequeue_empty": "empty"})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, _, _ := h.SharedData("vm-q", "queue_items")
		if string(v) == "a,b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue items delivered through proxy_on_queue_ready = %q, want a,b", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Another vm_id cannot resolve it.
	r := report(t, h, "queue", [2]string{"x-queue", "jobs"}, [2]string{"x-vm-id", "elsewhere"})
	if r["resolve"] != "not found" {
		t.Errorf("resolve from another vm_id = %v", r["resolve"])
	}
	// An empty vm_id is the caller's (cpp-host's resolve_shared_queue).
	r = report(t, h, "queue", [2]string{"x-queue", "jobs"}, [2]string{"x-vm-id", ""}, [2]string{"x-item", "c"})
	if r["resolve"] != "ok" {
		t.Errorf("resolve with an empty vm_id = %v", r["resolve"])
	}
}

func TestMetrics(t *testing.T) {
	h := start(t, setup{opts: testenv.Options{Workers: 2}})
	r := report(t, h, "metrics")
	expect(t, r, map[string]any{"define_counter": "ok", "inc": "ok", "inc_second_id": "ok", "counter_value": 6,
		"define_gauge": "ok", "gauge_set": "ok", "gauge_add": "ok", "gauge_value": 7,
		"define_histogram": "ok", "record": "ok", "record2": "ok", "get_unknown": "not found"})
	do(t, h, testenv.Request{Worker: 1, Path: "/m", Headers: [][2]string{{"x-op", "metrics"}}})
	if v, ok := h.Metric("conformance.counter"); !ok || v != 12 {
		t.Errorf("counter across two workers = %d %v, want 12 (one stat per name)", v, ok)
	}
	if v, _ := h.Metric("conformance.requests"); v != 2 {
		t.Errorf("conformance.requests = %d, want 2", v)
	}
	if got := h.Histogram("conformance.histogram"); !slices.Equal(got, []uint64{42, 7, 42, 7}) {
		t.Errorf("histogram values = %v", got)
	}
}

func TestLogs(t *testing.T) {
	h := start(t, setup{opts: testenv.Options{LogLevel: abi.LogWarn}})
	r := report(t, h, "log")
	expect(t, r, map[string]any{"level": "warn", "level_status": "ok"})
	var kept []string
	stdout := false
	for _, l := range h.Logs() {
		if strings.HasPrefix(l.Message, "conformance log at") {
			kept = append(kept, l.Level.String())
		}
		if strings.Contains(l.Message, "conformance stdout line") {
			stdout = true
		}
	}
	if !slices.Equal(kept, []string{"warn", "error", "critical"}) {
		t.Errorf("levels kept at warn = %v", kept)
	}
	_ = stdout // stdout lines are logged at info, below warn here
}

// TestLogf checks the binding's formatted log functions: each logs at its own level,
// and the host's level filters them.
func TestLogf(t *testing.T) {
	for _, tc := range []struct {
		opts testenv.Options
		want []string
	}{
		{testenv.Options{LogLevelTrace: true}, []string{"trace", "debug", "info", "warn", "error", "critical"}},
		{testenv.Options{LogLevel: abi.LogWarn}, []string{"warn", "error", "critical"}},
	} {
		h := start(t, setup{opts: tc.opts})
		report(t, h, "log")
		var got []string
		for _, l := range h.Logs() {
			if level, ok := strings.CutPrefix(l.Message, "conformance logf at "); ok {
				assert.Equal(t, l.Level.String(), level, "logged at its own level")
				got = append(got, level)
			}
		}
		assert.Equal(t, tc.want, got)
	}
}

func TestStdoutBecomesLog(t *testing.T) {
	h := start(t, setup{})
	report(t, h, "log")
	for _, l := range h.Logs() {
		if strings.Contains(l.Message, "conformance stdout line") {
			return
		}
	}
	t.Errorf("fd_write to stdout did not become a log line; logs: %v", h.Logs())
}

func TestConfigurationBuffers(t *testing.T) {
	h := start(t, setup{config: `{"tick_ms":0}`, vmConfig: "vm-settings"})
	r := report(t, h, "buffers")
	expect(t, r, map[string]any{"plugin": `{"tick_ms":0}`, "plugin_part": `"ti/ok`, "vm": "vm-settings",
		"plugin_in_stream": "0/ok", "vm_in_stream": "11/ok"}) // Envoy keeps the VM configuration, not the plugin one
	r = report(t, h, "config")
	if r["root_id"] == r["context_id"] {
		t.Errorf("root and stream context ids must differ: %v", r)
	}
}

func TestBadConfigurationFailsStart(t *testing.T) {
	for name, cfg := range map[string]string{
		"refused":   `{"fail_configure":true}`,
		"panicked":  `{"panic_on_configure":true}`,
		"malformed": `{"tick_ms":`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := testenv.New(context.Background(), testenv.Options{}, testenv.Plugin{Name: "conformance", Wasm: guest(t), Config: []byte(cfg)})
			if err == nil {
				t.Fatal("a plugin whose proxy_on_configure fails must not start")
			}
			if !strings.Contains(err.Error(), "conformance") {
				t.Errorf("error must name the plugin: %v", err)
			}
		})
	}
}

func TestTicksAndFakeClock(t *testing.T) {
	start0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := testenv.NewFakeClock(start0)
	h := start(t, setup{config: `{"tick_ms":100}`, opts: testenv.Options{Clock: clock}})
	if v, _ := h.Metric("conformance.ticks"); v != 0 {
		t.Fatalf("ticks before time moved = %d", v)
	}
	clock.Advance(350 * time.Millisecond)
	if v, _ := h.Metric("conformance.ticks"); v != 3 {
		t.Errorf("ticks after 350ms at 100ms = %d, want 3", v)
	}
	r := report(t, h, "time")
	want := fmt.Sprint(start0.Add(350 * time.Millisecond).UnixNano())
	if r["now_ns"] != want {
		t.Errorf("proxy_get_current_time_nanoseconds = %v, want the fake clock's %s", r["now_ns"], want)
	}
	if r["last_tick_ns"] != fmt.Sprint(start0.Add(300*time.Millisecond).UnixNano()) {
		t.Errorf("last tick ran at %v", r["last_tick_ns"])
	}
}

func TestEffectiveContext(t *testing.T) {
	h := start(t, setup{})
	r := report(t, h, "effective-context")
	expect(t, r, map[string]any{"unknown": "bad argument", "self": "ok"})
}

func TestPanicsNeverTrap(t *testing.T) {
	h := start(t, setup{})
	// Fail open (the default): the request continues to the upstream.
	for i := 0; i < 3; i++ {
		resp := do(t, h, testenv.Request{Path: "/p", Headers: [][2]string{{"x-op", "panic"}}})
		if resp.Upstream == nil || resp.Status != 200 {
			t.Fatalf("fail-open panic #%d: status %d upstream %v", i, resp.Status, resp.Upstream != nil)
		}
	}
	resp := do(t, h, testenv.Request{Path: "/p", Headers: [][2]string{{"x-op", "panic-response"}}})
	if resp.Status != 200 || resp.Reset {
		t.Errorf("panic in response headers: status %d reset %v", resp.Status, resp.Reset)
	}
	found := false
	for _, l := range h.Logs() {
		if l.Level == abi.LogCritical && strings.Contains(l.Message, "panic in proxy_on_request_headers: request headers panicked on purpose") {
			found = true
		}
	}
	if !found {
		t.Error("the panic must be logged at critical level with its message")
	}
	// The VM still works, including its GC, after the recovered panics.
	for i := 0; i < 200; i++ {
		report(t, h, "metrics")
	}

	// Fail closed: a 500 local reply.
	hc := start(t, setup{config: `{"fail_closed":true}`})
	resp = do(t, hc, testenv.Request{Path: "/p", Headers: [][2]string{{"x-op", "panic"}}})
	if resp.Status != 500 || !resp.LocalReply || resp.Upstream != nil {
		t.Errorf("fail-closed panic: status %d local %v upstream %v", resp.Status, resp.LocalReply, resp.Upstream != nil)
	}
}

func TestStreamReset(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Path: "/reset", Headers: [][2]string{{"x-op", "reset"}}})
	if !resp.Reset || resp.Upstream != nil {
		t.Errorf("proxy_close_stream: reset %v upstream %v", resp.Reset, resp.Upstream != nil)
	}
	v, _, _ := h.SharedData("", "done_ops")
	if !strings.Contains(string(v), "reset;") {
		t.Errorf("a reset stream must still get proxy_on_done: done_ops = %q", v)
	}
}

func TestHttpCallout(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.Header().Set("x-echo", r.Method+" "+r.URL.Path+" "+r.Header.Get("x-from-guest")+" "+string(b))
		w.WriteHeader(202)
		io.WriteString(w, "pong")
	}))
	defer backend.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	h := start(t, setup{opts: testenv.Options{Clusters: map[string]string{
		"backend": strings.TrimPrefix(backend.URL, "http://"), "dead": deadAddr}}})

	r := report(t, h, "http-call", [2]string{"x-cluster", "backend"}, [2]string{"x-call-path", "/check"})
	expect(t, r, map[string]any{"dispatch": "ok", "status": "202", "status_status": "ok",
		"echo": "POST /check 1 ping", "body": "pong", "body_size": 4})

	// Resume the paused request from the callback.
	resp := do(t, h, testenv.Request{Path: "/through", Headers: [][2]string{{"x-op", "http-call"},
		{"x-cluster", "backend"}, {"x-call-path", "/check"}, {"x-resume", "1"}}})
	if resp.Upstream == nil {
		t.Fatal("request not resumed after the callout")
	}
	if v, _ := resp.Upstream.Headers.Get("x-call-status"); v != "202" {
		t.Errorf("x-call-status = %q", v)
	}

	// Unknown cluster, missing :method: BadArgument at dispatch.
	r = report(t, h, "http-call", [2]string{"x-cluster", "nope"}, [2]string{"x-call-path", "/"})
	expect(t, r, map[string]any{"dispatch": "bad argument"})
	r = report(t, h, "http-call", [2]string{"x-cluster", "backend"}, [2]string{"x-call-path", "/"}, [2]string{"x-no-method", "1"})
	expect(t, r, map[string]any{"dispatch": "bad argument"})

	// Connection refused and timeout: like Envoy's async client, the callback gets the
	// router's local reply (503 / 504), not a failure.
	r = report(t, h, "http-call", [2]string{"x-cluster", "dead"}, [2]string{"x-call-path", "/"})
	expect(t, r, map[string]any{"dispatch": "ok", "status": "503"})
	if b, _ := r["body"].(string); !strings.Contains(b, "upstream connect error") {
		t.Errorf("connection failure body = %q", b)
	}
	r = report(t, h, "http-call", [2]string{"x-cluster", "backend"}, [2]string{"x-call-path", "/slow"}, [2]string{"x-timeout-ms", "100"})
	expect(t, r, map[string]any{"dispatch": "ok", "status": "504", "body": "upstream request timeout"})

	// Envoy's async client does not follow redirects: the guest gets the 302.
	r = report(t, h, "http-call", [2]string{"x-cluster", "backend"}, [2]string{"x-call-path", "/redirect"})
	expect(t, r, map[string]any{"dispatch": "ok", "status": "302"})
}

func grpcHealthServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("ready", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("draining", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestGrpcCallouts(t *testing.T) {
	addr := grpcHealthServer(t)
	h := start(t, setup{opts: testenv.Options{Clusters: map[string]string{"health": addr}}})

	// Unary: HealthCheckResponse{status: SERVING(1)} encodes as 08 01.
	r := report(t, h, "grpc-call", [2]string{"x-cluster", "health"}, [2]string{"x-service", "ready"})
	expect(t, r, map[string]any{"dispatch": "ok", "grpc_status": 0, "response_hex": "0801"})
	r = report(t, h, "grpc-call", [2]string{"x-cluster", "health"}, [2]string{"x-service", "draining"})
	expect(t, r, map[string]any{"grpc_status": 0, "response_hex": "0802"})
	// Unknown service: NOT_FOUND (5) with its message, through proxy_on_grpc_close.
	r = report(t, h, "grpc-call", [2]string{"x-cluster", "health"}, [2]string{"x-service", "nobody"})
	expect(t, r, map[string]any{"grpc_status": 5})
	if msg, _ := r["grpc_message"].(string); !strings.Contains(msg, "unknown service") {
		t.Errorf("grpc message = %q", msg)
	}
	// Unimplemented method.
	r = report(t, h, "grpc-call", [2]string{"x-cluster", "health"}, [2]string{"x-method", "Nope"})
	expect(t, r, map[string]any{"grpc_status": 12})
	// Unknown cluster.
	// Unknown cluster: a name that is no GrpcService is ParseFailure (Context::grpcCall).
	r = report(t, h, "grpc-call", [2]string{"x-cluster", "nope"})
	expect(t, r, map[string]any{"dispatch": "parse failure"})

	// A call whose timeout passes: Envoy's async client runs it as its router's
	// timeout, whose 504 "upstream request timeout" a gRPC call gets as UNAVAILABLE (14)
	// with that message (Router::Filter::onUpstreamTimeoutAbort,
	// Grpc::Utility::httpToGrpcStatus), not DEADLINE_EXCEEDED.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		<-ss.Context().Done() // never answers
		return ss.Context().Err()
	}))
	go slow.Serve(lis)
	t.Cleanup(slow.Stop)
	hs := start(t, setup{opts: testenv.Options{Clusters: map[string]string{"slow": lis.Addr().String()}}})
	r = report(t, hs, "grpc-call", [2]string{"x-cluster", "slow"}, [2]string{"x-timeout-ms", "20"})
	expect(t, r, map[string]any{"dispatch": "ok", "grpc_status": 14, "grpc_message": "upstream request timeout"})

	// Server streaming: the first Watch message arrives, then the guest cancels.
	r = report(t, h, "grpc-stream", [2]string{"x-cluster", "health"}, [2]string{"x-service", "ready"})
	expect(t, r, map[string]any{"open": "ok", "send": "ok", "messages": "[0801/ok]", "cancel": "ok"})
	if ev := fmt.Sprint(r["events"]); !strings.HasPrefix(ev, "[initial_metadata message") {
		t.Errorf("stream events = %s, want initial metadata then the message", ev)
	}
}

func TestImportsAreChecked(t *testing.T) {
	// A module that imports a WASI function Envoy does not provide is refused by name.
	// Hand-assembled: (module (import "wasi_snapshot_preview1" "path_open" (func)))
	mod := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
		0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
		0x02, 0x24, 0x01, // import section, 1 import
		0x16, 'w', 'a', 's', 'i', '_', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', '_', 'p', 'r', 'e', 'v', 'i', 'e', 'w', '1',
		0x09, 'p', 'a', 't', 'h', '_', 'o', 'p', 'e', 'n', 0x00, 0x00}
	_, err := testenv.New(context.Background(), testenv.Options{}, testenv.Plugin{Name: "bad", Wasm: mod})
	if err == nil || !strings.Contains(err.Error(), "path_open") {
		t.Fatalf("want an error naming path_open, got %v", err)
	}
}

// TestChainOfPlugins runs two instances of the guest as a filter chain: request
// callbacks in chain order, each seeing the previous one's changes; response callbacks
// in reverse order; a local reply from the first stops the second's request path.
func TestChainOfPlugins(t *testing.T) {
	wasm := guest(t)
	h := testenv.NewForTest(t, testenv.Options{},
		testenv.Plugin{Name: "first", RootID: "first", VMID: "first", Wasm: wasm, Config: []byte(`{}`)},
		testenv.Plugin{Name: "second", RootID: "second", VMID: "second", Wasm: wasm, Config: []byte(`{}`)})

	resp := do(t, h, testenv.Request{Path: "/chain", Headers: [][2]string{{"x-op", "headers"}, {"x-one", "1"}, {"x-two", "2"}}})
	if resp.Upstream == nil {
		t.Fatalf("chain did not reach the upstream: %d", resp.Status)
	}
	if got := resp.Upstream.Headers.Values("x-added"); !slices.Equal(got, []string{"a1", "a2", "a1", "a2"}) {
		t.Errorf("x-added = %v, want both plugins' values in chain order", got)
	}
	var second map[string]any
	raw, _ := resp.Upstream.Headers.Get("x-report")
	json.Unmarshal([]byte(raw), &second)
	if second["get"] != "replaced" {
		t.Errorf("second plugin read x-one = %v, want the first plugin's replacement", second["get"])
	}
	if got := resp.Headers.Values("x-response-seen"); len(got) != 2 {
		t.Errorf("x-response-seen = %v, want one per plugin", got)
	}
	if v, _ := h.Metric("conformance.requests"); v != 2 {
		t.Errorf("request headers callbacks = %d, want 2", v)
	}

	// A local reply from the first plugin: the second's request callbacks never run.
	resp = do(t, h, testenv.Request{Path: "/chain", Headers: [][2]string{{"x-op", "local-reply"}}})
	if resp.Status != 418 || resp.Upstream != nil {
		t.Fatalf("local reply in a chain: %d", resp.Status)
	}
	if v, _ := h.Metric("conformance.requests"); v != 3 {
		t.Errorf("request headers callbacks after the local reply = %d, want 3 (the second plugin skipped)", v)
	}
}

// TestLogPhase checks proxy_on_log (the binding's StreamLogger): request and response
// headers readable, not writable, before proxy_on_done.
func TestLogPhase(t *testing.T) {
	h := start(t, setup{})
	resp := do(t, h, testenv.Request{Path: "/logged", Headers: [][2]string{{"x-op", "log-phase"}}})
	if resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	v, _, _ := h.SharedData("", "log_seen")
	if string(v) != "/logged/ok 200/ok add:bad argument" {
		t.Errorf("log phase saw %q", v)
	}
	done, _, _ := h.SharedData("", "done_ops")
	if !strings.Contains(string(done), "log-phase;") {
		t.Errorf("proxy_on_done not called after the log phase: %q", done)
	}
}

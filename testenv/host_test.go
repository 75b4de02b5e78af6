package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
)

func rawGuest(t testing.TB) []byte {
	t.Helper()
	wasm, err := BuildGuest("testdata/rawguest")
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func newHost(t testing.TB, opts Options, chain ...Plugin) *Host {
	t.Helper()
	h, err := New(context.Background(), opts, chain...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func raw(t testing.TB, name, config string) Plugin {
	return Plugin{Name: name, Wasm: rawGuest(t), Config: []byte(config), VMID: "vm-" + name, RootID: "root-" + name}
}

func do(t testing.TB, h *Host, req Request) *Response {
	t.Helper()
	resp, err := h.Do(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func messages(h *Host, plugin string) []string {
	var out []string
	for _, e := range h.Logs() {
		if e.Plugin == plugin {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestPluginNameFromBuildGuest(t *testing.T) {
	h := newHost(t, Options{}, Plugin{Wasm: rawGuest(t), Config: []byte("props")})
	resp := do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-prop-plugin_name"); got != "rawguest" {
		t.Fatalf("plugin_name = %q, want rawguest", got)
	}
}

func TestLifecycleOrder(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "lifecycle"), raw(t, "b", "lifecycle"))
	resp := do(t, h, Request{Path: "/x", Body: []byte("hi")})
	if resp.Status != 200 || string(resp.Body) != "ok" || resp.LocalReply || resp.Reset {
		t.Fatalf("unexpected response %+v", resp)
	}
	for _, p := range []string{"a", "b"} {
		// b adds x-resp-by before a sees the response headers.
		nresp := map[string]string{"a": "2", "b": "1"}[p]
		want := []string{"create 2 1", "request_headers 2 4 0", "request_body 2 2 1",
			"response_headers 2 " + nresp + " 0", "response_body 2 2 1", "log 2 200", "done 2", "delete 2"}
		if got := messages(h, p); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("plugin %s callbacks:\n got %q\nwant %q", p, got, want)
		}
	}
	// Response callbacks run in reverse chain order; log/done/delete in chain order, all
	// logs first.
	var order []string
	for _, e := range h.Logs() {
		f := strings.Fields(e.Message)[0]
		if f == "response_headers" || f == "log" || f == "done" {
			order = append(order, e.Plugin+":"+f)
		}
	}
	wantOrder := "b:response_headers a:response_headers a:log b:log a:done b:done"
	if strings.Join(order, " ") != wantOrder {
		t.Errorf("order = %q, want %q", strings.Join(order, " "), wantOrder)
	}
}

func TestHeaderCalls(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "echo"))
	resp := do(t, h, Request{Path: "/p", Headers: [][2]string{{"X-Replace", "old"}, {"X-Remove", "1"}, {"x-replace", "old2"}}})
	up := resp.Upstream
	if up == nil {
		t.Fatal("upstream not called")
	}
	checks := map[string]string{
		"x-path-seen":      "/p",
		"x-resp-status":    fmt.Sprint(int(abi.StatusBadArgument)),
		"x-replace":        "new",
		"x-missing-status": fmt.Sprint(int(abi.StatusNotFound)),
	}
	for k, want := range checks {
		if got, _ := up.Headers.Get(k); got != want {
			t.Errorf("upstream header %s = %q, want %q", k, got, want)
		}
	}
	if vs := up.Headers.Values("x-replace"); len(vs) != 1 {
		t.Errorf("x-replace values = %q, want one", vs)
	}
	if _, ok := up.Headers.Get("x-remove"); ok {
		t.Error("x-remove still present")
	}
	if got, _ := resp.Headers.Get("x-resp-by"); got != "a" {
		t.Errorf("response header x-resp-by = %q", got)
	}
}

func TestLocalReply(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "lifecycle"), raw(t, "b", "deny"), raw(t, "c", "lifecycle"))
	resp := do(t, h, Request{})
	if resp.Status != 403 || string(resp.Body) != "denied" || !resp.LocalReply || resp.Upstream != nil {
		t.Fatalf("unexpected response %+v", resp)
	}
	if resp.Details != "denied_by_rawguest" || resp.GrpcStatus != nil {
		t.Errorf("details %q grpc %v", resp.Details, resp.GrpcStatus)
	}
	for k, want := range map[string]string{"x-deny": "yes", "content-type": "text/plain", "content-length": "6", "x-resp-by": "b"} {
		if got, _ := resp.Headers.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	// a saw the reply's headers; c was never reached, but Envoy still creates its context
	// to call proxy_on_log.
	if got := messages(h, "a"); !contains(got, "response_headers 2 5 0") {
		t.Errorf("a callbacks %q", got)
	}
	if got := strings.Join(messages(h, "c"), "|"); got != "create 2 1|log 2 403|done 2|delete 2" {
		t.Errorf("c callbacks %q", got)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestGrpcLocalReply(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "grpcdeny"))
	resp := do(t, h, Request{Method: "POST", Headers: [][2]string{{"Content-Type", "application/grpc"}}})
	if resp.Status != 200 || len(resp.Body) != 0 || resp.GrpcStatus == nil || *resp.GrpcStatus != 16 {
		t.Fatalf("unexpected response %+v", resp)
	}
	if gs, _ := resp.Headers.Get("grpc-status"); gs != "16" {
		t.Errorf("grpc-status %q", gs)
	}
	if gm, _ := resp.Headers.Get("grpc-message"); gm != "bad token" {
		t.Errorf("grpc-message %q", gm)
	}
}

func TestLocalReplyInResponse(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "x"), raw(t, "b", "deny-response"))
	resp := do(t, h, Request{})
	if resp.Status != 502 || string(resp.Body) != "bad upstream" || !resp.LocalReply {
		t.Fatalf("unexpected response %+v", resp)
	}
	// Sent directly: a's response callback does not run for it.
	if _, ok := resp.Headers.Get("x-resp-by"); ok {
		t.Errorf("direct local reply went through filters: %v", resp.Headers)
	}
}

func TestConfigureFailure(t *testing.T) {
	_, err := New(context.Background(), Options{}, raw(t, "auth", "fail-config"))
	if err == nil {
		t.Fatal("want error")
	}
	for _, want := range []string{`plugin "auth"`, "configuration canary", "worker -1", "proxy_on_configure", "rules[2].limit: must be > 0, got -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestTrapFailsVM(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "trap"))
	resp := do(t, h, Request{})
	if resp.Reset || resp.Status != 503 || resp.Details != "wasm_fail_stream" || len(resp.Body) != 0 || resp.Upstream != nil {
		t.Fatalf("want Envoy's failStream 503, got %+v", resp)
	}
	resp = do(t, h, Request{})
	if resp.Status != 503 || !resp.LocalReply || resp.Details != "wasm_fail_stream" {
		t.Fatalf("want 503 from failed vm, got %+v", resp)
	}
	found := false
	for _, e := range h.Logs() {
		if e.Level == abi.LogCritical && strings.Contains(e.Message, "wasm") {
			found = true
		}
	}
	if !found {
		t.Errorf("no critical log for the trap: %v", h.Logs())
	}
}

func TestProperties(t *testing.T) {
	h := newHost(t, Options{NodeMetadata: map[string]string{"REGION": "eu"}}, raw(t, "a", "props"))
	resp := do(t, h, Request{Path: "/a/b?q=1", Headers: [][2]string{{"User-Agent", "ua/1"}}, SourceAddress: "10.0.0.1:1234",
		Properties: map[string][]byte{"custom.thing": []byte("yes")}})
	want := map[string]string{
		"x-prop-request.path": "/a/b?q=1", "x-prop-request.url_path": "/a/b", "x-prop-request.method": "GET",
		"x-prop-request.headers.user-agent": "ua/1", "x-prop-plugin_name": "a", "x-prop-plugin_root_id": "root-a",
		"x-prop-plugin_vm_id": "vm-a", "x-prop-source.address": "10.0.0.1:1234", "x-prop-source.port": "1234",
		"x-prop-node.id": "status:1", "x-prop-xds.node.id": NodeID, "x-prop-xds.node.metadata.REGION": "eu", "x-prop-connection.mtls": "\x00",
		"x-prop-custom.thing": "yes", "x-prop-my.prop": "set-value",
	}
	for k, v := range want {
		if got, _ := resp.Upstream.Headers.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestBadPointer(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "badptr"))
	resp := do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-badptr"); got != fmt.Sprint(int(abi.StatusInvalidMemoryAccess)) {
		t.Fatalf("x-badptr = %q", got)
	}
}

func TestBodies(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "body"))
	resp := do(t, h, Request{Method: "POST", Body: []byte("hello")})
	if string(resp.Upstream.Body) != "HELLO" {
		t.Errorf("upstream body %q", resp.Upstream.Body)
	}
	if string(resp.Body) != "replaced" {
		t.Errorf("response body %q", resp.Body)
	}
}

func TestCloseStream(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "close"))
	resp := do(t, h, Request{})
	if !resp.Reset || resp.Upstream != nil {
		t.Fatalf("want reset, got %+v", resp)
	}
}

func TestPauseAndReset(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "pause lifecycle"))
	s := h.Start(Request{})
	if s.Done() {
		t.Fatal("paused stream is done")
	}
	s.Reset()
	resp, err := s.Wait(context.Background())
	if err != nil || !resp.Reset {
		t.Fatalf("resp %+v err %v", resp, err)
	}
	if got := messages(h, "a"); !contains(got, "done 2") || !contains(got, "delete 2") {
		t.Errorf("callbacks %q", got)
	}
}

func TestHTTPCallout(t *testing.T) {
	var mu sync.Mutex
	var seen *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r
		mu.Unlock()
		if r.URL.Query().Get("deny") != "" {
			w.WriteHeader(403)
			return
		}
		w.Header().Set("X-Svc", "1")
		_, _ = w.Write([]byte("allowed"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	h := newHost(t, Options{Clusters: map[string]string{"svc": addr}}, raw(t, "a", "callout"))
	resp := do(t, h, Request{})
	if resp.Status != 200 || resp.Upstream == nil {
		t.Fatalf("resp %+v", resp)
	}
	for k, want := range map[string]string{"x-callout-status": "200", "x-callout-body": "allowed", "x-callout-get-status": "0:"} {
		if got, _ := resp.Upstream.Headers.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	mu.Lock()
	if seen == nil || seen.Host != "svc.local" || seen.URL.Path != "/check" || seen.Header.Get("x-from") != "rawguest" {
		t.Errorf("callout request %+v", seen)
	}
	mu.Unlock()
}

func TestHTTPCalloutConnectionFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	h := newHost(t, Options{Clusters: map[string]string{"svc": addr}}, raw(t, "a", "callout"))
	resp := do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-callout-status"); got != "503" {
		t.Errorf("x-callout-status = %q, want 503", got)
	}
}

func TestHTTPCalloutUnknownCluster(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "callout"))
	resp := do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-callout-error"); got != fmt.Sprint(int(abi.StatusBadArgument)) {
		t.Errorf("x-callout-error = %q", got)
	}
}

func TestTicksWithFakeClock(t *testing.T) {
	clk := NewFakeClock(time.Unix(1000, 0))
	h := newHost(t, Options{Clock: clk, Workers: 2}, raw(t, "a", "tick"))
	clk.Advance(3500 * time.Millisecond)
	if v, _ := h.Metric("ticks"); v != 6 {
		t.Fatalf("ticks = %d, want 6 (3 per worker)", v)
	}
	var last string
	for _, m := range messages(h, "a") {
		if strings.HasPrefix(m, "tick ") {
			last = m
		}
	}
	if last != fmt.Sprintf("tick %d", time.Unix(1003, 0).UnixNano()) {
		t.Errorf("last tick log %q", last)
	}
}

func TestQueue(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "queue"))
	do(t, h, Request{Path: "/one"})
	do(t, h, Request{Path: "/two"})
	got := messages(h, "a")
	if !contains(got, "dequeued /one") || !contains(got, "dequeued /two") {
		t.Fatalf("logs %q", got)
	}
}

func TestMetricsAcrossWorkers(t *testing.T) {
	h := newHost(t, Options{Workers: 2}, raw(t, "a", "x"))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.Do(context.Background(), Request{Worker: -1}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if v, ok := h.Metric("requests"); !ok || v != 20 {
		t.Fatalf("requests = %d, %v", v, ok)
	}
	if got := h.Histogram("sizes"); len(got) != 20 || got[0] != 4 {
		t.Fatalf("sizes = %v", got)
	}
}

func TestSharedDataFromGuest(t *testing.T) {
	h := newHost(t, Options{Workers: 2}, raw(t, "a", "shared"))
	for i := 0; i < 4; i++ {
		do(t, h, Request{Worker: i % 2})
	}
	v, cas, ok := h.SharedData("vm-a", "hits")
	if !ok || string(v) != "4" || cas == 0 {
		t.Fatalf("hits = %q cas %d ok %v", v, cas, ok)
	}
}

// TestWASIResults: a module importing the WASI functions cpp-host exports beyond the Go
// runtime's (fd_read, fd_seek) loads, and each answers with cpp-host's errno: fd_read
// ENOSYS, fd_seek and fd_close 0, clocks 0 and 1 ok and the CPU-time clocks ENOTSUP,
// random_get EINVAL above 64 KiB, poll_oneoff 0 at once with no events (a 1 s clock
// subscription does not sleep: the test would still pass if it did, but the event
// count must be 0).
func TestWASIResults(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "wasi"))
	resp := do(t, h, Request{})
	got, _ := resp.Upstream.Headers.Get("x-wasi")
	if want := "52,0,0,0,0,58,58,28,0,0,0"; got != want {
		t.Errorf("WASI errnos = %s, want %s", got, want)
	}
}

// TestMallocFirst: a module exporting both malloc and proxy_on_memory_allocate gets its
// host allocations through malloc, as cpp-host's WasmBase::getFunctions looks it up
// first.
func TestMallocFirst(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "malloc"))
	resp := do(t, h, Request{})
	if got, _ := resp.Upstream.Headers.Get("x-malloc-calls"); got != "1" {
		t.Errorf("allocations through malloc = %q, want 1", got)
	}
}

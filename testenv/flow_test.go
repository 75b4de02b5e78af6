package testenv

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// callbackOrder lists "plugin callback" for the lifecycle log lines of kind prefix.
func callbackOrder(h *Host, prefix string) []string {
	var out []string
	for _, e := range h.Logs() {
		if strings.HasPrefix(e.Message, prefix) {
			out = append(out, e.Plugin+" "+strings.Fields(e.Message)[0])
		}
	}
	return out
}

// With AllowOnHeadersStopIteration (Envoy's allow_on_headers_stop_iteration: true), a
// plugin that stops its request headers still gets the body (Envoy's decodeData on a
// filter whose decodeHeaders returned StopIteration), may change the held headers from
// there, and releases headers and body to the next plugin by continuing the body. Only
// the holder keeps access to the request headers later (Envoy clears a filter's
// request_headers_ when it continues them).
func TestHeadersHeldBodyDelivered(t *testing.T) {
	h := newHost(t, Options{AllowOnHeadersStopIteration: true}, raw(t, "a", "pause maps lifecycle"), raw(t, "b", "maps lifecycle"))
	resp := do(t, h, Request{Method: "POST", Body: []byte("abc")})
	if resp.Upstream == nil {
		t.Fatalf("request did not reach upstream: %+v", resp)
	}
	if got, _ := resp.Upstream.Headers.Get("x-in-body"); got != "a:abc" {
		t.Errorf("x-in-body upstream = %q, want a:abc (set by the holder from its body callback)", got)
	}
	if string(resp.Upstream.Body) != "abc" {
		t.Errorf("upstream body %q", resp.Upstream.Body)
	}
	want := []string{"a request_headers", "a request_body", "b request_headers", "b request_body"}
	if got := callbackOrder(h, "request_"); !slices.Equal(got, want) {
		t.Errorf("request callbacks %q, want %q", got, want)
	}
	if got := messages(h, "a"); !contains(got, "body-replace 0") {
		t.Errorf("holder could not change request headers from its body callback: %q", got)
	}
	if got := messages(h, "b"); !contains(got, "body-replace 2") {
		t.Errorf("plugin that continued its headers could still change them: %q", got)
	}
	if got := resp.Headers.Values("x-reqmap"); !slices.Equal(got, []string{"b:2", "a:0"}) {
		t.Errorf("request map status in response headers %q, want [b:2 a:0]", got)
	}
	for _, p := range []string{"a", "b"} {
		if got := messages(h, p); !contains(got, "resp-body-replace 2") {
			t.Errorf("%s: response headers writable from the body after Continue: %q", p, got)
		}
	}
}

// With AllowOnHeadersStopIteration the response direction works the same way: held response headers are still writable
// from the response body callback and reach the client with the body.
func TestResponseHeadersHeldUntilBody(t *testing.T) {
	h := newHost(t, Options{AllowOnHeadersStopIteration: true, Upstream: func(*UpstreamRequest) *UpstreamResponse {
		return &UpstreamResponse{Status: 200, Body: []byte("payload")}
	}}, raw(t, "a", "maps resphold lifecycle"), raw(t, "b", "lifecycle"))
	resp := do(t, h, Request{})
	if got, _ := resp.Headers.Get("x-resp-in-body"); got != "a" {
		t.Errorf("x-resp-in-body = %q, want a; headers %v", got, resp.Headers)
	}
	if string(resp.Body) != "payload" {
		t.Errorf("body %q", resp.Body)
	}
	// b (nearest the upstream) passes the headers on; a holds them and gets the body
	// after b.
	want := []string{"b response_headers", "a response_headers", "b response_body", "a response_body"}
	if got := callbackOrder(h, "response_"); !slices.Equal(got, want) {
		t.Errorf("response callbacks %q, want %q", got, want)
	}
}

func blockingCallout(t *testing.T) (addr string, release func()) {
	gate := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate
		_, _ = w.Write([]byte("allowed"))
	}))
	var once bool
	release = func() {
		if !once {
			once = true
			close(gate)
		}
	}
	t.Cleanup(func() { release(); srv.Close() })
	return strings.TrimPrefix(srv.URL, "http://"), release
}

// With AllowOnHeadersStopIteration, headers paused for a callout plus a body paused
// (StopIterationAndBuffer): the stream waits until proxy_continue_stream, then headers
// and body go on together.
func TestBodyPauseWaitsForContinue(t *testing.T) {
	addr, release := blockingCallout(t)
	h := newHost(t, Options{AllowOnHeadersStopIteration: true, Clusters: map[string]string{"svc": addr}}, raw(t, "a", "callout bodypause lifecycle"))
	s := h.Start(Request{Method: "POST", Body: []byte("payload")})
	if s.Done() {
		t.Fatal("stream done before the callout answered")
	}
	if got := callbackOrder(h, "request_"); !slices.Equal(got, []string{"a request_headers", "a request_body"}) {
		t.Errorf("callbacks while paused %q: the body must reach the plugin that stopped its headers", got)
	}
	release()
	resp, err := s.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Upstream == nil || string(resp.Upstream.Body) != "payload" {
		t.Fatalf("upstream %+v", resp.Upstream)
	}
	if got, _ := resp.Upstream.Headers.Get("x-callout-status"); got != "200" {
		t.Errorf("x-callout-status = %q: headers went on before the callout answered", got)
	}
}

// The trap of allow_on_headers_stop_iteration: Continue from the body callback resumes
// a request whose headers were paused for a callout, without waiting for the callout.
func TestBodyContinueResumesPausedHeaders(t *testing.T) {
	addr, release := blockingCallout(t)
	h := newHost(t, Options{AllowOnHeadersStopIteration: true, Clusters: map[string]string{"svc": addr}}, raw(t, "a", "callout"))
	resp := do(t, h, Request{Method: "POST", Body: []byte("payload")})
	release()
	if resp.Upstream == nil || string(resp.Upstream.Body) != "payload" {
		t.Fatalf("upstream %+v", resp.Upstream)
	}
	if _, ok := resp.Upstream.Headers.Get("x-callout-status"); ok {
		t.Error("request waited for the callout although the body callback continued")
	}
}

// Envoy's default (allow_on_headers_stop_iteration off): a Pause from the request
// headers is StopAllIterationAndWatermark, so the plugin gets no body callback while
// its callout is pending; after proxy_continue_stream the headers go on, then the
// buffered body comes to the plugin and on.
func TestHeadersPauseStopsAll(t *testing.T) {
	addr, release := blockingCallout(t)
	h := newHost(t, Options{Clusters: map[string]string{"svc": addr}}, raw(t, "a", "callout lifecycle"), raw(t, "b", "lifecycle"))
	s := h.Start(Request{Method: "POST", Body: []byte("payload"), Trailers: [][2]string{{"x-t", "1"}}})
	if s.Done() {
		t.Fatal("stream done before the callout answered")
	}
	if got := callbackOrder(h, "request_"); !slices.Equal(got, []string{"a request_headers"}) {
		t.Errorf("callbacks while paused %q: the body must wait before the plugin", got)
	}
	release()
	resp, err := s.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Upstream == nil || string(resp.Upstream.Body) != "payload" {
		t.Fatalf("upstream %+v", resp.Upstream)
	}
	if got, _ := resp.Upstream.Headers.Get("x-callout-status"); got != "200" {
		t.Errorf("x-callout-status = %q: the request must wait for the callout", got)
	}
	want := []string{"a request_headers", "b request_headers", "a request_body", "b request_body", "a request_trailers", "b request_trailers"}
	if got := callbackOrder(h, "request_"); !slices.Equal(got, want) {
		t.Errorf("request callbacks %q, want %q", got, want)
	}
}

package testenv

import (
	"context"
	"testing"
)

var emptyUpstream = &UpstreamResponse{Status: 200}

func benchHost(b *testing.B, config string) *Host {
	return newHost(b, Options{Upstream: func(*UpstreamRequest) *UpstreamResponse { return emptyUpstream }},
		Plugin{Name: "bench", Wasm: rawGuest(b), Config: []byte(config)})
}

// BenchmarkNoopLifecycle measures one request through one plugin that does nothing:
// context create, request headers, response headers, log, done, delete.
func BenchmarkNoopLifecycle(b *testing.B) {
	h := benchHost(b, "noop")
	ctx := context.Background()
	req := Request{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Do(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeaders3Add1 is the no-op lifecycle plus reading 3 request headers and adding 1.
func BenchmarkHeaders3Add1(b *testing.B) {
	h := benchHost(b, "headers")
	ctx := context.Background()
	req := Request{Headers: [][2]string{{"user-agent", "bench/1"}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Do(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFloorSixCalls calls the six no-op lifecycle exports of the same guest
// directly through wazero, without any host logic: the floor the host adds to.
func BenchmarkFloorSixCalls(b *testing.B) {
	h := benchHost(b, "noop")
	v := h.workers[0].vms[0]
	v.w.mu.Lock()
	defer v.w.mu.Unlock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := uint64(1000 + i)
		v.call2(v.fns.onContextCreate, id, 1)
		v.call3(v.fns.onReqHeaders, id, 4, 1)
		v.call3(v.fns.onRespHeaders, id, 1, 1)
		v.call1(v.fns.onLog, id)
		v.call1(v.fns.onDone, id)
		v.call1(v.fns.onDelete, id)
	}
}

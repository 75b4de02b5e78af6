package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshplug/meshplug/demo"
)

// BenchmarkLoad is a bounded closed-loop load generator on loopback: 16 clients with
// keep-alive connections send b.N GET requests in all, through the gateway with the
// full chain (API key auth, per-user rate limit, route hint, fault matching) or
// directly to the same upstream. It reports requests/s and the p50/p99 latency.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 20000x ./internal/gateway
func BenchmarkLoad(b *testing.B) {
	for _, target := range []string{"direct", "gateway"} {
		b.Run(target, func(b *testing.B) {
			var url string
			if target == "direct" {
				up := httptest.NewServer(demo.Upstream("v1"))
				defer up.Close()
				url = up.URL + "/hello"
			} else {
				e := start(b)
				url = e.url + "/hello"
			}
			load(b, url)
		})
	}
}

func load(b *testing.B, url string) {
	const clients = 16
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	lat := make([][]time.Duration, clients)
	var next sync.Mutex
	left := b.N
	take := func() bool {
		next.Lock()
		defer next.Unlock()
		left--
		return left >= 0
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			for take() {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("x-api-key", key)
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

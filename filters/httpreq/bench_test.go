package httpreq_test

import (
	"testing"

	"github.com/meshplug/meshplug/filters/httpreq"
)

// BenchmarkCanonicalPath: the fast path (a canonical path, one scan, no allocation)
// and the slow paths (a path to rewrite; an ambiguous path's readings).
func BenchmarkCanonicalPath(b *testing.B) {
	for _, c := range []struct{ name, path string }{
		{"canonical", "/api/v1/orders/12345/items"},
		{"rewrite", "//api/v1/./orders/%31%32345/items"},
		{"ambiguous-readings", "/api/v1/orders%2F12345;x/items"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var buf [4]string
			for b.Loop() {
				if c.name == "ambiguous-readings" {
					httpreq.PathReadings(buf[:0], c.path, httpreq.PathOptions{})
				} else {
					httpreq.CanonicalPath(c.path, httpreq.PathOptions{})
				}
			}
		})
	}
}

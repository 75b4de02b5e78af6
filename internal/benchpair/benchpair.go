// Package benchpair measures several variants of one operation request by request in
// alternation (each iteration runs every variant once, in a rotating order, timing
// each), so that the load bursts of a shared machine hit all of them alike, and
// reports each variant's mean and the ratio of the first two. It is how a filter's
// benchmark compares the current build with a baseline .wasm built from another
// commit in one run (docs/benchmarks.md).
package benchpair

import (
	"os"
	"testing"
	"time"
)

// Variant is one side of the comparison: Do runs the operation once.
type Variant struct {
	Name string
	Do   func(b *testing.B)
}

// Run times the variants in alternation for b.N iterations, reports "<name>-ns" per
// variant and "<first>÷<second>", and returns the mean ns per call of each variant
// (for further ratios).
func Run(b *testing.B, vs ...Variant) []float64 {
	for _, v := range vs {
		v.Do(b) // warm-up
	}
	acc := make([]time.Duration, len(vs))
	i := 0
	b.ResetTimer()
	for b.Loop() {
		for j := range vs {
			k := (i + j) % len(vs)
			start := time.Now()
			vs[k].Do(b)
			acc[k] += time.Since(start)
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	mean := make([]float64, len(vs))
	for k, v := range vs {
		mean[k] = float64(acc[k].Nanoseconds()) / n
		b.ReportMetric(mean[k], v.Name+"-ns")
	}
	if len(vs) >= 2 {
		b.ReportMetric(float64(acc[0])/float64(acc[1]), vs[0].Name+"÷"+vs[1].Name)
	}
	return mean
}

// Baseline reads the baseline .wasm named by the environment variable env, or skips
// the benchmark when it is not set.
func Baseline(b *testing.B, env string) []byte {
	path := os.Getenv(env)
	if path == "" {
		b.Skip(env + " not set (a .wasm built from the commit to compare with)")
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return wasm
}

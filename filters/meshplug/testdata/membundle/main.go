// Command membundle is meshplug.wasm (with its GC setting) plus a filter "memstats"
// that reports the Go runtime's memory accounting: a request carrying x-memstats gets
// it logged at info level as one line of name=bytes pairs (x-memstats: gc runs a full
// GC first, so the heap figures are the live heap). Put it first in the chain so that
// it sees every request. It is how docs/benchmarks.md breaks the bundle's linear memory down
// (TestBundleMemoryBreakdown).
package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"

	auth "github.com/meshplug/meshplug/filters/auth/glue"
	fault "github.com/meshplug/meshplug/filters/fault/glue"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
	ratelimit "github.com/meshplug/meshplug/filters/ratelimit/glue"
	routehint "github.com/meshplug/meshplug/filters/routehint/glue"
)

func init() {
	pw.SetDefaultGCPercent(25) // as meshplug.wasm (filters/meshplug's GCPercent)
	auth.Register(auth.RootID)
	ratelimit.Register(ratelimit.RootID)
	routehint.Register(routehint.RootID)
	fault.Register(fault.RootID)
	pw.Register("memstats", statsVM{}, pw.FailOpen)
}

type statsVM struct{ pw.DefaultVMContext }

func (statsVM) NewPluginContext(uint32) pw.PluginContext { return statsPlugin{} }

type statsPlugin struct{ pw.DefaultPluginContext }

// OnPluginStart applies the configuration "gogc=N" (debug.SetGCPercent; "gogc=off")
// and "limit=BYTES" (debug.SetMemoryLimit), space-separated, for trials; empty leaves
// the runtime's settings as the module's init and the VM's environment made them.
func (statsPlugin) OnPluginStart(int) bool {
	cfg, err := pw.PluginConfiguration.Bytes()
	if err != nil {
		return false
	}
	for _, kv := range strings.Fields(string(cfg)) {
		k, v, _ := strings.Cut(kv, "=")
		if kv == "gogc=off" {
			debug.SetGCPercent(-1)
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			pw.LogCriticalf("memstats: %s: %v", kv, err)
			return false
		}
		switch k {
		case "gogc":
			debug.SetGCPercent(int(n))
		case "limit":
			debug.SetMemoryLimit(n)
		default:
			pw.LogCriticalf("memstats: unknown setting %q", k)
			return false
		}
	}
	return true
}

func (statsPlugin) NewHttpContext(uint32) pw.HttpContext { return statsStream{} }

type statsStream struct{ pw.DefaultHttpContext }

func (statsStream) OnHttpRequestHeaders(int, bool) pw.Action {
	v, ok := pw.RequestHeaders.Get("x-memstats")
	if !ok {
		return pw.Continue
	}
	if v == "gc" {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	var b strings.Builder
	for _, f := range []struct {
		name string
		v    uint64
	}{
		{"Sys", m.Sys}, {"HeapSys", m.HeapSys}, {"HeapInuse", m.HeapInuse}, {"HeapIdle", m.HeapIdle},
		{"HeapReleased", m.HeapReleased}, {"HeapAlloc", m.HeapAlloc}, {"StackSys", m.StackSys},
		{"StackInuse", m.StackInuse}, {"MSpanSys", m.MSpanSys}, {"MCacheSys", m.MCacheSys},
		{"BuckHashSys", m.BuckHashSys}, {"GCSys", m.GCSys}, {"OtherSys", m.OtherSys},
		{"NextGC", m.NextGC}, {"NumGC", uint64(m.NumGC)}, {"Mallocs", m.Mallocs}, {"Frees", m.Frees},
		{"TotalAlloc", m.TotalAlloc},
	} {
		fmt.Fprintf(&b, "%s=%d ", f.name, f.v)
	}
	samples := []metrics.Sample{}
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	for _, s := range samples {
		fmt.Fprintf(&b, "%s=%d ", strings.TrimSuffix(strings.TrimPrefix(s.Name, "/memory/classes/"), ":bytes"), s.Value.Uint64())
	}
	pw.LogInfo(strings.TrimSpace(b.String()))
	return pw.Continue
}

// main never runs: a c-shared wasip1 module starts from _initialize.
func main() {}

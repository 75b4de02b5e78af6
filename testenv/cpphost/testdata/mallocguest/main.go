// Command mallocguest is a test filter for restricted callbacks: like timerguest it
// starts a Go timer on its first request (the runtime's poller is on), but its garbage
// is made inside proxy_on_memory_allocate: it reads a request header larger than the
// binding's 64 KiB result arena, so the host's allocation of the value is a heap
// allocation in the guest's allocator, and garbage collections start there too (a GC
// that starts or finishes polls: WASI poll_oneoff from inside proxy_on_memory_allocate).
package main

import (
	"sync"
	"time"

	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func main() {} // never runs: a c-shared module starts from init

var once sync.Once

func init() {
	pw.SetHttpContext(func(uint32) pw.HttpContext { return stream{} })
}

type stream struct{ pw.DefaultHttpContext }

func (stream) OnHttpRequestHeaders(int, bool) pw.Action {
	once.Do(func() { time.AfterFunc(time.Hour, func() {}) })
	// The value is copied out of the host's block and dropped: garbage.
	pw.RequestHeaders.Get("x-big")
	return pw.Continue
}

// Command timerguest is a test filter for runtime health: on its first request it
// starts a Go timer, which switches the Go runtime's poller on (netpollGenericInit) as
// the runtime's own background goroutines do under sustained load; every request then
// leaves 64 KiB of garbage, so garbage collections keep coming and each one polls
// (netpoll(0) → WASI poll_oneoff). A host whose poll_oneoff fails kills the VM.
package main

import (
	"sync"
	"time"

	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func main() {} // never runs: a c-shared module starts from init

var (
	garbage []byte
	once    sync.Once
)

func init() {
	pw.SetHttpContext(func(uint32) pw.HttpContext { return stream{} })
}

type stream struct{ pw.DefaultHttpContext }

func (stream) OnHttpRequestHeaders(int, bool) pw.Action {
	once.Do(func() { time.AfterFunc(time.Hour, func() {}) })
	garbage = make([]byte, 64<<10)
	garbage[len(garbage)-1] = 1
	return pw.Continue
}

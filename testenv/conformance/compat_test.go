package conformance

import (
	"strings"
	"testing"

	"github.com/meshplug/meshplug/testenv"
)

// TestGoGuestsNeedPollOneoff backs docs/compatibility.md: on a host whose WASI
// poll_oneoff answers ENOSYS (proxy-wasm-cpp-host before #533), an official-Go guest
// dies once the runtime's background goroutines have armed a timer (which turns on
// the poller) and the next garbage collection polls; with a working poll_oneoff it
// runs on.
func TestGoGuestsNeedPollOneoff(t *testing.T) {
	const requests = 3000 // 256 KiB each: hundreds of GC cycles
	run := func(enosys bool) (failedAt int, h *testenv.Host) {
		h = start(t, setup{opts: testenv.Options{PollOneoffENOSYS: enosys}})
		for i := 0; i < requests; i++ {
			resp := do(t, h, testenv.Request{Path: "/alloc", Headers: [][2]string{{"x-op", "alloc"}}})
			if resp.Status != 200 || resp.Reset {
				return i, h
			}
		}
		return -1, h
	}
	if at, _ := run(false); at >= 0 {
		t.Fatalf("with a working poll_oneoff the guest failed at request %d", at)
	}
	at, h := run(true)
	if at < 0 {
		t.Fatalf("with an ENOSYS poll_oneoff the guest survived %d requests of garbage", requests)
	}
	var logged bool
	for _, l := range h.Logs() {
		if strings.Contains(l.Message, "poll_oneoff") {
			logged = true
		}
	}
	if !logged {
		t.Errorf("the VM failed at request %d without the runtime's poll_oneoff message; logs: %v", at, h.Logs())
	}
	t.Logf("with ENOSYS poll_oneoff the guest died at request %d", at)
}

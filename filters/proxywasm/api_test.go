package proxywasm

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNativeAPIAnswersNotInHost checks the native build of the API: each host call is
// there (so filter code compiles without build tags) and says it needs a host.
func TestNativeAPIAnswersNotInHost(t *testing.T) {
	require.NotEqual(t, "wasip1", runtime.GOOS, "this test is about the native stand-ins")
	errs := map[string]func() error{
		"LogLevel":       func() error { _, err := LogLevel(); return err },
		"SetTickPeriod":  func() error { return SetTickPeriod(time.Second) },
		"GetAll":         func() error { _, err := RequestHeaders.GetAll(); return err },
		"Replace":        func() error { return RequestHeaders.Replace("x", "y") },
		"Remove":         func() error { return RequestHeaders.Remove("x") },
		"Buffer.Bytes":   func() error { _, err := PluginConfiguration.Bytes(); return err },
		"Buffer.Append":  func() error { return RequestBody.Append([]byte("x")) },
		"GetProperty":    func() error { _, err := GetProperty("request", "path"); return err },
		"SendLocalReply": func() error { return SendLocalReply(403, "no", Pair{Key: "a", Value: "b"}) },
		"GetSharedData":  func() error { _, _, err := GetSharedData("k"); return err },
		"DefineCounter":  func() error { _, err := DefineCounter("c"); return err },
		"DispatchHttpCall": func() error {
			_, err := DispatchHttpCall("c", nil, nil, nil, time.Second, func(int, int, int) {})
			return err
		},
		"OpenGrpcStream": func() error { _, err := OpenGrpcStream("c", "s", "m", nil, nil); return err },
		"RunAs":          func() error { return RunAs(1, func() {}) },
	}
	for name, call := range errs {
		assert.ErrorIs(t, call(), ErrNotInHost, name)
	}
	panics := map[string]func(){
		"Log":           func() { LogInfo("x") },
		"Logf":          func() { LogTracef("x %d", 1) },
		"Now":           func() { Now() },
		"HeaderMap.Get": func() { RequestHeaders.Get("x") },
	}
	for name, call := range panics {
		assert.ErrorIs(t, panicked(call), ErrNotInHost, name)
	}
}

// panicked returns the error f panicked with, nil if it did not panic.
func panicked(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err, _ = v.(error)
			if err == nil {
				panic(v)
			}
		}
	}()
	f()
	return nil
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":              true,
		"application/grpc+proto":        true,
		"application/grpc;charset=utf8": true,
		"application/grpc-web":          false,
		"application/grpcx":             false,
		"application/json":              false,
		"":                              false,
	} {
		assert.Equal(t, want, isGRPC(ct), ct)
	}
}

func TestTickPeriodMillis(t *testing.T) {
	for d, want := range map[time.Duration]uint32{
		0:                              0,
		-time.Second:                   0,
		time.Nanosecond:                1,
		1500 * time.Microsecond:        1,
		7 * time.Second:                7000,
		MaxTickPeriod:                  1<<32 - 1,
		1 << 32 * time.Millisecond:     1<<32 - 1, // cut to 32 bits this was 0: no tick at all
		(1<<32 + 1) * time.Millisecond: 1<<32 - 1, // ... and this 1 ms
		1<<63 - 1:                      1<<32 - 1,
		(1<<32 - 2) * time.Millisecond: 1<<32 - 2,
	} {
		assert.Equal(t, want, TickPeriodMillis(d), d)
	}
}

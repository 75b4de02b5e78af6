package testenv

import (
	"context"
	"testing"
	"time"
)

// StuckStreamTimeout bounds how long MustDo waits for a stream: a stream that never
// completes (a plugin that paused and never resumed) fails the test instead of hanging
// it. It is a bound on a hang, not a performance assertion.
const StuckStreamTimeout = 30 * time.Second

// NewForTest starts a host for t and closes it when the test ends; a start error fails
// the test.
func NewForTest(t testing.TB, opts Options, chain ...Plugin) *Host {
	t.Helper()
	h, err := New(context.Background(), opts, chain...)
	if err != nil {
		t.Fatalf("starting the host: %v", err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// MustDo runs req to completion; an error or a stuck stream fails the test.
func (h *Host) MustDo(t testing.TB, req Request) *Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StuckStreamTimeout)
	defer cancel()
	resp, err := h.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	return resp
}

// MustBuildGuest is BuildGuest for tests and benchmarks: a build error fails t.
func MustBuildGuest(t testing.TB, pkgDir string) []byte {
	t.Helper()
	wasm, err := BuildGuest(pkgDir)
	if err != nil {
		t.Fatalf("building %s: %v", pkgDir, err)
	}
	return wasm
}

//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/gateway/gatewaytest"
)

// poll runs cond every 100 ms, at most n times (a hang guard, not a measurement).
func poll(n int, cond func() bool) bool {
	for range n {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// The gateway under make (as `make run` starts it) or under a parent that keeps
// SIGTERM to itself (as `go run`) stops on the signals a user or a script sends, and
// frees its port: the next start on the same address works.
func TestRunStopsWithItsParent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshplug")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	wasm := gatewaytest.WasmDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	runLine := fmt.Sprintf("%s run --demo --quiet --wasm-dir %s --listen %s", bin, wasm, addr)
	makefile := filepath.Join(dir, "Makefile")
	require.NoError(t, os.WriteFile(makefile, []byte("run:\n\t"+runLine+"\n"), 0o644))

	for _, tc := range []struct {
		name   string
		parent []string
		signal func(p *os.Process) error
	}{
		{"SIGTERM to make", []string{makeBin, "-f", makefile, "run"}, func(p *os.Process) error { return p.Signal(syscall.SIGTERM) }},
		{"Ctrl-C: SIGINT to make's process group", []string{makeBin, "-f", makefile, "run"}, func(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGINT) }},
		{"make killed", []string{makeBin, "-f", makefile, "run"}, func(p *os.Process) error { return p.Signal(syscall.SIGKILL) }},
		{"SIGTERM to a parent that keeps it (go run)", []string{"/bin/sh", "-c", runLine + "; :"}, func(p *os.Process) error { return p.Signal(syscall.SIGTERM) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.parent[0], tc.parent[1:]...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
			require.True(t, poll(600, func() bool {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					c.Close()
				}
				return err == nil
			}), "the gateway did not start")
			require.NoError(t, tc.signal(cmd.Process))
			_ = cmd.Wait()
			require.True(t, poll(300, func() bool {
				l, err := net.Listen("tcp", addr)
				if err == nil {
					l.Close()
				}
				return err == nil
			}), "the gateway kept %s", addr)
		})
	}
}

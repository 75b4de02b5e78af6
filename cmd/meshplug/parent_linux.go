//go:build linux

package main

import (
	"os"
	"syscall"
)

// exitWithParent asks the kernel for SIGTERM when the process that started this one
// ends (prctl PR_SET_PDEATHSIG): a gateway started by `go run` (which does not pass
// SIGTERM on to the program it built) or by a killed make stops too, cleanly, instead
// of keeping its port.
func exitWithParent() error {
	ppid := os.Getppid()
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); e != 0 {
		return e
	}
	if os.Getppid() != ppid { // the parent ended before the request took effect
		return syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
	return nil
}

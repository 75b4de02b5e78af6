//go:build !linux

package main

// exitWithParent is Linux-only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
func exitWithParent() error { return nil }

//go:build !race

// Package race tells tests whether the race detector is on.
package race

// Enabled reports whether the binary was built with the race detector.
const Enabled = false

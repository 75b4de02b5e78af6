//go:build race

package race

// Enabled reports whether the binary was built with the race detector, which
// allocates on its own: tests skip allocation-count assertions under it.
const Enabled = true

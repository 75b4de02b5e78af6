// Package gatewaytest builds the filters a gateway test loads.
package gatewaytest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/testenv"
)

// WasmDir builds every filter of v1alpha1.Sections (memoized per test process, like
// testenv.BuildGuest) into a new temporary directory as <filter>.wasm and returns it.
func WasmDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	dir := t.TempDir()
	for _, sec := range v1alpha1.Sections {
		wasm := testenv.MustBuildGuest(t, filepath.Join(root, "filters", sec.Filter))
		if err := os.WriteFile(filepath.Join(dir, sec.Filter+".wasm"), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

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

// WasmDir builds the bundle (meshplug.wasm) and every filter of v1alpha1.Sections
// (<filter>.wasm), memoized per test process like testenv.BuildGuest, into a new
// temporary directory and returns it.
func WasmDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	dir := t.TempDir()
	names := []string{"meshplug"}
	for _, sec := range v1alpha1.Sections {
		names = append(names, sec.Filter)
	}
	for _, name := range names {
		wasm := testenv.MustBuildGuest(t, filepath.Join(root, "filters", name))
		if err := os.WriteFile(filepath.Join(dir, name+".wasm"), wasm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

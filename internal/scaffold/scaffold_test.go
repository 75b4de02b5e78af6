package scaffold

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestGeneratedFilterPassesItsTests generates a filter inside this module (under
// testdata, which ./... patterns skip), vets it natively and for wasip1, builds it to
// .wasm and runs its own tests, which drive that .wasm through testenv.
func TestGeneratedFilterPassesItsTests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a generated filter")
	}
	tmp, err := os.MkdirTemp("testdata", "gen-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(tmp, "tenant")
	require.NoError(t, Generate(dir, "tenant"))

	for _, f := range []string{"main.go", "filter.go", "filter_test.go", "config/config.go", "config/config_test.go", "README.md"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	run := func(env []string, args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v:\n%s", args, out)
	}
	wasip1 := []string{"GOOS=wasip1", "GOARCH=wasm"}
	run(nil, "vet", "./...")
	run(wasip1, "vet", "./...")
	run(wasip1, "build", "-buildmode=c-shared", "-o", os.DevNull, ".")
	run(nil, "test", "-count=1", "./...")
}

func TestGenerateRefuses(t *testing.T) {
	assert.ErrorContains(t, Generate(t.TempDir(), "Bad-Name"), "lowercase")
	assert.ErrorContains(t, Generate(filepath.Join(t.TempDir(), "x"), "x"), "not inside a Go module")
	assert.ErrorContains(t, Generate(".", "x"), "not empty")
}

func TestImportPathOf(t *testing.T) {
	abs, err := filepath.Abs("testdata/a/b")
	require.NoError(t, err)
	p, err := importPathOf(abs)
	require.NoError(t, err)
	assert.Equal(t, "github.com/meshplug/meshplug/internal/scaffold/testdata/a/b", p)
}

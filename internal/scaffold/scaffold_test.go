package scaffold

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v:\n%s", args, out)
	}
	// What make test asks of a filter: gofmt (Generate formats), vet and staticcheck
	// natively and for wasip1, the .wasm build, and its tests (which build the .wasm).
	wasip1 := []string{"GOOS=wasip1", "GOARCH=wasm"}
	run(nil, "go", "vet", "./...")
	run(wasip1, "go", "vet", "./...")
	if sc := staticcheck(); sc != "" {
		run(nil, sc, "./...")
		run(wasip1, sc, "./...")
	} else {
		t.Log("staticcheck not installed (make tools): not run on the generated filter")
	}
	run(wasip1, "go", "build", "-buildmode=c-shared", "-o", os.DevNull, ".")
	// The README's test command, run where it says: from the module root.
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("`(go test [^`]+)` from the module root").FindSubmatch(readme)
	require.NotNil(t, m, "README has no go test command")
	assert.Equal(t, "go test -count=1 ./internal/scaffold/"+filepath.ToSlash(dir)+"/...", string(m[1]))
	cmd := exec.Command("sh", "-c", string(m[1]))
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s:\n%s", m[1], out)
	assert.Contains(t, string(out), "ok ")
}

// staticcheck returns the path of the staticcheck command, "" if it is not installed.
func staticcheck() string {
	if p, err := exec.LookPath("staticcheck"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "staticcheck")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

func TestGenerateRefuses(t *testing.T) {
	assert.ErrorContains(t, Generate(t.TempDir(), "Bad-Name"), "lowercase")
	assert.ErrorContains(t, Generate(filepath.Join(t.TempDir(), "x"), "x"), "not inside a Go module")
	assert.ErrorContains(t, Generate(".", "x"), "not empty")
}

func TestImportPathOf(t *testing.T) {
	abs, err := filepath.Abs("testdata/a/b")
	require.NoError(t, err)
	p, rel, err := importPathOf(abs)
	require.NoError(t, err)
	assert.Equal(t, "github.com/meshplug/meshplug/internal/scaffold/testdata/a/b", p)
	assert.Equal(t, "internal/scaffold/testdata/a/b", rel)
}

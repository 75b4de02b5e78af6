package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"unsafe"
)

type buildResult struct {
	once sync.Once
	wasm []byte
	err  error
}

var (
	buildsMu   sync.Mutex
	builds     = map[string]*buildResult{}
	wasmNameMu sync.Mutex
	wasmNames  = map[*byte]string{} // first byte of a BuildGuest result -> package folder name
)

// BuildGuest builds the Go package in pkgDir (relative to the current directory, as in
// tests) with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared and returns the
// module bytes. Results are memoized per absolute folder for the life of the process,
// and Go's build cache makes rebuilds in new processes fast. A plugin whose Name is
// empty and whose Wasm came from BuildGuest is named after the folder.
//
// Caveat: the returned slice is shared between callers; do not modify it.
func BuildGuest(pkgDir string) ([]byte, error) {
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		return nil, err
	}
	buildsMu.Lock()
	b, ok := builds[abs]
	if !ok {
		b = &buildResult{}
		builds[abs] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.wasm, b.err = buildGuest(abs) })
	return b.wasm, b.err
}

// goTool finds the go command: on PATH (go test puts its own GOROOT/bin first), else
// in $GOROOT/bin.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

func buildGuest(abs string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "testenv-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	name := filepath.Base(abs)
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command(goTool(), "build", "-buildmode=c-shared", "-o", out, ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testenv: building %s for wasip1: %v\n%s", abs, err, msg)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	if len(wasm) > 0 {
		wasmNameMu.Lock()
		wasmNames[unsafe.SliceData(wasm)] = name
		wasmNameMu.Unlock()
	}
	return wasm, nil
}

func wasmName(wasm []byte) (string, bool) {
	if len(wasm) == 0 {
		return "", false
	}
	wasmNameMu.Lock()
	defer wasmNameMu.Unlock()
	n, ok := wasmNames[unsafe.SliceData(wasm)]
	return n, ok
}

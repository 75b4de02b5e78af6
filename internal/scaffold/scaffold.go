// Package scaffold writes the folder of a new filter in the project's shape: a main
// package of thin proxy-wasm glue (main.go), a pure decision (filter.go), a config
// package that compiles natively too (config/), tests natively and through the
// compiled .wasm in testenv, and a README in the filters' doc shape. The generated
// filter answers requests that lack a configured header with a local reply; it builds
// and passes its tests as generated, and is meant to be edited from there.
//
// Run it with `go run ./cmd/meshplug new filter NAME` (writes filters/NAME).
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

//go:embed templates
var templates embed.FS

// validName is what a filter name may be: it names the folder, the Go command and the
// metrics (meshplug.<name>.*).
var validName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

// data is what the templates see.
type data struct {
	Name       string // filter name, e.g. "tenant"
	ImportPath string // import path of the generated folder
	RelDir     string // the folder relative to the module root, slash-separated: "filters/tenant"
}

// Generate writes a new filter named name into dir, which must be inside a Go module
// (the generated code imports the module's packages by path) and must not exist yet
// or be empty. name is lowercase letters and digits, starting with a letter.
func Generate(dir, name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("scaffold: filter name %q: want lowercase letters and digits, starting with a letter", name)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(abs); err == nil && len(entries) > 0 {
		return fmt.Errorf("scaffold: %s exists and is not empty", dir)
	}
	importPath, relDir, err := importPathOf(abs)
	if err != nil {
		return err
	}
	d := data{Name: name, ImportPath: importPath, RelDir: relDir}
	return fs.WalkDir(templates, "templates", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(path, "templates/"), ".tmpl")
		src, err := templates.ReadFile(path)
		if err != nil {
			return err
		}
		t, err := template.New(rel).Delims("[[", "]]").Parse(string(src))
		if err != nil {
			return fmt.Errorf("scaffold: template %s: %w", rel, err)
		}
		var out bytes.Buffer
		if err := t.Execute(&out, d); err != nil {
			return fmt.Errorf("scaffold: template %s: %w", rel, err)
		}
		b := out.Bytes()
		if strings.HasSuffix(rel, ".go") {
			if b, err = format.Source(b); err != nil {
				return fmt.Errorf("scaffold: generated %s does not parse: %w", rel, err)
			}
		}
		target := filepath.Join(abs, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// importPathOf returns the import path of folder abs from the module that holds it
// (the nearest go.mod above it), and abs relative to the module root.
func importPathOf(abs string) (importPath, relDir string, err error) {
	for dir := abs; ; dir = filepath.Dir(dir) {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			path := modulePath(mod)
			if path == "" {
				return "", "", fmt.Errorf("scaffold: %s has no module line", filepath.Join(dir, "go.mod"))
			}
			rel, err := filepath.Rel(dir, abs)
			if err != nil {
				return "", "", err
			}
			rel = filepath.ToSlash(rel)
			return strings.TrimSuffix(path+"/"+rel, "/."), rel, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
		if filepath.Dir(dir) == dir {
			return "", "", fmt.Errorf("scaffold: %s is not inside a Go module (no go.mod above it)", abs)
		}
	}
}

// modulePath returns the path of the module line of a go.mod file.
func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

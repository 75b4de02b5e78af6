package controller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"oras.land/oras-go/v2/registry"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/wasmoci"
)

// ModulePath is the URL path prefix the module server serves modules under:
// /modules/<sha256>.wasm, so a URL names its content and never changes meaning.
const ModulePath = "/modules/"

// Module is one filter's compiled .wasm held in memory, or the bundle's.
type Module struct {
	Filter string // "auth", or Bundle
	SHA256 string // hex
	Data   []byte
}

// Modules are the filters' .wasm files the controller serves and points the
// WasmPlugins at. They are read once at start: a new module is a new controller
// rollout, which re-renders every WasmPlugin with the new sha256.
type Modules struct {
	byFilter map[string]Module
	bySum    map[string]Module
	// PerFilter renders each filter from its own module even when the bundle is
	// loaded (the controller's --per-filter-modules).
	PerFilter bool
}

// Bundle is the Module.Filter of the bundle meshplug.wasm (envoyfilters.BundleModule),
// which holds every filter: when it is loaded, every WasmPlugin runs from it (one URL
// and digest, pluginName selecting the filter, one VM per worker), unless PerFilter.
const Bundle = "meshplug"

// LoadModules reads the bundle meshplug.wasm and <filter>.wasm for each filter of
// v1alpha1.Sections from dir (the output of `make build`). A file that is missing is
// left out: with per-filter modules, policies using a filter without its module report
// Ready=False (RenderFailed) naming it. At least one module is required.
func LoadModules(dir string) (*Modules, error) {
	var ms []Module
	names := []string{Bundle}
	for _, sec := range v1alpha1.Sections {
		names = append(names, sec.Filter)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ms = append(ms, NewModule(name, data))
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no filter modules (meshplug.wasm or <filter>.wasm) in %s: run make build", dir)
	}
	return NewModules(ms...), nil
}

// NewModule hashes data.
func NewModule(filter string, data []byte) Module {
	sum := sha256.Sum256(data)
	return Module{Filter: filter, SHA256: hex.EncodeToString(sum[:]), Data: data}
}

// NewModules indexes ms by filter and by sha256.
func NewModules(ms ...Module) *Modules {
	m := &Modules{byFilter: map[string]Module{}, bySum: map[string]Module{}}
	for _, x := range ms {
		m.byFilter[x.Filter] = x
		m.bySum[x.SHA256] = x
	}
	return m
}

// Get returns the module of filter.
func (m *Modules) Get(filter string) (Module, bool) {
	x, ok := m.byFilter[filter]
	return x, ok
}

// RenderOptions point each filter at baseURL + /modules/<sha256>.wasm, with the sha256
// Istio's agent checks the download against: the bundle's (see Bundle), or each
// filter's own.
func (m *Modules) RenderOptions(baseURL string) envoyfilters.Options {
	o := envoyfilters.Options{Modules: map[string]envoyfilters.Module{}}
	base := strings.TrimSuffix(baseURL, "/")
	for f, x := range m.byFilter {
		o.Modules[f] = envoyfilters.Module{URL: base + ModulePath + x.SHA256 + ".wasm", SHA256: x.SHA256}
	}
	m.selectBundle(&o)
	return o
}

// selectBundle makes o run every filter from the bundle, when it is loaded and
// per-filter modules were not asked for.
func (m *Modules) selectBundle(o *envoyfilters.Options) {
	if b, ok := o.Modules[Bundle]; ok && !m.PerFilter {
		o.Bundle = &b
	}
	delete(o.Modules, Bundle)
}

// OCIRenderOptions point each filter (or the bundle, see Bundle) at the Istio Wasm
// image `meshplug push --repository <repository>` makes of the same module:
// oci://<repository>/<filter or meshplug>@
// sha256:<manifest digest>, with that digest as the sha256 (Istio compares it with the
// manifest it pulls). wasmoci.Pack is deterministic, so the digest is computed here
// from the module's bytes, without asking the registry.
func (m *Modules) OCIRenderOptions(repository string) (envoyfilters.Options, error) {
	repo := strings.TrimSuffix(strings.TrimPrefix(repository, "oci://"), "/")
	if ref, err := registry.ParseReference(repo + "/x"); err != nil || ref.Reference != "" {
		return envoyfilters.Options{}, fmt.Errorf("module OCI repository %q: want registry/path without tag or digest, e.g. ghcr.io/acme/meshplug", repository)
	}
	o := envoyfilters.Options{Modules: map[string]envoyfilters.Module{}}
	for f, x := range m.byFilter {
		img, err := wasmoci.Pack(x.Data)
		if err != nil {
			return o, fmt.Errorf("%s: %w", f, err)
		}
		// NewModule checks the pinned digest is the image's and gives it as the sha256.
		mod, err := envoyfilters.NewModule("oci://"+repo+"/"+f+"@"+img.Manifest.Digest.String(), x.Data)
		if err != nil {
			return o, fmt.Errorf("%s: %w", f, err)
		}
		o.Modules[f] = mod
	}
	m.selectBundle(&o)
	return o, nil
}

// ServeHTTP serves GET and HEAD /modules/<sha256>.wasm as application/wasm with the
// sha256 as a strong ETag and an immutable cache lifetime (the path names the content);
// anything else is 404 (405 for other methods).
func (m *Modules) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, ModulePath)
	sum, ok2 := strings.CutSuffix(name, ".wasm")
	x, found := m.bySum[sum]
	if !ok || !ok2 || !found {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/wasm")
	h.Set("ETag", `"`+x.SHA256+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(x.Data))
}

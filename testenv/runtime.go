package testenv

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const (
	envModule  = "env"
	wasiModule = "wasi_snapshot_preview1"
)

// hostFunc is one function the host provides to guests.
type hostFunc struct {
	module, name    string
	params, results []api.ValueType
	fn              api.GoModuleFunc
}

var (
	rtOnce sync.Once
	rt     wazero.Runtime
	rtErr  error

	compiledMu sync.Mutex
	compiled   = map[[32]byte]*compiledModule{}

	// provided maps "module.name" to the host function, for import checks.
	provided map[string]*hostFunc
)

type compiledModule struct {
	once sync.Once
	mod  wazero.CompiledModule
	err  error
}

// cacheDir is where wazero's compilation cache lives: $MESHPLUG_WAZERO_CACHE, else
// $XDG_CACHE_HOME/meshplug/wazero, else os.UserCacheDir()/meshplug/wazero.
func cacheDir() string {
	if d := os.Getenv("MESHPLUG_WAZERO_CACHE"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return ""
		}
	}
	return filepath.Join(base, "meshplug", "wazero")
}

// wasmRuntime returns the process-wide wazero runtime with the "env" and WASI host modules
// instantiated once. Guest instances are anonymous, so any number of Hosts share it; a
// host function finds its VM through the context.Context of the guest call.
func wasmRuntime() (wazero.Runtime, error) {
	rtOnce.Do(func() {
		ctx := context.Background()
		cfg := wazero.NewRuntimeConfig()
		if dir := cacheDir(); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err == nil {
				if c, err := wazero.NewCompilationCacheWithDir(dir); err == nil {
					cfg = cfg.WithCompilationCache(c)
				}
			}
		}
		r := wazero.NewRuntimeWithConfig(ctx, cfg)
		provided = map[string]*hostFunc{}
		for _, group := range [][]hostFunc{envFuncs(), wasiFuncs()} {
			b := r.NewHostModuleBuilder(group[0].module)
			for i := range group {
				f := &group[i]
				provided[f.module+"."+f.name] = f
				b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(f.name)
			}
			if _, err := b.Instantiate(ctx); err != nil {
				rtErr = fmt.Errorf("testenv: instantiating host module %s: %w", group[0].module, err)
				return
			}
		}
		rt = r
	})
	return rt, rtErr
}

// compile compiles wasm once per process (keyed by its SHA-256) and checks its imports
// and exports against what Envoy's proxy-wasm host provides and expects.
func compile(ctx context.Context, plugin string, wasm []byte) (wazero.CompiledModule, error) {
	r, err := wasmRuntime()
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256(wasm)
	compiledMu.Lock()
	c, ok := compiled[key]
	if !ok {
		c = &compiledModule{}
		compiled[key] = c
	}
	compiledMu.Unlock()
	c.once.Do(func() { c.mod, c.err = r.CompileModule(ctx, wasm) })
	if c.err != nil {
		return nil, fmt.Errorf("plugin %q: compiling: %w", plugin, c.err)
	}
	if err := checkModule(plugin, c.mod); err != nil {
		return nil, err
	}
	return c.mod, nil
}

func sig(params, results []api.ValueType) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, p := range params {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(api.ValueTypeName(p))
	}
	b.WriteString(") -> (")
	for i, p := range results {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(api.ValueTypeName(p))
	}
	b.WriteByte(')')
	return b.String()
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkModule refuses a module that imports anything Envoy's proxy-wasm host does not
// provide (unknown module or name, wrong signature, imported memories, tables or
// globals), that lacks an accepted proxy_abi_version_* export or the memory export, or
// whose proxy-wasm callbacks have the wrong signature.
//
// Caveat: ABI versions 0.2.0 and 0.2.1 are accepted (their host calls are the same);
// 0.1.0 is refused although proxy-wasm-cpp-host still accepts it, because its header and
// stream semantics differ and meshplug does not target it.
func checkModule(plugin string, m wazero.CompiledModule) error {
	if _, err := wasmRuntime(); err != nil {
		return err
	}
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		hf, ok := provided[mod+"."+name]
		if !ok {
			return fmt.Errorf("plugin %q: import %s.%s is not provided by Envoy's proxy-wasm host", plugin, mod, name)
		}
		if !sameTypes(hf.params, f.ParamTypes()) || !sameTypes(hf.results, f.ResultTypes()) {
			return fmt.Errorf("plugin %q: import %s.%s has signature %s, Envoy's proxy-wasm host provides %s",
				plugin, mod, name, sig(f.ParamTypes(), f.ResultTypes()), sig(hf.params, hf.results))
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, name, _ := mem.Import()
		return fmt.Errorf("plugin %q: import %s.%s (memory) is not provided by Envoy's proxy-wasm host", plugin, mod, name)
	}
	exports := m.ExportedFunctions()
	if _, ok := exports["proxy_abi_version_0_2_1"]; !ok {
		if _, ok := exports["proxy_abi_version_0_2_0"]; !ok {
			var have []string
			for n := range exports {
				if strings.HasPrefix(n, "proxy_abi_version_") {
					have = append(have, n)
				}
			}
			sort.Strings(have)
			return fmt.Errorf("plugin %q: module does not export proxy_abi_version_0_2_1 (this host supports proxy-wasm ABI 0.2.1 and 0.2.0; module exports %v)", plugin, have)
		}
	}
	if _, ok := m.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("plugin %q: module does not export its memory as \"memory\"", plugin)
	}
	names := make([]string, 0, len(callbackSigs))
	for n := range callbackSigs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		want := callbackSigs[n]
		f, ok := exports[n]
		if !ok {
			continue
		}
		if !sameTypes(f.ParamTypes(), want[0]) || !sameTypes(f.ResultTypes(), want[1]) {
			return fmt.Errorf("plugin %q: export %s has signature %s, proxy-wasm ABI 0.2.1 wants %s",
				plugin, n, sig(f.ParamTypes(), f.ResultTypes()), sig(want[0], want[1]))
		}
	}
	if _, ok := exports["proxy_on_memory_allocate"]; !ok {
		if _, ok := exports["malloc"]; !ok {
			return fmt.Errorf("plugin %q: module exports neither proxy_on_memory_allocate nor malloc", plugin)
		}
	}
	return nil
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func i32s(n int) []api.ValueType {
	t := make([]api.ValueType, n)
	for i := range t {
		t[i] = i32
	}
	return t
}

// callbackSigs lists the proxy-wasm 0.2.1 callbacks the host calls: params, results.
var callbackSigs = map[string][2][]api.ValueType{
	"_initialize":                             {nil, nil},
	"proxy_on_memory_allocate":                {i32s(1), i32s(1)},
	"malloc":                                  {i32s(1), i32s(1)},
	"proxy_on_context_create":                 {i32s(2), nil},
	"proxy_on_vm_start":                       {i32s(2), i32s(1)},
	"proxy_on_configure":                      {i32s(2), i32s(1)},
	"proxy_on_tick":                           {i32s(1), nil},
	"proxy_on_request_headers":                {i32s(3), i32s(1)},
	"proxy_on_request_body":                   {i32s(3), i32s(1)},
	"proxy_on_request_trailers":               {i32s(2), i32s(1)},
	"proxy_on_response_headers":               {i32s(3), i32s(1)},
	"proxy_on_response_body":                  {i32s(3), i32s(1)},
	"proxy_on_response_trailers":              {i32s(2), i32s(1)},
	"proxy_on_done":                           {i32s(1), i32s(1)},
	"proxy_on_log":                            {i32s(1), nil},
	"proxy_on_delete":                         {i32s(1), nil},
	"proxy_on_http_call_response":             {i32s(5), nil},
	"proxy_on_queue_ready":                    {i32s(2), nil},
	"proxy_on_grpc_receive_initial_metadata":  {i32s(3), nil},
	"proxy_on_grpc_receive":                   {i32s(3), nil},
	"proxy_on_grpc_receive_trailing_metadata": {i32s(3), nil},
	"proxy_on_grpc_close":                     {i32s(3), nil},
}

// Package wasmcompat rewrites a proxy-wasm module built with the official Go toolchain
// (GOOS=wasip1) so that it runs on every proxy-wasm-cpp-host era Envoy has shipped: the
// WASI imports older hosts lack, answer fatally or refuse during restricted callbacks
// (sched_yield, poll_oneoff, fd_fdstat_set_flags, fd_fdstat_get) become functions
// inside the module that answer as the current host does (cpp-host #533). See Shims for
// the list and docs/compatibility.md for the eras.
//
// The rewrite is a binary transformation: the imports are removed, the replacements are
// appended as defined functions, and every function index is renumbered (call,
// return_call and ref.func in code and constant expressions, exports, element segments,
// the start function, the name section). The result is validated by wazero. Rewriting a
// rewritten module returns it unchanged.
package wasmcompat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
)

// MarkerSection is the custom section a rewritten module carries: the names of the
// imports the rewrite replaced, comma-separated.
const MarkerSection = "meshplug:compat"

// goBuildIDSection is the custom section Go's linker writes into every wasm module.
const goBuildIDSection = "go:buildid"

// ErrNotGoWasip1 is returned for a module that is not a Go (GOOS=wasip1) module.
var ErrNotGoWasip1 = errors.New("not a Go wasip1 module")

// Result says what Rewrite did.
type Result struct {
	// Replaced lists the WASI imports turned into functions inside the module (each
	// name once, in the order of Shims), empty for a module rewritten before.
	Replaced []string
	// Already is true when the module had been rewritten before (it is returned
	// unchanged).
	Already bool
	// NeedsNewerHost lists the WASI imports left in the module that proxy-wasm-cpp-host
	// provides only since #533 (Envoy 1.39): the rewritten module still loads only there.
	NeedsNewerHost []string
}

// wasiSince427 is what proxy-wasm-cpp-host provides from #427 (3930b7b, Envoy
// 1.33–1.38) on: FOR_ALL_WASI_FUNCTIONS in include/proxy-wasm/exports.h.
var wasiSince427 = []string{"fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get",
	"fd_fdstat_set_flags", "environ_get", "environ_sizes_get", "args_get", "args_sizes_get",
	"clock_time_get", "random_get", "sched_yield", "poll_oneoff", "proc_exit", "path_open",
	"fd_prestat_get", "fd_prestat_dir_name"}

// Rewrite returns the module with the imports of Shims replaced by functions inside
// it. It refuses a module that is not a Go wasip1 module (no go:buildid section or no
// wasi_snapshot_preview1 import), an import of Shims with another signature, and
// instructions outside the set the Go toolchain emits. A module rewritten before is
// returned as is, with Result.Already.
func Rewrite(in []byte) ([]byte, Result, error) {
	secs, err := parseSections(in)
	if err != nil {
		return nil, Result{}, err
	}
	var res Result
	var goBuildID, marker bool
	idx := map[byte]int{}
	for i, s := range secs {
		if s.id == secCustom {
			switch {
			case s.name == goBuildIDSection:
				goBuildID = true
			case s.name == MarkerSection:
				marker = true
			case strings.HasPrefix(s.name, ".debug_"):
				return nil, res, fmt.Errorf("custom section %q: DWARF debug info refers to code offsets the rewrite would move; build without it", s.name)
			}
			continue
		}
		if _, dup := idx[s.id]; dup {
			return nil, res, fmt.Errorf("section %d appears twice", s.id)
		}
		idx[s.id] = i
	}
	if !goBuildID {
		return nil, res, fmt.Errorf("%w: it has no %q custom section (build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared)", ErrNotGoWasip1, goBuildIDSection)
	}
	payload := func(id byte) []byte {
		if i, ok := idx[id]; ok {
			return secs[i].payload
		}
		return nil
	}
	var types []funcType
	var imports []importEntry
	if p := payload(secType); p != nil {
		if types, err = parseTypes(p); err != nil {
			return nil, res, fmt.Errorf("type section: %w", err)
		}
	}
	if p := payload(secImport); p != nil {
		if imports, err = parseImports(p); err != nil {
			return nil, res, fmt.Errorf("import section: %w", err)
		}
	}

	// Which function imports go, and which new function each becomes.
	var numFuncImports uint32
	wasi := false
	byName := map[string]*shim{}
	for i := range shims {
		byName[shims[i].name] = &shims[i]
	}
	removed := map[uint32]string{} // old function index → shim name
	used := map[string]uint32{}    // shim name → type index of its (first) import
	for _, im := range imports {
		if im.kind != 0 {
			continue
		}
		fi := numFuncImports
		numFuncImports++
		if im.module != WASIModule {
			continue
		}
		wasi = true
		sh, ok := byName[im.name]
		if !ok {
			if !slices.Contains(wasiSince427, im.name) && !slices.Contains(res.NeedsNewerHost, im.name) {
				res.NeedsNewerHost = append(res.NeedsNewerHost, im.name)
			}
			continue
		}
		if int(im.typeIdx) >= len(types) {
			return nil, res, fmt.Errorf("import %s.%s: type index %d out of range", im.module, im.name, im.typeIdx)
		}
		if got := types[im.typeIdx]; !got.equal(sh.typ) {
			return nil, res, fmt.Errorf("import %s.%s has signature %s, want %s: not the WASI preview 1 call the rewrite replaces", im.module, im.name, got, sh.typ)
		}
		removed[fi] = sh.name
		if _, ok := used[sh.name]; !ok {
			used[sh.name] = im.typeIdx
		}
	}
	if len(removed) == 0 {
		if marker {
			return in, Result{Already: true, NeedsNewerHost: res.NeedsNewerHost}, nil
		}
		if !wasi {
			return nil, res, fmt.Errorf("%w: it imports nothing from %s", ErrNotGoWasip1, WASIModule)
		}
		return nil, res, fmt.Errorf("%w: it imports none of %s from %s, which every Go wasip1 runtime does", ErrNotGoWasip1, strings.Join(shimNames(), ", "), WASIModule)
	}

	// The defined functions.
	funcSec := &reader{b: payload(secFunction)}
	numDefined := funcSec.u32()
	if funcSec.err != nil {
		return nil, res, fmt.Errorf("function section: %w", funcSec.err)
	}
	keptImports := numFuncImports - uint32(len(removed))
	newIndex := map[string]uint32{}
	var added []*shim
	for i := range shims {
		if _, ok := used[shims[i].name]; ok {
			newIndex[shims[i].name] = keptImports + numDefined + uint32(len(added))
			added = append(added, &shims[i])
			res.Replaced = append(res.Replaced, shims[i].name)
		}
	}
	total := numFuncImports + numDefined
	// shiftBelow[i] = number of removed imports with an index below i (imports only).
	removedSorted := make([]uint32, 0, len(removed))
	for fi := range removed {
		removedSorted = append(removedSorted, fi)
	}
	slices.Sort(removedSorted)
	remap := func(old uint32) (uint32, error) {
		if old >= total {
			return 0, fmt.Errorf("function index %d out of range (%d functions)", old, total)
		}
		if name, ok := removed[old]; ok {
			return newIndex[name], nil
		}
		below := uint32(sort.Search(len(removedSorted), func(i int) bool { return removedSorted[i] >= old }))
		return old - below, nil
	}

	out := make([]section, 0, len(secs)+1)
	for _, s := range secs {
		var err error
		switch s.id {
		case secImport:
			s.payload, err = rewriteImports(imports, removed)
		case secFunction:
			s.payload = appendFunctions(s.payload, funcSec, numDefined, added, used)
		case secGlobal:
			s.payload, err = rewriteGlobals(s.payload, remap)
		case secExport:
			s.payload, err = rewriteExports(s.payload, func(_ string, fn uint32) (uint32, error) { return remap(fn) })
		case secStart:
			r := &reader{b: s.payload}
			var v uint32
			if v, err = remap(r.u32()); err == nil && r.err == nil {
				s.payload = appendU32(nil, v)
			}
			err = errors.Join(err, r.err)
		case secElement:
			s.payload, err = rewriteElements(s.payload, remap)
		case secCode:
			s.payload, err = rewriteCode(s.payload, numDefined, added, remap)
		case secCustom:
			if s.name == "name" {
				s.payload, err = rewriteNames(s.payload, remap, newIndex)
			}
		}
		if err != nil {
			return nil, res, fmt.Errorf("section %d%s: %w", s.id, sectionLabel(s), err)
		}
		out = append(out, s)
	}
	if _, ok := idx[secFunction]; !ok || idx[secCode] == 0 {
		return nil, res, errors.New("the module defines no functions (no function or code section)")
	}
	out = append(out, section{id: secCustom, name: MarkerSection, payload: []byte(strings.Join(res.Replaced, ","))})
	rewritten := encodeSections(out)
	if err := Validate(rewritten); err != nil {
		return nil, res, fmt.Errorf("the rewritten module does not validate: %w", err)
	}
	return rewritten, res, nil
}

func sectionLabel(s section) string {
	if s.id == secCustom {
		return " (" + s.name + ")"
	}
	return ""
}

func shimNames() []string {
	var n []string
	for _, s := range shims {
		n = append(n, s.name)
	}
	return n
}

// Validate compiles the module with wazero (which validates it) and checks that it
// imports none of the calls the rewrite replaces.
func Validate(wasm []byte) error {
	return validate(wasm, func(cm wazero.CompiledModule) error {
		for _, f := range cm.ImportedFunctions() {
			mod, name, _ := f.Import()
			if mod == WASIModule && slices.Contains(shimNames(), name) {
				return fmt.Errorf("still imports %s.%s", mod, name)
			}
		}
		return nil
	})
}

// validateOnlyWazero compiles the module with wazero, which validates it.
func validateOnlyWazero(wasm []byte) error { return validate(wasm, nil) }

func validate(wasm []byte, check func(wazero.CompiledModule) error) error {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return err
	}
	defer cm.Close(ctx)
	if check != nil {
		return check(cm)
	}
	return nil
}

func rewriteImports(imports []importEntry, removed map[uint32]string) ([]byte, error) {
	var kept [][]byte
	var fi uint32
	for _, im := range imports {
		if im.kind == 0 {
			gone := removed[fi] != ""
			fi++
			if gone {
				continue
			}
		}
		kept = append(kept, im.raw)
	}
	out := appendU32(nil, uint32(len(kept)))
	for _, k := range kept {
		out = append(out, k...)
	}
	return out, nil
}

func appendFunctions(payload []byte, r *reader, n uint32, added []*shim, used map[string]uint32) []byte {
	out := appendU32(nil, n+uint32(len(added)))
	out = append(out, payload[r.pos:]...)
	for _, s := range added {
		out = appendU32(out, used[s.name])
	}
	return out
}

func rewriteGlobals(p []byte, remap func(uint32) (uint32, error)) ([]byte, error) {
	r := &reader{b: p}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		start := r.pos
		r.byte() // valtype
		r.byte() // mut
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, p[start:r.pos]...)
		var err error
		if out, err = remapExpr(r, out, remap, true); err != nil {
			return nil, fmt.Errorf("global %d: %w", i, err)
		}
	}
	return out, r.err
}

// rewriteExports maps each function export's index through remap, which also sees
// the export's name.
func rewriteExports(p []byte, remap func(name string, fn uint32) (uint32, error)) ([]byte, error) {
	r := &reader{b: p}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		name := r.name()
		kind := r.byte()
		v := r.u32()
		if kind == 0 {
			var err error
			if v, err = remap(name, v); err != nil {
				return nil, fmt.Errorf("export %q: %w", name, err)
			}
		}
		out = appendName(out, name)
		out = append(out, kind)
		out = appendU32(out, v)
	}
	return out, r.err
}

func rewriteElements(p []byte, remap func(uint32) (uint32, error)) ([]byte, error) {
	r := &reader{b: p}
	n := r.u32()
	out := appendU32(nil, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return nil, fmt.Errorf("element segment %d: flags %d", i, flags)
		}
		out = appendU32(out, flags)
		var err error
		if flags&3 == 2 { // explicit table index
			out = appendU32(out, r.u32())
		}
		if flags&1 == 0 { // active: offset expression
			if out, err = remapExpr(r, out, remap, true); err != nil {
				return nil, fmt.Errorf("element segment %d offset: %w", i, err)
			}
		}
		if flags&3 != 0 { // elemkind (0x00 funcref) or reftype
			out = append(out, r.byte())
		}
		count := r.u32()
		out = appendU32(out, count)
		for j := uint32(0); j < count && r.err == nil; j++ {
			if flags&4 == 0 { // function indices
				v, w := r.u32w()
				if r.err != nil {
					break
				}
				nv, err := remap(v)
				if err != nil {
					return nil, fmt.Errorf("element segment %d entry %d: %w", i, j, err)
				}
				out = appendU32Width(out, nv, w)
			} else if out, err = remapExpr(r, out, remap, true); err != nil {
				return nil, fmt.Errorf("element segment %d entry %d: %w", i, j, err)
			}
		}
	}
	if r.err == nil && r.pos != len(p) {
		return nil, fmt.Errorf("%d bytes left over", len(p)-r.pos)
	}
	return out, r.err
}

func rewriteCode(p []byte, numDefined uint32, added []*shim, remap func(uint32) (uint32, error)) ([]byte, error) {
	r := &reader{b: p}
	n := r.u32()
	if n != numDefined {
		return nil, fmt.Errorf("%d bodies for %d functions", n, numDefined)
	}
	out := appendU32(make([]byte, 0, len(p)+256), n+uint32(len(added)))
	for i := uint32(0); i < n; i++ {
		size, w := r.u32w()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		nb, err := remapBody(body, remap)
		if err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = appendU32Width(out, uint32(len(nb)), w)
		out = append(out, nb...)
	}
	for _, s := range added {
		out = appendU32(out, uint32(len(s.body)))
		out = append(out, s.body...)
	}
	return out, nil
}

// rewriteNames renumbers the name section's function names (subsection 1) and local
// names (2), names the new functions after the imports they replace, and keeps the
// other subsections as they are.
func rewriteNames(p []byte, remap func(uint32) (uint32, error), newIndex map[string]uint32) ([]byte, error) {
	r := &reader{b: p}
	var out []byte
	for !r.done() {
		id := r.byte()
		size := r.u32()
		sub := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		switch id {
		case 1, 2:
			nr := &reader{b: sub}
			type entry struct {
				idx  uint32
				data []byte
			}
			var entries []entry
			seen := map[uint32]bool{}
			count := nr.u32()
			for i := uint32(0); i < count && nr.err == nil; i++ {
				old := nr.u32()
				start := nr.pos
				if id == 1 {
					nr.name()
				} else {
					m := nr.u32()
					for j := uint32(0); j < m && nr.err == nil; j++ {
						nr.u32()
						nr.name()
					}
				}
				if nr.err != nil {
					break
				}
				nv, err := remap(old)
				if err != nil {
					return nil, fmt.Errorf("name subsection %d: %w", id, err)
				}
				if seen[nv] { // a replaced import's name: the new function gets its own below
					continue
				}
				isNew := false
				for _, v := range newIndex {
					isNew = isNew || v == nv
				}
				if isNew {
					continue
				}
				seen[nv] = true
				entries = append(entries, entry{nv, sub[start:nr.pos]})
			}
			if nr.err != nil {
				return nil, fmt.Errorf("name subsection %d: %w", id, nr.err)
			}
			if id == 1 {
				for name, v := range newIndex {
					entries = append(entries, entry{v, appendName(nil, WASIModule+"."+name+" (meshplug compat)")})
				}
			}
			slices.SortFunc(entries, func(a, b entry) int { return int(int64(a.idx) - int64(b.idx)) })
			body := appendU32(nil, uint32(len(entries)))
			for _, e := range entries {
				body = appendU32(body, e.idx)
				body = append(body, e.data...)
			}
			sub = body
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(sub)))
		out = append(out, sub...)
	}
	return out, r.err
}

// Replaced returns the imports a rewritten module's marker section names (nil for a
// module without the section).
func Replaced(wasm []byte) ([]string, error) {
	secs, err := parseSections(wasm)
	if err != nil {
		return nil, err
	}
	for _, s := range secs {
		if s.id == secCustom && s.name == MarkerSection {
			if len(s.payload) == 0 {
				return []string{}, nil
			}
			return strings.Split(string(s.payload), ","), nil
		}
	}
	return nil, nil
}

package wasmcompat

import (
	"errors"
	"fmt"
	"slices"
)

// Restricted callbacks: proxy-wasm-cpp-host runs the module's start (_initialize) and
// its allocator (proxy_on_memory_allocate, malloc) with only a few host calls allowed;
// another call traps ("restricted_callback"). Only the V8 engine enforces the lists
// (src/v8/v8.cc checks WasmVm::isHostFunctionAllowed; the WAMR, Wasmtime and WAVM
// adapters do not), and V8 is Envoy's default runtime. The lists of cpp-host before
// #427 (63cb9c1, Envoy ≤ 1.32), from src/wasm.cc WasmBase::startVm and
// include/proxy-wasm/wasm.h WasmBase::allocMemory:
var (
	// StartAllowed63cb9c1 is what _initialize may call.
	StartAllowed63cb9c1 = wasiBoth("fd_write", "args_sizes_get", "args_get", "environ_sizes_get",
		"environ_get", "fd_prestat_get", "fd_prestat_dir_name", "clock_time_get", "random_get")
	// AllocAllowed63cb9c1 is what proxy_on_memory_allocate may call.
	AllocAllowed63cb9c1 = wasiBoth("fd_write", "clock_time_get")
)

func wasiBoth(names ...string) []string {
	out := []string{"env.proxy_log"}
	for _, n := range names {
		out = append(out, "wasi_unstable."+n, WASIModule+"."+n)
	}
	return out
}

// EmulateRestrictedCallbacks returns the module instrumented to enforce cpp-host's
// restricted callbacks the way V8 does, on any engine: while its _initialize export
// runs, a call to an import not in startAllowed traps (unreachable); while its
// proxy_on_memory_allocate (or malloc) export runs, so does a call to an import not in
// allocAllowed. Import names are "module.name". It is a test tool: the host library
// with WAMR does not enforce the lists, so a module that would trap on V8 runs there;
// instrumented, it traps there too.
//
// A global holds the phase; the two exports are wrapped to set it and reset it to none
// afterwards (as cpp-host resets the restriction after the call, nested or not), and
// every call to a restricted import goes through a wrapper that checks it.
func EmulateRestrictedCallbacks(in []byte, startAllowed, allocAllowed []string) ([]byte, error) {
	secs, err := parseSections(in)
	if err != nil {
		return nil, err
	}
	idx := map[byte]int{}
	for i, s := range secs {
		if s.id != secCustom {
			idx[s.id] = i
		}
	}
	payload := func(id byte) []byte {
		if i, ok := idx[id]; ok {
			return secs[i].payload
		}
		return nil
	}
	for _, id := range []byte{secType, secFunction, secCode, secExport, secGlobal} {
		if _, ok := idx[id]; !ok {
			return nil, fmt.Errorf("the module has no section %d", id)
		}
	}
	types, err := parseTypes(payload(secType))
	if err != nil {
		return nil, err
	}
	var imports []importEntry
	if p := payload(secImport); p != nil {
		if imports, err = parseImports(p); err != nil {
			return nil, err
		}
	}
	var numFuncImports, numGlobalImports uint32
	type wrapped struct {
		fn   uint32
		typ  uint32
		mask byte
	}
	var wrappers []wrapped
	for _, im := range imports {
		switch im.kind {
		case 0:
			var mask byte
			name := im.module + "." + im.name
			if !slices.Contains(startAllowed, name) {
				mask |= 1
			}
			if !slices.Contains(allocAllowed, name) {
				mask |= 2
			}
			if mask != 0 {
				wrappers = append(wrappers, wrapped{fn: numFuncImports, typ: im.typeIdx, mask: mask})
			}
			numFuncImports++
		case 3:
			numGlobalImports++
		}
	}
	fr := &reader{b: payload(secFunction)}
	numDefined := fr.u32()
	gr := &reader{b: payload(secGlobal)}
	numGlobals := gr.u32()
	if fr.err != nil || gr.err != nil {
		return nil, errors.Join(fr.err, gr.err)
	}
	phaseGlobal := numGlobalImports + numGlobals

	// The exports to wrap, and their functions' types.
	funcTypes := func(fn uint32) (uint32, error) {
		if fn < numFuncImports {
			n := uint32(0)
			for _, im := range imports {
				if im.kind == 0 {
					if n == fn {
						return im.typeIdx, nil
					}
					n++
				}
			}
		}
		r := &reader{b: payload(secFunction)}
		r.u32()
		var t uint32
		for i := uint32(0); i <= fn-numFuncImports && r.err == nil; i++ {
			t = r.u32()
		}
		return t, r.err
	}
	redirect := map[uint32]uint32{}
	for k, w := range wrappers {
		redirect[w.fn] = numFuncImports + numDefined + uint32(k)
	}
	type exportWrap struct {
		fn, typ, wrapper uint32
		phase            byte
	}
	var exportWraps []exportWrap
	er := &reader{b: payload(secExport)}
	n := er.u32()
	for i := uint32(0); i < n && er.err == nil; i++ {
		name := er.name()
		kind := er.byte()
		fn := er.u32()
		if kind != 0 {
			continue
		}
		var phase byte
		switch name {
		case "_initialize":
			phase = 1
		case "proxy_on_memory_allocate", "malloc":
			phase = 2
		default:
			continue
		}
		t, err := funcTypes(fn)
		if err != nil {
			return nil, err
		}
		exportWraps = append(exportWraps, exportWrap{fn: fn, typ: t, phase: phase,
			wrapper: numFuncImports + numDefined + uint32(len(wrappers)+len(exportWraps))})
	}
	if er.err != nil {
		return nil, er.err
	}
	for _, w := range wrappers {
		if int(w.typ) >= len(types) {
			return nil, fmt.Errorf("import function %d: type index %d out of range", w.fn, w.typ)
		}
	}
	for _, e := range exportWraps {
		if int(e.typ) >= len(types) {
			return nil, fmt.Errorf("function %d: type index %d out of range", e.fn, e.typ)
		}
	}
	remap := func(fn uint32) (uint32, error) {
		if to, ok := redirect[fn]; ok {
			return to, nil
		}
		return fn, nil
	}
	localGets := func(t uint32) []byte {
		var b []byte
		for i := range types[t].params {
			b = append(b, 0x20)
			b = appendU32(b, uint32(i))
		}
		return b
	}
	var bodies [][]byte
	var newTypes []uint32
	for _, w := range wrappers {
		b := []byte{0x00, 0x23}
		b = appendU32(b, phaseGlobal)
		b = append(b, 0x41, w.mask, 0x71, 0x04, 0x40, 0x00, 0x0b) // and mask; if: unreachable
		b = append(b, localGets(w.typ)...)
		b = append(b, 0x10)
		b = appendU32(b, w.fn)
		bodies = append(bodies, append(b, 0x0b))
		newTypes = append(newTypes, w.typ)
	}
	for _, e := range exportWraps {
		setPhase := func(p byte) []byte { return appendU32([]byte{0x41, p, 0x24}, phaseGlobal) }
		b := append([]byte{0x00}, setPhase(e.phase)...)
		b = append(b, localGets(e.typ)...)
		b = append(b, 0x10)
		b = appendU32(b, mustRemap(remap, e.fn))
		b = append(b, setPhase(0)...)
		bodies = append(bodies, append(b, 0x0b))
		newTypes = append(newTypes, e.typ)
	}

	out := make([]section, 0, len(secs))
	for _, s := range secs {
		var err error
		switch s.id {
		case secFunction:
			p := appendU32(nil, numDefined+uint32(len(newTypes)))
			p = append(p, s.payload[fr.pos:]...)
			for _, t := range newTypes {
				p = appendU32(p, t)
			}
			s.payload = p
		case secGlobal:
			p := appendU32(nil, numGlobals+1)
			p = append(p, s.payload[gr.pos:]...)
			s.payload = append(p, valI32, 0x01, 0x41, 0x00, 0x0b) // (mut i32) (i32.const 0)
			s.payload, err = rewriteGlobals(s.payload, remap)
		case secExport:
			s.payload, err = rewriteExports(s.payload, func(name string, fn uint32) (uint32, error) {
				for _, e := range exportWraps {
					if e.fn == fn && (name == "_initialize" || name == "proxy_on_memory_allocate" || name == "malloc") {
						return e.wrapper, nil
					}
				}
				return remap(fn)
			})
		case secStart:
			r := &reader{b: s.payload}
			s.payload = appendU32(nil, mustRemap(remap, r.u32()))
		case secElement:
			s.payload, err = rewriteElements(s.payload, remap)
		case secCode:
			var p []byte
			if p, err = rewriteCode(s.payload, numDefined, nil, remap); err == nil {
				cr := &reader{b: p}
				cr.u32()
				p = append(appendU32(nil, numDefined+uint32(len(bodies))), p[cr.pos:]...)
				for _, b := range bodies {
					p = appendU32(p, uint32(len(b)))
					p = append(p, b...)
				}
				s.payload = p
			}
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, err)
		}
		out = append(out, s)
	}
	b := encodeSections(out)
	if err := validateOnlyWazero(b); err != nil {
		return nil, fmt.Errorf("the instrumented module does not validate: %w", err)
	}
	return b, nil
}

func mustRemap(remap func(uint32) (uint32, error), fn uint32) uint32 {
	v, _ := remap(fn) // the remaps here never fail
	return v
}

package wasmcompat

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshplug/meshplug/testenv"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// A hand-assembled module with what the rewrite must renumber: calls (minimal and
// 5-byte padded LEB128 indices), call_indirect through an element segment naming both
// a replaced import and a defined function, ref.func declared by a declarative segment,
// a start function, exports, the name section, and a kept import before and after the
// replaced ones.

func vec(items ...[]byte) []byte {
	out := appendU32(nil, uint32(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func sec(id byte, payload []byte) []byte {
	return cat([]byte{id}, appendU32(nil, uint32(len(payload))), payload)
}

func custom(name string, payload []byte) []byte {
	return sec(secCustom, cat(appendName(nil, name), payload))
}

func imp(module, name string, typ uint32) []byte {
	return cat(appendName(nil, module), appendName(nil, name), []byte{0}, appendU32(nil, typ))
}

func exp(name string, fn uint32) []byte {
	return cat(appendName(nil, name), []byte{0}, appendU32(nil, fn))
}

func body(code ...byte) []byte {
	b := append([]byte{0x00}, code...) // no locals
	return cat(appendU32(nil, uint32(len(b))), b)
}

func call(fn uint32) []byte  { return cat([]byte{0x10}, appendU32(nil, fn)) }
func call5(fn uint32) []byte { return cat([]byte{0x10}, appendU32Width(nil, fn, 5)) }
func i32c(v byte) []byte     { return []byte{0x41, v} } // v < 64

// Function indices in the hand-built module.
const (
	fnEnvOther     = 0 // env.other () -> i32, kept
	fnSchedYield   = 1
	fnPollOneoff   = 2
	fnRandomGet    = 3 // kept, between replaced ones
	fnSetFlags     = 4
	fnFdstatGet    = 5
	fnPoll         = 6 // exports from here
	fnYield        = 7
	fnSetFlagsCall = 8
	fnFdstat       = 9
	fnIndirect     = 10
	fnOther        = 11
	fnStart        = 12
	fnRefFunc      = 13
	fnPollFault    = 14
)

func handBuilt(goBuildID bool, extraCode ...[]byte) []byte {
	types := vec(
		[]byte{0x60, 0, 1, valI32},                                 // 0: () -> i32
		[]byte{0x60, 4, valI32, valI32, valI32, valI32, 1, valI32}, // 1: (i32 x4) -> i32
		[]byte{0x60, 2, valI32, valI32, 1, valI32},                 // 2: (i32, i32) -> i32
		[]byte{0x60, 1, valI32, 1, valI32},                         // 3: (i32) -> i32
		[]byte{0x60, 0, 0},                                         // 4: () -> ()
	)
	imports := vec(
		imp("env", "other", 0),
		imp(WASIModule, "sched_yield", 0),
		imp(WASIModule, "poll_oneoff", 1),
		imp(WASIModule, "random_get", 2),
		imp(WASIModule, "fd_fdstat_set_flags", 2),
		imp(WASIModule, "fd_fdstat_get", 2),
	)
	funcs := vec(appendU32(nil, 0), appendU32(nil, 0), appendU32(nil, 0), appendU32(nil, 3),
		appendU32(nil, 3), appendU32(nil, 0), appendU32(nil, 4), appendU32(nil, 0), appendU32(nil, 0))
	codes := [][]byte{
		// poll: [8] = 99; r = poll_oneoff(0, 0, 1, 8); return r*256 + [8]
		body(cat(i32c(8), i32c(63), []byte{0x36, 2, 0},
			i32c(0), i32c(0), i32c(1), i32c(8), call5(fnPollOneoff),
			[]byte{0x41, 0x80, 0x02, 0x6c},               // i32.const 256, i32.mul
			i32c(8), []byte{0x28, 2, 0, 0x6a, 0x0b})...), // i32.load, i32.add, end
		// yield
		body(cat(call(fnSchedYield), []byte{0x0b})...),
		// setflags
		body(cat(i32c(1), i32c(4), call(fnSetFlags), []byte{0x0b})...),
		// fdstat(fd): fd_fdstat_get(fd, 16)
		body(cat([]byte{0x20, 0}, i32c(16), call5(fnFdstatGet), []byte{0x0b})...),
		// indirect(i): call_indirect type 0, table 0
		body(cat([]byte{0x20, 0, 0x11, 0, 0, 0x0b})...),
		// other: env.other() + random_get(0, 0)
		body(cat(call(fnEnvOther), i32c(0), i32c(0), call(fnRandomGet), []byte{0x6a, 0x0b})...),
		// start: [40] = 7
		body(cat(i32c(40), i32c(7), []byte{0x36, 2, 0, 0x0b})...),
		// reffunc: ref.func yield; ref.is_null
		body(cat([]byte{0xd2}, appendU32(nil, fnYield), []byte{0xd1, 0x0b})...),
		// pollfault: poll_oneoff(0, 0, 1, 65534): nevents_ptr out of bounds
		body(cat(i32c(0), i32c(0), i32c(1), []byte{0x41, 0xfe, 0xff, 0x03}, call(fnPollOneoff), []byte{0x0b})...),
	}
	codes = append(codes, extraCode...)
	if len(extraCode) > 0 {
		funcs = vec(append(make([][]byte, 0), appendU32(nil, 0), appendU32(nil, 0), appendU32(nil, 0), appendU32(nil, 3),
			appendU32(nil, 3), appendU32(nil, 0), appendU32(nil, 4), appendU32(nil, 0), appendU32(nil, 0), appendU32(nil, 0))...)
	}
	names := cat([]byte{1}, func() []byte {
		var entries [][]byte
		for i, n := range []string{"env.other", "sched_yield", "poll_oneoff", "random_get", "fd_fdstat_set_flags",
			"fd_fdstat_get", "poll", "yield", "setflags", "fdstat", "indirect", "other", "start", "reffunc", "pollfault"} {
			entries = append(entries, cat(appendU32(nil, uint32(i)), appendName(nil, n)))
		}
		v := vec(entries...)
		return cat(appendU32(nil, uint32(len(v))), v)
	}())
	var m []byte
	m = append(m, wasmHeader...)
	if goBuildID {
		m = append(m, custom(goBuildIDSection, []byte("test"))...)
	}
	m = append(m, sec(secType, types)...)
	m = append(m, sec(secImport, imports)...)
	m = append(m, sec(secFunction, funcs)...)
	m = append(m, sec(secTable, vec([]byte{0x70, 0x00, 4}))...)
	m = append(m, sec(secMemory, vec([]byte{0x00, 1}))...)
	m = append(m, sec(secExport, vec(exp("poll", fnPoll), exp("yield", fnYield), exp("setflags", fnSetFlagsCall),
		exp("fdstat", fnFdstat), exp("indirect", fnIndirect), exp("other", fnOther), exp("reffunc", fnRefFunc),
		exp("pollfault", fnPollFault), cat(appendName(nil, "memory"), []byte{2, 0})))...)
	m = append(m, sec(secStart, appendU32(nil, fnStart))...)
	m = append(m, sec(secElement, vec(
		// active, table 0, offset 0: [sched_yield (replaced import), env.other (kept import), yield (defined)]
		cat([]byte{0x00}, i32c(0), []byte{0x0b}, vec(appendU32(nil, fnSchedYield), appendU32(nil, fnEnvOther), appendU32Width(nil, fnYield, 5))),
		// declarative: yield (for ref.func)
		cat([]byte{0x03, 0x00}, vec(appendU32(nil, fnYield))),
	))...)
	m = append(m, sec(secCode, vec(codes...))...)
	m = append(m, custom("name", names)...)
	return m
}

func instantiate(t *testing.T, wasm []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { _ = rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithFunc(func() int32 { return 5 }).Export("other").Instantiate(ctx)
	require.NoError(t, err)
	// The host's WASI: random_get answers 1000; the replaced calls answer -1 so a call
	// that still reached the host would show.
	_, err = rt.NewHostModuleBuilder(WASIModule).
		NewFunctionBuilder().WithFunc(func(int32, int32) int32 { return 1000 }).Export("random_get").
		NewFunctionBuilder().WithFunc(func() int32 { return -1 }).Export("sched_yield").
		NewFunctionBuilder().WithFunc(func(int32, int32, int32, int32) int32 { return -1 }).Export("poll_oneoff").
		NewFunctionBuilder().WithFunc(func(int32, int32) int32 { return -1 }).Export("fd_fdstat_set_flags").
		NewFunctionBuilder().WithFunc(func(int32, int32) int32 { return -1 }).Export("fd_fdstat_get").
		Instantiate(ctx)
	require.NoError(t, err)
	mod, err := rt.Instantiate(ctx, wasm)
	require.NoError(t, err)
	return mod
}

func TestRewriteHandBuilt(t *testing.T) {
	in := handBuilt(true)
	require.NoError(t, validateOnlyWazero(in), "the input is a valid module")
	out, res, err := Rewrite(in)
	require.NoError(t, err)
	assert.Equal(t, []string{"sched_yield", "poll_oneoff", "fd_fdstat_set_flags", "fd_fdstat_get"}, res.Replaced)
	assert.False(t, res.Already)

	ctx := context.Background()
	for _, mod := range []struct {
		name string
		wasm []byte
		host bool // answers come from the host's stand-ins (-1)
	}{{"input", in, true}, {"rewritten", out, false}} {
		t.Run(mod.name, func(t *testing.T) {
			m := instantiate(t, mod.wasm)
			v, ok := m.Memory().ReadUint32Le(40)
			require.True(t, ok)
			assert.Equal(t, uint32(7), v, "the start function ran")
			for _, tc := range []struct {
				export string
				args   []uint64
				want   int32 // rewritten
				host   int32 // input (host stand-ins)
			}{
				{export: "poll", want: 0, host: -256 + 63},
				{export: "pollfault", want: 21, host: -1},
				{export: "yield", want: 0, host: -1},
				{export: "setflags", want: 52, host: -1},
				{export: "fdstat", args: []uint64{0}, want: 8, host: -1},
				{export: "fdstat", args: []uint64{1}, want: 0, host: -1},
				{export: "fdstat", args: []uint64{2}, want: 0, host: -1},
				{export: "fdstat", args: []uint64{3}, want: 8, host: -1},
				{export: "indirect", args: []uint64{0}, want: 0, host: -1}, // table[0]: sched_yield
				{export: "indirect", args: []uint64{1}, want: 5, host: 5},  // table[1]: env.other
				{export: "indirect", args: []uint64{2}, want: 0, host: -1}, // table[2]: yield
				{export: "other", want: 1005, host: 1005},
				{export: "reffunc", want: 0, host: 0},
			} {
				_, err := m.ExportedFunction(tc.export).Call(ctx, tc.args...)
				require.NoError(t, err, tc.export)
				got, err := m.ExportedFunction(tc.export).Call(ctx, tc.args...)
				require.NoError(t, err)
				want := tc.want
				if mod.host {
					want = tc.host
				}
				assert.Equal(t, want, int32(got[0]), "%s%v", tc.export, tc.args)
			}
			if !mod.host {
				// fd_fdstat_get(1, 16) wrote cpp-host's fdstat: rights_base FD_WRITE.
				b, ok := m.Memory().Read(16, 24)
				require.True(t, ok)
				assert.Equal(t, uint64(0), binary.LittleEndian.Uint64(b[0:]))
				assert.Equal(t, uint64(64), binary.LittleEndian.Uint64(b[8:]))
				assert.Equal(t, uint64(0), binary.LittleEndian.Uint64(b[16:]))
			}
		})
	}

	t.Run("names", func(t *testing.T) {
		ctx := context.Background()
		rt := wazero.NewRuntime(ctx)
		defer rt.Close(ctx)
		cm, err := rt.CompileModule(ctx, out)
		require.NoError(t, err)
		var imports []string
		for _, f := range cm.ImportedFunctions() {
			_, name, _ := f.Import()
			imports = append(imports, name)
		}
		assert.Equal(t, []string{"other", "random_get"}, imports)
		byName := map[string]string{}
		for name, f := range cm.ExportedFunctions() {
			byName[name] = f.DebugName()
		}
		// Each export still carries its own name from the name section.
		assert.Equal(t, ".poll", byName["poll"])
		assert.Equal(t, ".fdstat", byName["fdstat"])
		assert.Equal(t, ".pollfault", byName["pollfault"])
	})
}

func TestRewriteIdempotent(t *testing.T) {
	out, _, err := Rewrite(handBuilt(true))
	require.NoError(t, err)
	again, res, err := Rewrite(out)
	require.NoError(t, err)
	assert.True(t, res.Already)
	assert.Empty(t, res.Replaced)
	assert.Equal(t, out, again, "a rewritten module is returned unchanged")
}

func TestRewriteRefuses(t *testing.T) {
	wrongSig := handBuilt(true)
	// poll_oneoff imported as type 2 (i32, i32) -> i32 instead of type 1.
	i := bytes.Index(wrongSig, []byte("poll_oneoff\x00\x01"))
	require.Positive(t, i)
	wrongSig = bytes.Clone(wrongSig)
	wrongSig[i+len("poll_oneoff\x00")] = 2

	noWASI := []byte(wasmHeader)
	noWASI = append(noWASI, custom(goBuildIDSection, []byte("x"))...)
	noWASI = append(noWASI, sec(secType, vec([]byte{0x60, 0, 0}))...)
	noWASI = append(noWASI, sec(secFunction, vec(appendU32(nil, 0)))...)
	noWASI = append(noWASI, sec(secCode, vec(body(0x0b)))...)

	simd := handBuilt(true, body(0xfd, 0x0c, 0x0b)) // v128.const: not Go's instruction set

	dwarf := append(bytes.Clone(handBuilt(true)), custom(".debug_info", []byte{1})...)

	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not a WebAssembly binary module"},
		{"text", []byte("(module)"), "not a WebAssembly binary module"},
		{"truncated", handBuilt(true)[:200], "truncated"},
		{"no go:buildid (not Go)", handBuilt(false), `not a Go wasip1 module: it has no "go:buildid" custom section`},
		{"no WASI imports", noWASI, "not a Go wasip1 module: it imports nothing from wasi_snapshot_preview1"},
		{"unknown signature", wrongSig, "import wasi_snapshot_preview1.poll_oneoff has signature (i32, i32) -> (i32), want (i32, i32, i32, i32) -> (i32)"},
		{"SIMD", simd, "unsupported opcode 0xfd"},
		{"DWARF", dwarf, `custom section ".debug_info"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := Rewrite(tc.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Nil(t, out)
		})
	}
}

// A Go module on testenv with poll_oneoff answering ENOSYS (proxy-wasm-cpp-host
// before #533, Envoy 1.33–1.38): the untouched timer guest (a Go timer, so the poller
// is on, and 64 KiB of garbage per request) dies; rewritten, it survives the same load
// and never reaches the host's poll_oneoff. The same on cpp-host itself:
// testenv/cpphost's TestRuntimeHealthCompat.
func TestRewrittenGoGuestSurvivesENOSYSPoll(t *testing.T) {
	const requests = 3000
	raw := testenv.MustBuildGuest(t, "../../testenv/cpphost/testdata/timerguest")
	rewritten, res, err := Rewrite(raw)
	require.NoError(t, err)
	assert.Equal(t, []string{"sched_yield", "poll_oneoff", "fd_fdstat_set_flags", "fd_fdstat_get"}, res.Replaced)
	assert.Greater(t, len(rewritten), len(raw), "the shims add a few bytes")
	assert.Less(t, len(rewritten), len(raw)+4096)

	for _, tc := range []struct {
		name    string
		wasm    []byte
		survive bool
	}{
		{"untouched", raw, false},
		{"rewritten", rewritten, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{PollOneoffENOSYS: true},
				testenv.Plugin{Name: "timerguest", Wasm: tc.wasm, Config: []byte("{}")})
			failedAt := -1
			for i := 0; i < requests && failedAt < 0; i++ {
				resp := h.MustDo(t, testenv.Request{Path: "/"})
				if resp.Status != 200 || resp.Reset {
					failedAt = i
				}
			}
			var pollLogged bool
			for _, l := range h.Logs() {
				pollLogged = pollLogged || strings.Contains(l.Message, "poll_oneoff failed")
			}
			if tc.survive {
				assert.Equal(t, -1, failedAt, "logs: %v", h.Logs())
				assert.False(t, pollLogged)
				return
			}
			assert.GreaterOrEqual(t, failedAt, 0, "the untouched guest survived %d requests on an ENOSYS poll_oneoff", requests)
			assert.True(t, pollLogged, "the runtime's poll_oneoff message; logs: %v", h.Logs())
			t.Logf("the untouched guest died at request %d", failedAt)
		})
	}
}

// Every filter and example module: rewritten, it imports none of the replaced calls,
// validates, and a second rewrite is a no-op.
func TestRewriteGoModules(t *testing.T) {
	for _, dir := range []string{"../../filters/auth", "../../filters/ratelimit", "../../filters/routehint",
		"../../filters/fault", "../../examples/requireheader", "../../examples/headerrewrite"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw := testenv.MustBuildGuest(t, dir)
			out, res, err := Rewrite(raw)
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{"sched_yield", "poll_oneoff", "fd_fdstat_set_flags", "fd_fdstat_get"}, res.Replaced)
			require.NoError(t, Validate(out))
			assert.Empty(t, res.NeedsNewerHost, "every WASI import left is in cpp-host #427")
			again, res, err := Rewrite(out)
			require.NoError(t, err)
			assert.True(t, res.Already)
			assert.Equal(t, out, again)
		})
	}
}

// A module importing WASI calls that only cpp-host #533 has (testenv's wasiguest
// imports every one) is rewritten, and the calls older hosts lack are named.
func TestRewriteNamesWhatNeedsNewerHosts(t *testing.T) {
	out, res, err := Rewrite(testenv.MustBuildGuest(t, "../../testenv/testdata/wasiguest"))
	require.NoError(t, err)
	require.NoError(t, Validate(out))
	assert.Contains(t, res.NeedsNewerHost, "fd_tell")
	assert.Contains(t, res.NeedsNewerHost, "clock_res_get")
	for _, name := range res.NeedsNewerHost {
		assert.NotContains(t, wasiSince427, name)
	}
	_, again, err := Rewrite(out)
	require.NoError(t, err)
	assert.True(t, again.Already)
	assert.Equal(t, res.NeedsNewerHost, again.NeedsNewerHost)
}

// The V8 restriction emulation: Go's syscall init calls fd_fdstat_get and
// fd_fdstat_set_flags from _initialize, which cpp-host before #427 does not allow, so
// the untouched module (instrumented) traps while starting; rewritten, those calls are
// inside the module and it starts and serves.
func TestEmulateRestrictedCallbacks(t *testing.T) {
	raw := testenv.MustBuildGuest(t, "../../examples/requireheader")
	rewritten, _, err := Rewrite(raw)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		wasm   []byte
		starts bool
	}{
		{"untouched", raw, false},
		{"rewritten", rewritten, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := EmulateRestrictedCallbacks(tc.wasm, StartAllowed63cb9c1, AllocAllowed63cb9c1)
			require.NoError(t, err)
			h, err := testenv.New(context.Background(), testenv.Options{}, testenv.Plugin{Name: "requireheader", Wasm: inst})
			if !tc.starts {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "_initialize")
				assert.Contains(t, err.Error(), "unreachable")
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { _ = h.Close(context.Background()) })
			for range 200 { // allocations with garbage collections in between
				assert.Equal(t, 200, h.MustDo(t, testenv.Request{Path: "/", Headers: [][2]string{{"x-tenant", "acme"}}}).Status)
			}
		})
	}
}

// Any file given to meshplug compat: every truncation and every single-byte change of
// the hand-built module is either refused with an error or rewritten into a module
// wazero validates — never a panic, never an invalid module.
func TestRewriteDamagedInputs(t *testing.T) {
	in := handBuilt(true)
	check := func(name string, b []byte) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%s: panic: %v", name, r)
			}
		}()
		out, _, err := Rewrite(b)
		if err == nil {
			require.NoError(t, validateOnlyWazero(out), name)
		}
	}
	for n := range len(in) {
		check("truncated", in[:n])
	}
	for i := 8; i < len(in); i++ {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(in)
			b[i] ^= x
			check("changed", b)
		}
	}
}

// The name section of the rewritten module: the kept functions keep their names at
// their new indices, and the new functions are named after the imports they replace.
func TestRewriteNames(t *testing.T) {
	out, _, err := Rewrite(handBuilt(true))
	require.NoError(t, err)
	secs, err := parseSections(out)
	require.NoError(t, err)
	names := map[uint32]string{}
	for _, s := range secs {
		if s.id != secCustom || s.name != "name" {
			continue
		}
		r := &reader{b: s.payload}
		for !r.done() {
			id := r.byte()
			sub := &reader{b: r.bytes(int(r.u32()))}
			if id != 1 {
				continue
			}
			for n := sub.u32(); n > 0; n-- {
				idx := sub.u32()
				names[idx] = sub.name()
			}
			require.NoError(t, sub.err)
		}
	}
	assert.Equal(t, map[uint32]string{
		0: "env.other", 1: "random_get",
		2: "poll", 3: "yield", 4: "setflags", 5: "fdstat", 6: "indirect", 7: "other", 8: "start", 9: "reffunc", 10: "pollfault",
		11: "wasi_snapshot_preview1.sched_yield (meshplug compat)",
		12: "wasi_snapshot_preview1.poll_oneoff (meshplug compat)",
		13: "wasi_snapshot_preview1.fd_fdstat_set_flags (meshplug compat)",
		14: "wasi_snapshot_preview1.fd_fdstat_get (meshplug compat)",
	}, names)
}

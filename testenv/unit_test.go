package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
)

// wasmWithImport returns a minimal module importing module.name as a () -> () function.
func wasmWithImport(module, name string) []byte {
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = append(b, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00) // type section: func () -> ()
	imp := []byte{0x01, byte(len(module))}
	imp = append(imp, module...)
	imp = append(imp, byte(len(name)))
	imp = append(imp, name...)
	imp = append(imp, 0x00, 0x00) // func, type 0
	b = append(b, 0x02, byte(len(imp)))
	return append(b, imp...)
}

func TestImportChecks(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		wasm []byte
		want string
	}{
		{wasmWithImport("wasi_snapshot_preview1", "sock_open"),
			`plugin "auth": import wasi_snapshot_preview1.sock_open is not provided by Envoy's proxy-wasm host`},
		// cpp-host has provided path_open (ENOENT) since before #427.
		{wasmWithImport("wasi_snapshot_preview1", "path_open"),
			`import wasi_snapshot_preview1.path_open has signature () -> (), Envoy's proxy-wasm host provides (i32,i32,i32,i32,i32,i64,i64,i32,i32) -> (i32)`},
		{wasmWithImport("env", "proxy_foo"), `import env.proxy_foo is not provided`},
		{wasmWithImport("other", "proxy_log"), `import other.proxy_log is not provided`},
		{wasmWithImport("env", "proxy_log"), `import env.proxy_log has signature () -> (), Envoy's proxy-wasm host provides (i32,i32,i32) -> (i32)`},
		{[]byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}, `does not export proxy_abi_version_0_2_1`},
	}
	for _, c := range cases {
		_, err := New(ctx, Options{}, Plugin{Name: "auth", Wasm: c.wasm})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want it to contain %q", err, c.want)
		}
	}
}

func TestSharedDataCAS(t *testing.T) {
	h := &Host{}
	h.shared.init()
	if _, _, ok := h.SharedData("vm", "k"); ok {
		t.Fatal("missing key found")
	}
	if st := h.SetSharedData("vm", "k", []byte("a"), 12345); st != abi.StatusOK {
		t.Fatalf("create with any cas: %v", st)
	}
	v, cas1, ok := h.SharedData("vm", "k")
	if !ok || string(v) != "a" || cas1 == 0 {
		t.Fatalf("get = %q %d %v", v, cas1, ok)
	}
	if st := h.SetSharedData("vm", "k", []byte("b"), cas1+1); st != abi.StatusCasMismatch {
		t.Fatalf("stale cas: %v", st)
	}
	if st := h.SetSharedData("vm", "k", []byte("b"), cas1); st != abi.StatusOK {
		t.Fatalf("matching cas: %v", st)
	}
	_, cas2, _ := h.SharedData("vm", "k")
	if cas2 == cas1 {
		t.Fatal("cas did not change on set")
	}
	if st := h.SetSharedData("vm", "k", []byte("c"), 0); st != abi.StatusOK {
		t.Fatalf("unconditional set: %v", st)
	}
	if _, _, ok := h.SharedData("other-vm", "k"); ok {
		t.Fatal("vm ids are not isolated")
	}
	h.shared.cas = 0xFFFFFFFF
	h.SetSharedData("vm", "k", nil, 0)
	if _, cas, _ := h.SharedData("vm", "k"); cas != 0xFFFFFFFF {
		t.Fatalf("cas = %d", cas)
	}
	h.SetSharedData("vm", "k", nil, 0)
	if _, cas, _ := h.SharedData("vm", "k"); cas != 1 {
		t.Fatalf("cas after wrap = %d, want 1 (0 is skipped)", cas)
	}
}

func TestFakeClockOrder(t *testing.T) {
	c := NewFakeClock(time.Unix(0, 0))
	var got []string
	rec := func(s string) func() {
		return func() { got = append(got, s+"@"+c.Now().Format("05.000")) }
	}
	c.schedule(2*time.Second, 2*time.Second, rec("tick"))
	c.AfterFunc(3*time.Second, rec("timer"))
	cancel := c.AfterFunc(time.Second, rec("cancelled"))
	cancel()
	c.AfterFunc(2*time.Second, rec("same-time-later"))
	c.Advance(5 * time.Second)
	want := "tick@02.000 same-time-later@02.000 timer@03.000 tick@04.000"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
	if !c.Now().Equal(time.Unix(5, 0)) {
		t.Fatalf("now = %v", c.Now())
	}
}

func TestHeaderCodecThroughHost(t *testing.T) {
	h := newHost(t, Options{}, raw(t, "a", "x"))
	v := h.workers[0].vms[0]
	pairs := []abi.Pair{{Key: "a", Value: "1"}, {Key: "b", Value: ""}, {Key: "", Value: "x"}}
	h.workers[0].mu.Lock()
	defer h.workers[0].mu.Unlock()
	// Put the encoding in guest memory via the guest allocator, read it back.
	enc := abi.EncodePairs(pairs)
	p, ok := v.alloc(uint32(len(enc)))
	if !ok || !v.mem.Write(p, enc) {
		t.Fatal("alloc/write failed")
	}
	b, ok := v.read(p, uint32(len(enc)))
	if !ok {
		t.Fatal("read failed")
	}
	back, err := abi.DecodePairs(b)
	if err != nil || len(back) != 3 || back[2] != pairs[2] || back[0] != pairs[0] {
		t.Fatalf("round trip = %v, %v", back, err)
	}
	// Out-of-bounds reads and writes are refused, not panics.
	if _, ok := v.read(v.mem.Size()-2, 4); ok {
		t.Error("read past the end succeeded")
	}
	if st := v.copyOut([]byte("x"), v.mem.Size(), 0); st != abi.StatusInvalidMemoryAccess {
		t.Errorf("copyOut to a bad pointer = %v", st)
	}
}

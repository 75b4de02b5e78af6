//go:build wasip1

package main

import (
	"errors"
	"strconv"

	"github.com/meshplug/meshplug/filters/abi"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

func init() { pw.SetVMContext(vm{}) }

type vm struct{ pw.DefaultVMContext }

func (vm) NewPluginContext(uint32) pw.PluginContext { return &plugin{} }

type plugin struct {
	pw.DefaultPluginContext
	mode string
}

func (p *plugin) OnPluginStart(int) bool {
	b, err := pw.PluginConfiguration.Bytes()
	if err != nil {
		return false
	}
	p.mode = string(b)
	switch p.mode {
	case "noop", "headers", "get16", "pairs16", "remove16":
		return true
	case "cas":
		return initCas()
	}
	pw.LogCriticalf("benchmark guest: unknown mode %q (want noop, headers or cas)", p.mode)
	return false
}

var (
	noopStream    = &noop{}
	headersStream = &headers{}
	casStream     = &cas{}
	getStream     = &callsStream{mode: "get16"}
	pairsStream   = &callsStream{mode: "pairs16"}
	removeStream  = &callsStream{mode: "remove16"}
)

// Streams carry no state, so one value serves every stream: no allocation per request.
func (p *plugin) NewHttpContext(uint32) pw.HttpContext {
	switch p.mode {
	case "headers":
		return headersStream
	case "cas":
		return casStream
	case "get16":
		return getStream
	case "pairs16":
		return pairsStream
	case "remove16":
		return removeStream
	}
	return noopStream
}

type noop struct{ pw.DefaultHttpContext }

type headers struct{ pw.DefaultHttpContext }

func (headers) OnHttpRequestHeaders(int, bool) pw.Action {
	a, _ := pw.RequestHeaders.Get("x-a")
	b, _ := pw.RequestHeaders.Get("x-b")
	c, _ := pw.RequestHeaders.Get(":path")
	if len(a)+len(b)+len(c) > 0 {
		pw.RequestHeaders.Add("x-seen", "1")
	}
	return pw.Continue
}

// callsStream makes 16 host calls of one kind per request, so that the difference to
// the no-op mode, divided by 16, is the cost of one such call (BenchmarkCalls).
type callsStream struct {
	pw.DefaultHttpContext
	mode string
	buf  []byte
}

func (s *callsStream) OnHttpRequestHeaders(int, bool) pw.Action {
	for range 16 {
		switch s.mode {
		case "get16": // returns data: the host allocates in the guest, Go copies to a string
			v, _ := pw.RequestHeaders.Get("x-a")
			sink += len(v)
		case "pairs16": // returns data into a reused buffer: no Go allocation
			v, _ := pw.RequestHeaders.AppendAll(s.buf[:0])
			s.buf = v
			sink += len(v)
		case "remove16": // returns nothing (the header is absent)
			pw.RequestHeaders.Remove("x-absent")
		}
	}
	return pw.Continue
}

// sink keeps the measured reads from being optimised away; nothing reads it.
//
//lint:ignore U1000 written, never read, on purpose (a benchmark sink)
var sink int

type cas struct{ pw.DefaultHttpContext }

// foreignCas is the cas of another entry (casMeta): a create with it cannot overwrite
// an entry that exists. In Envoy (proxy-wasm-cpp-host SharedData::set) a set on an
// absent key ignores cas, so two VMs that both read "not found" and create with cas 0
// would both succeed and one increment would be lost; with a non-zero cas, the second
// create finds the entry and fails with CasMismatch, and its loop reads again.
var foreignCas uint32

const casMeta = "counter-meta"

func initCas() bool {
	if err := pw.SetSharedData(casMeta, []byte("cas"), 0); err != nil {
		pw.LogCriticalf("benchmark guest: writing %s: %v", casMeta, err)
		return false
	}
	_, c, err := pw.GetSharedData(casMeta)
	if err != nil || c == 0 {
		pw.LogCriticalf("benchmark guest: reading %s: cas %d, %v", casMeta, c, err)
		return false
	}
	foreignCas = c
	return true
}

// OnHttpRequestHeaders increments the counter named by the x-key header (default
// "counter").
func (cas) OnHttpRequestHeaders(int, bool) pw.Action {
	key, ok := pw.RequestHeaders.Get("x-key")
	if !ok || key == "" {
		key = "counter"
	}
	for {
		v, c, err := pw.GetSharedData(key)
		if errors.Is(err, abi.StatusNotFound) {
			if w, _ := pw.RequestHeaders.Get("x-widen-race"); w != "" {
				// Tests only: dawdle before creating, so that other VMs read "not
				// found" too and the creation race really happens.
				for i := 0; i < 300; i++ {
					pw.GetSharedData(casMeta)
				}
			}
			c = foreignCas
		} else if err != nil {
			return pw.Continue
		}
		n, _ := strconv.Atoi(string(v))
		err = pw.SetSharedData(key, strconv.AppendInt(v[:0], int64(n+1), 10), c)
		if !errors.Is(err, abi.StatusCasMismatch) {
			return pw.Continue
		}
	}
}

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
	case "cas":
		// Create the counter before any request: a write with CAS token 0 is
		// unconditional, so two workers creating it on their first requests would lose
		// an increment. Every worker VM starts before the first request.
		if _, _, err := pw.GetSharedData("counter"); errors.Is(err, abi.StatusNotFound) {
			if err := pw.SetSharedData("counter", []byte("0"), 0); err != nil {
				return false
			}
		}
		return true
	case "noop", "headers":
		return true
	}
	pw.LogCriticalf("benchmark guest: unknown mode %q (want noop, headers or cas)", p.mode)
	return false
}

var (
	noopStream    = &noop{}
	headersStream = &headers{}
	casStream     = &cas{}
)

// Streams carry no state, so one value serves every stream: no allocation per request.
func (p *plugin) NewHttpContext(uint32) pw.HttpContext {
	switch p.mode {
	case "headers":
		return headersStream
	case "cas":
		return casStream
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

type cas struct{ pw.DefaultHttpContext }

func (cas) OnHttpRequestHeaders(int, bool) pw.Action {
	for {
		v, c, err := pw.GetSharedData("counter")
		if err != nil && !errors.Is(err, abi.StatusNotFound) {
			return pw.Continue
		}
		n, _ := strconv.Atoi(string(v))
		err = pw.SetSharedData("counter", strconv.AppendInt(v[:0], int64(n+1), 10), c)
		if !errors.Is(err, abi.StatusCasMismatch) {
			return pw.Continue
		}
	}
}

//go:build wasip1

package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/fault/engine"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

// Fault fails open (the binding's default): a bug lets the request through unfaulted.
func init() { pw.SetVMContext(vm{}) }

type vm struct{ pw.DefaultVMContext }

func (vm) NewPluginContext(id uint32) pw.PluginContext { return &plugin{id: id} }

// plugin is one fault configuration in one worker VM.
type plugin struct {
	pw.DefaultPluginContext
	id      uint32
	cfg     *config.Config
	rng     *mrand.Rand
	counter engine.Counter
	m       metrics

	queue   engine.DelayQueue
	delayed map[uint32]*stream // queued streams by context id
	due     []*engine.Delayed
	tickOn  bool
	free    []*stream
}

type metrics struct {
	delays, aborts, overflow pw.Counter
	active                   pw.Gauge
}

func (p *plugin) OnPluginStart(int) bool {
	raw, err := pw.PluginConfiguration.Bytes()
	if err != nil {
		pw.LogCriticalf("fault: reading the plugin configuration: %v", err)
		return false
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		pw.LogCriticalf("fault: invalid configuration: %v", err)
		return false
	}
	if err := p.m.define(); err != nil {
		pw.LogCriticalf("fault: defining metrics: %v", err)
		return false
	}
	seed, gen := cfg.Seed, uint64(0)
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil { // WASI random_get
		pw.LogCriticalf("fault: reading random bytes: %v", err)
		return false
	}
	if !cfg.HasSeed {
		seed = binary.LittleEndian.Uint64(b[:8])
	}
	gen = binary.LittleEndian.Uint64(b[8:])
	p.cfg, p.rng, p.delayed = cfg, engine.NewRand(seed), map[uint32]*stream{}
	if cfg.Capped {
		name, err := pw.GetPropertyString("plugin_name")
		if err != nil {
			pw.LogCriticalf("fault: reading plugin_name: %v", err)
			return false
		}
		p.counter = engine.Counter{Store: sharedStore{}, Key: CounterKeyPrefix + name, Gen: gen}
		if err := p.counter.Init(); err != nil {
			pw.LogCriticalf("fault: creating the shared counter %q: %v", p.counter.Key, err)
			return false
		}
	}
	pw.LogInfof("fault: %d rule(s), capped=%v", len(cfg.Rules), cfg.Capped)
	return true
}

func (m *metrics) define() (err error) {
	def := func(name string) pw.Counter {
		c, e := pw.DefineCounter(name)
		if e != nil && err == nil {
			err = fmt.Errorf("%s: %w", name, e)
		}
		return c
	}
	m.delays = def(MetricDelaysInjected)
	m.aborts = def(MetricAbortsInjected)
	m.overflow = def(MetricFaultsOverflow)
	g, e := pw.DefineGauge(MetricActiveFaults)
	if e != nil && err == nil {
		err = fmt.Errorf("%s: %w", MetricActiveFaults, e)
	}
	m.active = g
	return err
}

// sharedStore is engine.Store over proxy-wasm shared data.
type sharedStore struct{}

func (sharedStore) Get(key string) ([]byte, uint32, bool, error) {
	v, cas, err := pw.GetSharedData(key)
	if errors.Is(err, abi.StatusNotFound) {
		return nil, 0, false, nil
	}
	return v, cas, err == nil, err
}

func (sharedStore) Set(key string, value []byte, cas uint32) (bool, error) {
	err := pw.SetSharedData(key, value, cas)
	if errors.Is(err, abi.StatusCasMismatch) {
		return true, nil
	}
	return false, err
}

// NewHttpContext hands out a recycled stream when there is one.
func (p *plugin) NewHttpContext(id uint32) pw.HttpContext {
	var s *stream
	if n := len(p.free); n > 0 {
		s, p.free = p.free[n-1], p.free[:n-1]
	} else {
		s = &stream{p: p}
	}
	s.id = id
	return s
}

// delay queues s until now+d and makes sure the tick runs.
func (p *plugin) delay(s *stream, d time.Duration) {
	s.wait = engine.NewDelayed(s.id, pw.Now().Add(d))
	p.queue.Push(s.wait)
	p.delayed[s.id] = s
	if !p.tickOn {
		if err := pw.SetTickPeriod(TickPeriod); err != nil {
			pw.LogErrorf("fault: setting the tick period: %v", err)
		}
		p.tickOn = true
	}
}

// undelay takes s out of the queue (stream done during its delay).
func (p *plugin) undelay(s *stream) {
	p.queue.Remove(s.wait)
	delete(p.delayed, s.id)
	s.wait = nil
}

// OnTick resumes (or aborts) every delayed stream that is due, and stops the tick
// when none is left. Proxy-wasm-cpp-host/Envoy re-arm the tick timer after each
// proxy_on_tick with the current period (Wasm::tickHandler); a period of 0 stops it.
func (p *plugin) OnTick() {
	p.due = p.queue.PopDue(pw.Now(), p.due[:0])
	for i, d := range p.due {
		p.due[i] = nil
		s := p.delayed[d.ID]
		delete(p.delayed, d.ID)
		if s == nil || s.wait != d {
			continue
		}
		s.wait = nil
		if err := pw.RunAs(s.id, s.afterDelay); err != nil {
			pw.LogErrorf("fault: resuming stream %d: %v", s.id, err)
			s.release()
		}
	}
	if p.queue.Len() == 0 && p.tickOn {
		if err := pw.SetTickPeriod(0); err != nil {
			pw.LogErrorf("fault: stopping the tick: %v", err)
		}
		p.tickOn = false
	}
}

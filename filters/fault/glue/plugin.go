// Package glue is fault's proxy-wasm glue: the plugin and stream contexts that
// read the configuration (../config), define the metrics, extract what the engine
// (../engine) decides on and act on its verdict through the binding
// (filters/proxywasm). It is importable so that one module can hold several filters:
// fault.wasm (../main.go) registers it as its only filter, the bundle meshplug.wasm
// (filters/meshplug) under its root id.
package glue

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/fault/engine"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

// RootID is fault's root id in the bundle (meshplug.wasm): Envoy's root_id, Istio's
// WasmPlugin pluginName.
const RootID = "fault"

// Policy is fault's failure policy. Fault fails open: a bug lets the request through
// unfaulted.
const Policy = pw.FailOpen

// Register adds fault to the module under rootID with its Policy. rootID "" makes it the
// module's default filter, serving plugins of any root id (the one-filter module
// fault.wasm); the bundle registers it under RootID. Call it from an init function.
func Register(rootID string) {
	pw.Register(rootID, vm{}, Policy)
}

// Metric names (Envoy's fault filter stats under meshplug.fault.).
const (
	MetricDelaysInjected = "meshplug.fault.delays_injected"
	MetricAbortsInjected = "meshplug.fault.aborts_injected"
	MetricFaultsOverflow = "meshplug.fault.faults_overflow"
	MetricActiveFaults   = "meshplug.fault.active_faults"
)

// CounterKeyPrefix + the plugin name is the shared-data key of the active-fault
// counter.
const CounterKeyPrefix = "meshplug.fault.active_faults."

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
	// period is the tick period in force (0: off); the next tick fires at nextTick.
	period   time.Duration
	nextTick time.Time
	// held is the number of slots this VM's streams hold; renewed is when its lease
	// in the shared counter was last extended.
	held    int
	renewed time.Time
	streams pw.StreamPool[stream]
}

type metrics struct {
	delays, aborts, overflow pw.Counter
	active                   pw.Gauge
}

func (p *plugin) OnPluginStart(int) bool {
	cfg, ok := pw.LoadPluginConfig("fault", config.Parse)
	if !ok {
		return false
	}
	if err := p.m.define(); err != nil {
		pw.LogCriticalf("fault: defining metrics: %v", err)
		return false
	}
	seed := cfg.Seed
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil { // WASI random_get
		pw.LogCriticalf("fault: reading random bytes: %v", err)
		return false
	}
	if !cfg.HasSeed {
		seed = binary.LittleEndian.Uint64(b[:8])
	}
	stamp := binary.LittleEndian.Uint64(b[8:]) | 1 // this VM's lease id, never 0
	p.cfg, p.rng, p.delayed = cfg, engine.NewRand(seed), map[uint32]*stream{}
	if cfg.Capped {
		name, err := pw.GetPropertyString("plugin_name")
		if err != nil {
			pw.LogCriticalf("fault: reading plugin_name: %v", err)
			return false
		}
		p.counter = engine.Counter{Store: sharedStore{}, Key: CounterKeyPrefix + name, VM: stamp, TTL: engine.DefaultLeaseTTL}
		if err := p.counter.Init(); err != nil {
			pw.LogCriticalf("fault: creating the shared counter %q: %v", p.counter.Key, err)
			return false
		}
	}
	pw.LogInfof("fault: %d rule(s), capped=%v", len(cfg.Rules), cfg.Capped)
	return true
}

func (m *metrics) define() error {
	d := pw.ScopedMetrics("meshplug.fault.", RootID)
	m.delays = d.Counter(MetricDelaysInjected)
	m.aborts = d.Counter(MetricAbortsInjected)
	m.overflow = d.Counter(MetricFaultsOverflow)
	m.active = d.Gauge(MetricActiveFaults)
	return d.Err()
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
	s := p.streams.Get()
	if s == nil {
		s = &stream{p: p}
	}
	s.id = id
	return s
}

// delay queues s until now+d and arms the tick if s is now the earliest.
func (p *plugin) delay(s *stream, d time.Duration) {
	now := pw.Now()
	s.wait = engine.NewDelayed(s.id, now.Add(d))
	p.queue.Push(s.wait)
	p.delayed[s.id] = s
	if p.period == 0 || s.wait.Due.Before(p.nextTick) {
		p.arm(now)
	}
}

// arm sets the tick to fire when the earliest delayed stream is due, or stops it when
// none is left. In Envoy (Wasm::setTimerPeriod in source/extensions/common/wasm/wasm.cc)
// each proxy_set_tick_period_milliseconds call replaces the timer with one armed for
// the new period from now, a period of 0 stops it, and Wasm::tickHandler re-arms the
// timer with the period in force after every proxy_on_tick.
func (p *plugin) arm(now time.Time) {
	due, ok := p.queue.Next()
	var period time.Duration
	if ok {
		period = engine.TickFor(due, now)
		// Delayed streams hold their slots for long: tick often enough to renew the
		// VM's lease in the shared counter.
		if p.cfg.Capped && period > renewEvery {
			period = renewEvery
		}
	}
	if period == p.period && (period == 0 || p.nextTick.Equal(now.Add(period))) {
		return // armed as wanted (always so right after a tick with the same period)
	}
	// From a stream callback too: the host keys the timer by the caller's root
	// context (proxy-wasm-cpp-host ContextBase::setTimerPeriod uses root_context()).
	if err := pw.SetTickPeriod(period); err != nil {
		pw.LogErrorf("fault: setting the tick period to %s: %v", period, err)
	}
	p.period, p.nextTick = period, now.Add(period)
}

// undelay takes s out of the queue (stream done during its delay).
func (p *plugin) undelay(s *stream) {
	p.queue.Remove(s.wait)
	delete(p.delayed, s.id)
	s.wait = nil
}

// OnTick resumes (or aborts) every delayed stream that is due, then arms the tick for
// the next one.
func (p *plugin) OnTick() {
	now := pw.Now()
	p.nextTick = now.Add(p.period) // the host re-arms the timer with the same period
	p.due = p.queue.PopDue(now, p.due[:0])
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
	if p.cfg.Capped && p.held > 0 && now.Sub(p.renewed) >= renewEvery/2 {
		if err := p.counter.Renew(now); err != nil {
			pw.LogWarnf("fault: renewing the active-fault lease: %v", err)
		}
		p.renewed = now
	}
	p.arm(now)
}

// renewEvery is the longest time between two renewals of a VM's lease while its
// streams are delayed (a third of its lifetime).
const renewEvery = engine.DefaultLeaseTTL / 3

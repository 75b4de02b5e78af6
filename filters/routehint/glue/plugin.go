// Package glue is routehint's proxy-wasm glue: the plugin and stream contexts that
// read the configuration (../config), define the metrics, extract what the engine
// (../engine) decides on and act on its verdict through the binding
// (filters/proxywasm). It is importable so that one module can hold several filters:
// routehint.wasm (../main.go) registers it as its only filter, the bundle meshplug.wasm
// (filters/meshplug) under its root id.
package glue

import (
	"math/rand/v2"

	pw "github.com/meshplug/meshplug/filters/proxywasm"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/filters/routehint/engine"
)

// RootID is routehint's root id in the bundle (meshplug.wasm): Envoy's root_id, Istio's
// WasmPlugin pluginName.
const RootID = "routehint"

// Policy is routehint's failure policy. routehint fails open: a panic in a callback
// lets the request through untagged, and the VirtualService's default route serves it.
// The client's hint headers are removed before anything else runs, so a failure never
// forwards them.
const Policy = pw.FailOpen

// Register adds routehint to the module under rootID with its Policy. rootID "" makes it the
// module's default filter, serving plugins of any root id (the one-filter module
// routehint.wasm); the bundle registers it under RootID. Call it from an init function.
func Register(rootID string) {
	pw.Register(rootID, vm{}, Policy)
}

type vm struct{ pw.DefaultVMContext }

func (vm) NewPluginContext(uint32) pw.PluginContext { return &plugin{} }

// plugin is one routehint configuration in one worker VM.
type plugin struct {
	pw.DefaultPluginContext
	cfg     *config.Config
	eng     *engine.Engine
	m       metrics
	streams pw.StreamPool[stream]
}

type metrics struct {
	rule, target                                     []pw.Counter // by rule index, by target index
	noMatch, ovAccepted, ovRejected, spoofed, keyMis pw.Counter
}

func (p *plugin) OnPluginStart(int) bool {
	cfg, ok := pw.LoadPluginConfig("routehint", config.Parse)
	if !ok {
		return false
	}
	if err := p.m.define(cfg); err != nil {
		pw.LogCriticalf("routehint: defining metrics: %v", err)
		return false
	}
	p.cfg, p.eng = cfg, engine.New(cfg, rand.Uint64)
	return true
}

func (m *metrics) define(cfg *config.Config) error {
	d := pw.ScopedMetrics("meshplug.routehint.", RootID)
	m.rule = make([]pw.Counter, len(cfg.Rules))
	for i, r := range cfg.Rules {
		m.rule[i] = d.Counter(engine.MetricRulePrefix + r.Name + engine.MetricRuleMatched)
	}
	m.target = make([]pw.Counter, len(cfg.Targets))
	for i, t := range cfg.Targets {
		m.target[i] = d.Counter(engine.MetricTargetPrefix + t.Name + engine.MetricTargetChosen)
	}
	m.noMatch = d.Counter(engine.MetricNoMatch)
	m.ovAccepted = d.Counter(engine.MetricOverrideAccepted)
	m.ovRejected = d.Counter(engine.MetricOverrideRejected)
	m.spoofed = d.Counter(engine.MetricSpoofedRemoved)
	m.keyMis = d.Counter(engine.MetricKeyMissing)
	return d.Err()
}

// NewHttpContext hands out a recycled stream when there is one.
func (p *plugin) NewHttpContext(uint32) pw.HttpContext {
	if s := p.streams.Get(); s != nil {
		return s
	}
	return &stream{p: p}
}

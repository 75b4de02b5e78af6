//go:build wasip1

package main

import (
	"math/rand/v2"

	pw "github.com/meshplug/meshplug/filters/proxywasm"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/filters/routehint/engine"
)

// routehint fails open (the binding's default): a panic in a callback lets the request
// through untagged, and the VirtualService's default route serves it. The client's hint
// headers are removed before anything else runs, so a failure never forwards them.
func init() { pw.SetVMContext(vm{}) }

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
	var d pw.MetricDefs
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

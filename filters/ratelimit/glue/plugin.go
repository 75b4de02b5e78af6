// Package glue is ratelimit's proxy-wasm glue: the plugin and stream contexts that
// read the configuration (../config), define the metrics, extract what the engine
// (../engine) decides on and act on its verdict through the binding
// (filters/proxywasm). It is importable so that one module can hold several filters:
// ratelimit.wasm (../main.go) registers it as its only filter, the bundle meshplug.wasm
// (filters/meshplug) under its root id.
package glue

import (
	pw "github.com/meshplug/meshplug/filters/proxywasm"
	"github.com/meshplug/meshplug/filters/ratelimit/bucket"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine"
)

// RootID is ratelimit's root id in the bundle (meshplug.wasm): Envoy's root_id, Istio's
// WasmPlugin pluginName.
const RootID = "ratelimit"

// Policy is ratelimit's failure policy. Rate limiting fails open: a panic in a callback
// lets the request through rather than turning a bug into an outage.
const Policy = pw.FailOpen

// Register adds ratelimit to the module under rootID with its Policy. rootID "" makes it the
// module's default filter, serving plugins of any root id (the one-filter module
// ratelimit.wasm); the bundle registers it under RootID. Call it from an init function.
func Register(rootID string) {
	pw.Register(rootID, vm{}, Policy)
}

type vm struct{ pw.DefaultVMContext }

func (vm) NewPluginContext(uint32) pw.PluginContext { return &plugin{} }

// Namespace prefixes every shared-data key of the filter; the plugin's name follows,
// so two ratelimit plugins sharing a vm_id never share buckets.
const Namespace = "meshplug.ratelimit/"

// plugin is one ratelimit configuration in one worker VM.
type plugin struct {
	pw.DefaultPluginContext
	cfg     *config.Config
	eng     *engine.Engine
	m       metrics
	streams pw.StreamPool[stream]
}

// Metric names (Envoy style; see README.md).
const (
	metricPrefix      = "meshplug.ratelimit."
	metricKeysTracked = metricPrefix + "keys_tracked"
	metricKeysEvicted = metricPrefix + "keys_evicted"
	metricCASRetries  = metricPrefix + "cas_retries"
	metricErrors      = metricPrefix + "errors"
	// Global mode: the rate limit service's answers, as Envoy's ratelimit filter
	// counts them (cluster.<name>.ratelimit.ok, over_limit, error,
	// failure_mode_allowed).
	metricServiceOK                 = metricPrefix + "service.ok"
	metricServiceOverLimit          = metricPrefix + "service.over_limit"
	metricServiceError              = metricPrefix + "service.error"
	metricServiceFailureModeAllowed = metricPrefix + "service.failure_mode_allowed"
	// Requests the local pre-check rejected without a call.
	metricPrecheckLimited = metricPrefix + "service.precheck_limited"
)

type metrics struct {
	keysTracked                    pw.Gauge
	keysEvicted, casRetries, error pw.Counter
	// per rule index, per engine.Event
	rules [][3]pw.Counter
	// global mode only
	serviceOK, serviceOverLimit, serviceError, serviceFailureModeAllowed, precheckLimited pw.Counter
}

// sharedData is bucket.Store on the proxy's shared data.
type sharedData struct{}

func (sharedData) Get(dst []byte, key string) ([]byte, uint32, error) {
	return pw.AppendSharedData(dst, key)
}
func (sharedData) Set(key string, v []byte, cas uint32) error {
	return pw.SetSharedData(key, v, cas)
}

func (p *plugin) OnPluginStart(int) bool {
	cfg, ok := pw.LoadPluginConfig("ratelimit", config.Parse)
	if !ok {
		return false
	}
	name, err := pw.GetPropertyString("plugin_name")
	if err != nil {
		pw.LogCriticalf("ratelimit: reading the plugin_name property: %v", err)
		return false
	}
	if err := p.m.define(cfg); err != nil {
		pw.LogCriticalf("ratelimit: defining metrics: %v", err)
		return false
	}
	if cfg.Global != nil && !cfg.Global.LocalPrecheck {
		// The service keeps the counters: no shared-data table.
		p.cfg, p.eng = cfg, engine.New(cfg, nil)
		return true
	}
	table := bucket.NewTable(sharedData{}, Namespace+name, cfg.Groups)
	if err := table.Init([]byte(cfg.Domain)); err != nil {
		pw.LogCriticalf("ratelimit: shared data: %v", err)
		return false
	}
	p.cfg, p.eng = cfg, engine.New(cfg, table)
	return true
}

func (m *metrics) define(cfg *config.Config) error {
	d := pw.ScopedMetrics(metricPrefix, RootID)
	m.keysTracked = d.Gauge(metricKeysTracked)
	m.keysEvicted = d.Counter(metricKeysEvicted)
	m.casRetries = d.Counter(metricCASRetries)
	m.error = d.Counter(metricErrors)
	if cfg.Global != nil {
		m.serviceOK = d.Counter(metricServiceOK)
		m.serviceOverLimit = d.Counter(metricServiceOverLimit)
		m.serviceError = d.Counter(metricServiceError)
		m.serviceFailureModeAllowed = d.Counter(metricServiceFailureModeAllowed)
		if cfg.Global.LocalPrecheck {
			m.precheckLimited = d.Counter(metricPrecheckLimited)
		}
	}
	m.rules = make([][3]pw.Counter, len(cfg.Rules))
	for i, r := range cfg.Rules {
		m.rules[i][engine.EventAllowed] = d.Counter(metricPrefix + r.Name + ".allowed")
		m.rules[i][engine.EventLimited] = d.Counter(metricPrefix + r.Name + ".limited")
		m.rules[i][engine.EventShadowLimited] = d.Counter(metricPrefix + r.Name + ".shadow_limited")
	}
	return d.Err()
}

// NewHttpContext hands out a recycled stream when there is one: an allocation costs
// about a microsecond in a Go wasm guest.
func (p *plugin) NewHttpContext(uint32) pw.HttpContext {
	if s := p.streams.Get(); s != nil {
		return s
	}
	s := &stream{p: p}
	s.onReply = s.reply
	return s
}

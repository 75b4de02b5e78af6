// Package glue is auth's proxy-wasm glue: the plugin and stream contexts that
// read the configuration (../config), define the metrics, extract what the engine
// (../engine) decides on and act on its verdict through the binding
// (filters/proxywasm). It is importable so that one module can hold several filters:
// auth.wasm (../main.go) registers it as its only filter, the bundle meshplug.wasm
// (filters/meshplug) under its root id.
package glue

import (
	"fmt"
	"time"

	"github.com/meshplug/meshplug/filters/abi"
	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/auth/engine"
	pw "github.com/meshplug/meshplug/filters/proxywasm"
)

// RootID is auth's root id in the bundle (meshplug.wasm): Envoy's root_id, Istio's
// WasmPlugin pluginName.
const RootID = "auth"

// Policy is auth's failure policy. Auth fails closed: a panic in a callback answers 500
// instead of letting the request through unauthenticated.
const Policy = pw.FailClosed

// Register adds auth to the module under rootID with its Policy. rootID "" makes it the
// module's default filter, serving plugins of any root id (the one-filter module
// auth.wasm); the bundle registers it under RootID. Call it from an init function.
func Register(rootID string) {
	pw.Register(rootID, vm{}, Policy)
}

type vm struct{ pw.DefaultVMContext }

func (vm) NewPluginContext(id uint32) pw.PluginContext { return &plugin{id: id} }

// jwksTick is how often the plugin checks whether a remote JWKS is due for refresh
// (or for a retry after backoff).
const jwksTick = time.Second

// plugin is one auth configuration in one worker VM.
type plugin struct {
	pw.DefaultPluginContext
	id  uint32
	cfg *config.Config
	eng *engine.Engine
	m   metrics

	// waiting holds the streams parked until a provider's JWKS fetch completes, by
	// provider index.
	waiting map[int][]*stream
	due     []*config.Provider
	streams pw.StreamPool[stream]
}

type metrics struct {
	allowed, cacheHit, cacheMiss, fetchOK, fetchFail pw.Counter
	denied                                           map[engine.Reason]pw.Counter
}

func (p *plugin) OnPluginStart(int) bool {
	cfg, ok := pw.LoadPluginConfig("auth", config.Parse)
	if !ok {
		return false
	}
	if err := p.m.define(); err != nil {
		pw.LogCriticalf("auth: defining metrics: %v", err)
		return false
	}
	p.cfg, p.eng, p.waiting = cfg, engine.New(cfg), map[int][]*stream{}
	// Fetch remote key sets now rather than on the first request, and keep them fresh
	// from the tick.
	hasRemote := false
	for _, pr := range cfg.ProviderList {
		if pr.RemoteJWKS != nil {
			hasRemote = true
			p.fetchJWKS(pr)
		}
	}
	if hasRemote {
		if err := pw.SetTickPeriod(jwksTick); err != nil {
			pw.LogCriticalf("auth: setting the tick period: %v", err)
			return false
		}
	}
	return true
}

func (m *metrics) define() error {
	d := pw.ScopedMetrics("meshplug.auth.", RootID)
	m.allowed = d.Counter(engine.MetricAllowed)
	m.cacheHit = d.Counter(engine.MetricCacheHit)
	m.cacheMiss = d.Counter(engine.MetricCacheMiss)
	m.fetchOK = d.Counter(engine.MetricJWKSFetchSuccess)
	m.fetchFail = d.Counter(engine.MetricJWKSFetchFailure)
	m.denied = make(map[engine.Reason]pw.Counter, len(engine.AllReasons))
	for _, r := range engine.AllReasons {
		m.denied[r] = d.Counter(engine.MetricDeniedPrefix + string(r))
	}
	return d.Err()
}

// OnTick refreshes the key sets that are due (before expiry, or after backoff).
func (p *plugin) OnTick() {
	p.due = p.eng.Keys.DueRefreshes(p.cfg, pw.Now(), p.due[:0])
	for _, pr := range p.due {
		p.fetchJWKS(pr)
	}
}

// NewHttpContext hands out a recycled stream when there is one.
func (p *plugin) NewHttpContext(id uint32) pw.HttpContext {
	s := p.streams.Get()
	if s == nil {
		s = newStream(p)
	}
	s.id = id
	return s
}

// fetchJWKS starts a fetch of pr's key set as the plugin's root context, so the fetch
// completes even if the stream that needed it goes away.
func (p *plugin) fetchJWKS(pr *config.Provider) {
	r := pr.RemoteJWKS
	p.eng.Keys.State(pr).OnFetchStart(pw.Now())
	var dispatchErr error
	err := pw.RunAs(p.id, func() {
		_, dispatchErr = pw.DispatchHttpCall(r.Cluster, jwksRequest(r), nil, nil, r.Timeout,
			func(numHeaders, bodySize, _ int) { p.onJWKS(pr, numHeaders, bodySize) })
	})
	if err == nil {
		err = dispatchErr
	}
	if err != nil {
		p.jwksFailed(pr, fmt.Errorf("dispatching to cluster %q: %w", r.Cluster, err))
	}
}

func jwksRequest(r *config.RemoteJWKS) []abi.Pair {
	return []abi.Pair{{Key: ":method", Value: "GET"}, {Key: ":path", Value: r.Path},
		{Key: ":authority", Value: r.Authority}, {Key: "accept", Value: "application/json"}}
}

func (p *plugin) onJWKS(pr *config.Provider, numHeaders, bodySize int) {
	if numHeaders == 0 {
		p.jwksFailed(pr, fmt.Errorf("no response (connection failure or timeout)"))
		return
	}
	status, _ := pw.HttpCallResponseHeaders.Get(":status")
	if status != "200" {
		p.jwksFailed(pr, fmt.Errorf("status %s", status))
		return
	}
	body, err := pw.HttpCallResponseBody.Get(0, bodySize)
	if err == nil {
		err = p.eng.Keys.State(pr).OnFetchSuccess(body, pw.Now())
	}
	if err != nil {
		p.jwksFailed(pr, fmt.Errorf("bad key set: %w", err))
		return
	}
	p.m.fetchOK.Increment(1)
	pw.LogDebugf("auth: provider %s: fetched %d bytes of JWKS", pr.Name, bodySize)
	p.wake(pr)
}

func (p *plugin) jwksFailed(pr *config.Provider, err error) {
	p.m.fetchFail.Increment(1)
	st := p.eng.Keys.State(pr)
	st.OnFetchFailure(pw.Now(), err)
	pw.LogWarnf("auth: provider %s: JWKS fetch from %s failed: %v (stale keys kept: %v; next attempt at %s)",
		pr.Name, pr.RemoteJWKS.URI, err, st.Keys() != nil, st.RetryAt().UTC().Format("15:04:05.000"))
	p.wake(pr)
}

// wake decides again every stream parked on pr's key set.
func (p *plugin) wake(pr *config.Provider) {
	parked := p.waiting[pr.Index]
	delete(p.waiting, pr.Index)
	for _, s := range parked {
		s.parked = false
		if err := pw.RunAs(s.id, s.resume); err != nil {
			pw.LogErrorf("auth: resuming stream %d: %v", s.id, err)
		}
	}
}

func (p *plugin) park(s *stream, pr *config.Provider) {
	s.parked, s.parkedOn = true, pr.Index
	p.waiting[pr.Index] = append(p.waiting[pr.Index], s)
}

func (p *plugin) unpark(s *stream) {
	list := p.waiting[s.parkedOn]
	for i, w := range list {
		if w == s {
			p.waiting[s.parkedOn] = append(list[:i], list[i+1:]...)
			break
		}
	}
	s.parked = false
}

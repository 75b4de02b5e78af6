package v1alpha1

import (
	"sort"

	authconfig "github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/configjson"
	faultconfig "github.com/meshplug/meshplug/filters/fault/config"
	ratelimitconfig "github.com/meshplug/meshplug/filters/ratelimit/config"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
)

// Istio WasmPlugin phases (extensions.istio.io/v1alpha1 PluginPhase): where in the
// proxy's HTTP filter chain a plugin is inserted. Within a phase, a higher priority
// runs first. Chain order: AUTHN plugins, Istio authn, AUTHZ plugins, Istio RBAC,
// STATS plugins, Istio stats, then UNSPECIFIED_PHASE plugins where the control plane
// puts them (in practice at the end, before the router).
//
// Reference: https://istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin/#PluginPhase
const (
	PhaseAuthn       = "AUTHN"
	PhaseAuthz       = "AUTHZ"
	PhaseStats       = "STATS"
	PhaseUnspecified = "UNSPECIFIED_PHASE"
)

// Traffic directions of Section.Mode (Istio's WorkloadMode names).
const (
	ModeServer = "SERVER"
	ModeClient = "CLIENT"
)

// Section is one filter section of a TrafficPolicy: which field of the spec holds it,
// which module runs it, where it sits in the filter chain, how it fails, and the
// filter's own validation. The renderers, the controller and `meshplug validate`
// iterate Sections, so adding a filter is a spec field, one entry here and its name in
// the spec's "at least one section" CEL rule (types.go); `make generate` does the rest.
//
// +kubebuilder:object:generate=false
type Section struct {
	// Field is the section's JSON name in the spec ("auth").
	Field string
	// Filter is the module: filters/<Filter>, built to <Filter>.wasm.
	Filter string
	// Phase and Priority place the filter in Istio's chain (see the Phase constants);
	// the EnvoyFilter and envoy.yaml renderings use the order of Sections.
	Phase    string
	Priority int32
	// Mode is the traffic a section's filter sees on the sidecars a selector picks
	// (Istio's WorkloadMode): "SERVER" (inbound: the selected workloads' callers are
	// checked, as auth and rate limits need) or "CLIENT" (outbound: the selected
	// workloads' own calls, where routes are picked, as routing hints need). On
	// gateways and waypoints (targetRefs) every request is seen.
	Mode string
	// FailOpen is the default failure behaviour when the module cannot be fetched or
	// loaded, or the VM fails: false (fail closed) for auth, true for the others.
	FailOpen bool

	spec     func(*TrafficPolicySpec) any
	compile  func(any) error
	parse    func([]byte) error
	callouts func(any) []Callout
}

// Callout is an Envoy cluster a filter sends HTTP or gRPC callouts to (a JWKS endpoint,
// an authorization service, a rate limit service). URL, when the configuration has
// one, tells where the cluster points; the envoy.yaml renderer builds the cluster from
// it.
//
// +kubebuilder:object:generate=false
type Callout struct {
	Cluster string
	URL     string
	// Path is the field path of the cluster name in the section
	// (`providers.corp.remote_jwks.http_uri.cluster`), for error messages.
	Path string
	// GRPC: the filter makes gRPC calls to the cluster, which must speak HTTP/2.
	GRPC bool
}

// Spec returns the section's wire Spec in p (a pointer to the filter's config.Spec),
// or nil when the section is absent.
func (s Section) Spec(p *TrafficPolicySpec) any { return s.spec(p) }

// Compile validates spec (as returned by Spec) with the filter's own Compile; errors
// are *configjson.FieldError with paths relative to the section.
func (s Section) Compile(spec any) error { return s.compile(spec) }

// Parse validates a JSON configuration (the rendered pluginConfig) with the filter's
// own Parse, as the filter does when Envoy configures it.
func (s Section) Parse(data []byte) error { return s.parse(data) }

// Callouts lists the clusters spec (as returned by Spec) sends callouts to.
func (s Section) Callouts(spec any) []Callout {
	if s.callouts == nil {
		return nil
	}
	return s.callouts(spec)
}

func section[S, C any](field, filter, phase string, priority int32, mode string, failOpen bool,
	get func(*TrafficPolicySpec) *S, compile func(*S) (C, error), parse func([]byte) (C, error),
	callouts func(*S) []Callout) Section {
	return Section{
		Field: field, Filter: filter, Phase: phase, Priority: priority, Mode: mode, FailOpen: failOpen,
		callouts: func(v any) []Callout { return callouts(v.(*S)) },
		spec: func(p *TrafficPolicySpec) any {
			if v := get(p); v != nil {
				return v
			}
			return nil
		},
		compile: func(v any) error { _, err := compile(v.(*S)); return err },
		parse:   func(b []byte) error { _, err := parse(b); return err },
	}
}

// Sections are the filter sections in request order (auth, ratelimit, routehint,
// fault: see docs/architecture.md).
var Sections = []Section{
	section("auth", "auth", PhaseAuthn, 1000, ModeServer, false,
		func(p *TrafficPolicySpec) *authconfig.Spec { return p.Auth }, authconfig.Compile, authconfig.Parse, authCallouts),
	section("rateLimit", "ratelimit", PhaseAuthz, 1000, ModeServer, true,
		func(p *TrafficPolicySpec) *ratelimitconfig.Spec { return p.RateLimit }, ratelimitconfig.Compile, ratelimitconfig.Parse, ratelimitCallouts),
	section("routeHints", "routehint", PhaseUnspecified, 20, ModeClient, true,
		func(p *TrafficPolicySpec) *routehintconfig.Spec { return p.RouteHints }, routehintconfig.Compile, routehintconfig.Parse, noCallouts),
	section("faults", "fault", PhaseUnspecified, 10, ModeServer, true,
		func(p *TrafficPolicySpec) *faultconfig.Spec { return p.Faults }, faultconfig.Compile, faultconfig.Parse, noCallouts),
}

func noCallouts[S any](*S) []Callout { return nil }

// ratelimitCallouts: the rate limit service of the global mode (gRPC).
func ratelimitCallouts(s *ratelimitconfig.Spec) []Callout {
	if s.Mode != "global" || s.Global == nil {
		return nil
	}
	return []Callout{{Cluster: s.Global.Cluster, Path: "global.cluster", GRPC: true}}
}

// authCallouts: each remote JWKS endpoint and the authorization service.
func authCallouts(s *authconfig.Spec) []Callout {
	var out []Callout
	names := make([]string, 0, len(s.Providers))
	for n := range s.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if r := s.Providers[n].RemoteJWKS; r != nil && r.HTTPURI != nil {
			out = append(out, Callout{Cluster: r.HTTPURI.Cluster, URL: r.HTTPURI.URI,
				Path: configjson.Field(configjson.Key("providers", n), "remote_jwks.http_uri.cluster")})
		}
	}
	if e := s.ExtAuthz; e != nil && e.HTTPService != nil {
		out = append(out, Callout{Cluster: e.HTTPService.Cluster, Path: "ext_authz.http_service.cluster"})
	}
	return out
}

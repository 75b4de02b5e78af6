package v1alpha1

import (
	authconfig "github.com/meshplug/meshplug/filters/auth/config"
)

// Istio WasmPlugin phases (extensions.istio.io/v1alpha1 PluginPhase): where in the
// proxy's HTTP filter chain a plugin is inserted. Within a phase, a higher priority
// runs first. Chain order: AUTHN plugins, Istio authn, AUTHZ plugins, Istio RBAC,
// STATS plugins, Istio stats, UNSPECIFIED_PHASE plugins, router.
const (
	PhaseAuthn       = "AUTHN"
	PhaseAuthz       = "AUTHZ"
	PhaseStats       = "STATS"
	PhaseUnspecified = "UNSPECIFIED_PHASE"
)

// Section is one filter section of a TrafficPolicy: which field of the spec holds it,
// which module runs it, where it sits in the filter chain, how it fails, and the
// filter's own validation. The renderers, the controller and `meshplug validate`
// iterate Sections, so adding a filter is a spec field and one entry here.
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
	// FailOpen is the default failure behaviour when the module cannot be fetched or
	// loaded, or the VM fails: false (fail closed) for auth, true for the others.
	FailOpen bool

	spec    func(*TrafficPolicySpec) any
	compile func(any) error
	parse   func([]byte) error
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

func section[S, C any](field, filter, phase string, priority int32, failOpen bool,
	get func(*TrafficPolicySpec) *S, compile func(*S) (C, error), parse func([]byte) (C, error)) Section {
	return Section{
		Field: field, Filter: filter, Phase: phase, Priority: priority, FailOpen: failOpen,
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
	section("auth", "auth", PhaseAuthn, 1000, false,
		func(p *TrafficPolicySpec) *authconfig.Spec { return p.Auth }, authconfig.Compile, authconfig.Parse),
}

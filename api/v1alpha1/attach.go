package v1alpha1

import (
	"fmt"
	"strings"

	authconfig "github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/configjson"
	routehintconfig "github.com/meshplug/meshplug/filters/routehint/config"
)

// Proxies a policy attaches to (TrafficPolicySpec.AttachTo).
const (
	AttachSidecar  = "Sidecar"
	AttachGateway  = "Gateway"
	AttachWaypoint = "Waypoint"
)

// gatewayLabels are the pod labels that mark a gateway deployment: Istio's classic
// ingress and egress gateways (the istio label of its charts, the app label of older
// installs) and the deployments Istio makes for Gateway API Gateways (the
// gateway-name labels). A selector with one of them picks gateway pods, whose
// listeners Istio builds as gateway (CLIENT) listeners, not sidecar ones.
var gatewayLabels = map[string]map[string]bool{
	"istio":                                  {"ingressgateway": true, "egressgateway": true},
	"app":                                    {"istio-ingressgateway": true, "istio-egressgateway": true},
	"gateway.networking.k8s.io/gateway-name": nil, // any value
	"istio.io/gateway-name":                  nil,
}

// Attachment is the proxies p's filters run on: spec.attachTo, or when it is empty
// what the target says (see TrafficPolicySpec.AttachTo). It is "" only for a policy
// whose targetRefs mix Gateways and Services without attachTo, which Validate refuses.
func (p *TrafficPolicy) Attachment() string {
	s := &p.Spec
	if s.AttachTo != "" {
		return s.AttachTo
	}
	if s.Selector != nil {
		for k, v := range s.Selector.MatchLabels {
			if vals, ok := gatewayLabels[k]; ok && (vals == nil || vals[v]) {
				return AttachGateway
			}
		}
		return AttachSidecar
	}
	kinds := map[string]bool{}
	for _, r := range s.TargetRefs {
		kinds[r.Kind] = true
	}
	switch {
	case kinds["Service"] && kinds["Gateway"]:
		return ""
	case kinds["Service"]:
		return AttachWaypoint
	}
	return AttachGateway
}

// validateAttachment adds the errors of spec.attachTo against the target.
func (p *TrafficPolicy) validateAttachment(errs *configjson.Errors) {
	s := &p.Spec
	switch s.AttachTo {
	case "", AttachSidecar, AttachGateway, AttachWaypoint:
	default:
		errs.Add("spec.attachTo", "must be Sidecar, Gateway or Waypoint, got %q", s.AttachTo)
		return
	}
	hasService := false
	for _, r := range s.TargetRefs {
		hasService = hasService || r.Kind == "Service"
	}
	switch {
	case s.AttachTo == AttachSidecar && s.TargetRefs != nil:
		errs.Add("spec.attachTo", "Sidecar needs a selector: targetRefs name gateways and waypoints")
	case s.AttachTo == AttachWaypoint && s.Selector != nil:
		errs.Add("spec.attachTo", "Waypoint needs targetRefs (the Services whose waypoint runs the filters, or the waypoint as a Gateway): Istio does not apply selector policies to waypoints")
	case s.AttachTo == AttachGateway && hasService:
		errs.Add("spec.attachTo", "Gateway cannot have Service targetRefs: a Service's proxy is its waypoint (attachTo: Waypoint)")
	case s.AttachTo == "" && s.TargetRefs != nil && p.Attachment() == "":
		errs.Add("spec.attachTo", "required when targetRefs name both Gateways and Services: Waypoint if the Gateways are waypoints, else split the policy")
	}
}

// DirectionWarnings lists what a sidecar policy's filters cannot do because they run
// on different sides of the workload: auth, rateLimit and faults on the requests the
// selected workloads receive (inbound), routeHints on the calls they make (outbound).
// A routeHints rule or split key that reads a header auth writes (identity.
// consumer_header, claim_to_headers, ...) never sees auth's value there: the caller's
// identity is established on the callee's sidecar, after routing. On gateways and
// waypoints every filter sees every request, in chain order, and nothing is reported.
func (p *TrafficPolicy) DirectionWarnings() []Warning {
	s := &p.Spec
	if p.Attachment() != AttachSidecar || s.Auth == nil || s.RouteHints == nil {
		return nil
	}
	c, err := authconfig.Compile(s.Auth)
	if err != nil {
		return nil // Validate reports it
	}
	written := map[string]bool{}
	for _, h := range c.IdentityHeaders {
		written[strings.ToLower(h)] = true
	}
	var out []Warning
	msg := func(h string) string {
		return fmt.Sprintf("reads %q, which auth writes on the inbound side of the selected workloads, while routeHints runs on their outbound calls (spec.attachTo Sidecar): it never sees auth's value; put both on a gateway or waypoint, or key on what the caller itself sends", h)
	}
	conds := func(path string, cs []routehintconfig.ConditionSpec) {
		for j, c := range cs {
			if c.From == "header" && written[strings.ToLower(c.Name)] {
				out = append(out, Warning{configjson.Field(configjson.Index(path, j), "name"), msg(c.Name)})
			}
		}
	}
	for i, r := range s.RouteHints.Rules {
		rp := configjson.Index("spec.routeHints.rules", i)
		if r.Match != nil {
			conds(configjson.Field(configjson.Field(rp, "match"), "all"), r.Match.All)
			for g, grp := range r.Match.Any {
				conds(configjson.Field(configjson.Index(configjson.Field(configjson.Field(rp, "match"), "any"), g), "all"), grp.All)
			}
		}
		if r.Split != nil && r.Split.Key != nil && written[strings.ToLower(r.Split.Key.Header)] {
			out = append(out, Warning{configjson.Field(configjson.Field(configjson.Field(rp, "split"), "key"), "header"), msg(r.Split.Key.Header)})
		}
	}
	return out
}

// Warnings are every warning of p: PathWarnings and DirectionWarnings.
func (p *TrafficPolicy) Warnings() []Warning {
	return append(p.PathWarnings(), p.DirectionWarnings()...)
}

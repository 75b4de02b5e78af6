package envoyfilters_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingapi "istio.io/api/networking/v1alpha3"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
)

// allFour is the public-gateway example (all four sections) with its target replaced.
func allFour(t *testing.T, sel map[string]string, refs []v1alpha1.PolicyTargetReference, attachTo string) *v1alpha1.TrafficPolicy {
	p := byName(t, "public-gateway").DeepCopy()
	p.Spec.TargetRefs = refs
	p.Spec.Selector = nil
	if sel != nil {
		p.Spec.Selector = &v1alpha1.WorkloadSelector{MatchLabels: sel}
	}
	p.Spec.AttachTo = attachTo
	return p
}

var (
	gatewayRef = v1alpha1.PolicyTargetReference{Group: "gateway.networking.k8s.io", Kind: "Gateway", Name: "public"}
	serviceRef = v1alpha1.PolicyTargetReference{Kind: "Service", Name: "orders"}
)

// TestAttachment: for each kind of target, the WasmPlugins' traffic mode and the
// EnvoyFilters' patch context are the ones Istio applies on those proxies: every
// section CLIENT / GATEWAY on gateways (selected or targeted), by section on sidecars,
// no match on targetRefs; waypoints only as WasmPlugins.
func TestAttachment(t *testing.T) {
	for name, c := range map[string]struct {
		sel      map[string]string
		refs     []v1alpha1.PolicyTargetReference
		attachTo string
		attach   string
		modes    map[string]string // filter -> WasmPlugin match mode ("" = no match)
		ctx      map[string]networkingapi.EnvoyFilter_PatchContext
	}{
		"sidecar selector": {sel: map[string]string{"app": "orders"}, attach: v1alpha1.AttachSidecar,
			modes: map[string]string{"auth": "SERVER", "ratelimit": "SERVER", "routehint": "CLIENT", "fault": "SERVER"},
			ctx: map[string]networkingapi.EnvoyFilter_PatchContext{"auth": networkingapi.EnvoyFilter_SIDECAR_INBOUND, "ratelimit": networkingapi.EnvoyFilter_SIDECAR_INBOUND,
				"routehint": networkingapi.EnvoyFilter_SIDECAR_OUTBOUND, "fault": networkingapi.EnvoyFilter_SIDECAR_INBOUND}},
		"classic ingress gateway (istio label)": {sel: map[string]string{"istio": "ingressgateway"}, attach: v1alpha1.AttachGateway},
		"classic egress gateway (app label)":    {sel: map[string]string{"app": "istio-egressgateway"}, attach: v1alpha1.AttachGateway},
		"gateway API deployment label":          {sel: map[string]string{"gateway.networking.k8s.io/gateway-name": "public"}, attach: v1alpha1.AttachGateway},
		"custom gateway labels, attachTo":       {sel: map[string]string{"app": "edge"}, attachTo: v1alpha1.AttachGateway, attach: v1alpha1.AttachGateway},
		"gateway label, attachTo Sidecar": {sel: map[string]string{"istio": "ingressgateway"}, attachTo: v1alpha1.AttachSidecar, attach: v1alpha1.AttachSidecar,
			modes: map[string]string{"auth": "SERVER", "ratelimit": "SERVER", "routehint": "CLIENT", "fault": "SERVER"},
			ctx: map[string]networkingapi.EnvoyFilter_PatchContext{"auth": networkingapi.EnvoyFilter_SIDECAR_INBOUND, "ratelimit": networkingapi.EnvoyFilter_SIDECAR_INBOUND,
				"routehint": networkingapi.EnvoyFilter_SIDECAR_OUTBOUND, "fault": networkingapi.EnvoyFilter_SIDECAR_INBOUND}},
		"Gateway targetRef":            {refs: []v1alpha1.PolicyTargetReference{gatewayRef}, attach: v1alpha1.AttachGateway, modes: map[string]string{}},
		"Service targetRef":            {refs: []v1alpha1.PolicyTargetReference{serviceRef}, attach: v1alpha1.AttachWaypoint, modes: map[string]string{}},
		"waypoint as Gateway":          {refs: []v1alpha1.PolicyTargetReference{gatewayRef}, attachTo: v1alpha1.AttachWaypoint, attach: v1alpha1.AttachWaypoint, modes: map[string]string{}},
		"Service and waypoint Gateway": {refs: []v1alpha1.PolicyTargetReference{gatewayRef, serviceRef}, attachTo: v1alpha1.AttachWaypoint, attach: v1alpha1.AttachWaypoint, modes: map[string]string{}},
	} {
		t.Run(name, func(t *testing.T) {
			p := allFour(t, c.sel, c.refs, c.attachTo)
			require.NoError(t, p.Validate())
			assert.Equal(t, c.attach, p.Attachment())
			if c.attach == v1alpha1.AttachGateway && c.sel != nil {
				c.modes = map[string]string{"auth": "CLIENT", "ratelimit": "CLIENT", "routehint": "CLIENT", "fault": "CLIENT"}
			}
			if c.attach == v1alpha1.AttachGateway {
				c.ctx = map[string]networkingapi.EnvoyFilter_PatchContext{"auth": networkingapi.EnvoyFilter_GATEWAY, "ratelimit": networkingapi.EnvoyFilter_GATEWAY,
					"routehint": networkingapi.EnvoyFilter_GATEWAY, "fault": networkingapi.EnvoyFilter_GATEWAY}
			}
			ws, err := envoyfilters.WasmPlugins(p, options)
			require.NoError(t, err)
			require.Len(t, ws, 4)
			for _, w := range ws {
				f := w.Labels[envoyfilters.LabelFilter]
				if want := c.modes[f]; want == "" {
					assert.Empty(t, w.Spec.Match, f)
				} else if assert.Len(t, w.Spec.Match, 1, f) {
					assert.Equal(t, want, w.Spec.Match[0].Mode.String(), f)
				}
				assert.Equal(t, len(c.refs), len(w.Spec.TargetRefs), f)
				assert.Equal(t, c.sel != nil, w.Spec.Selector != nil, f)
			}
			es, err := envoyfilters.EnvoyFilters(p, options)
			if c.attach == v1alpha1.AttachWaypoint {
				assert.ErrorContains(t, err, "not waypoints")
				return
			}
			require.NoError(t, err)
			require.Len(t, es, 4)
			for _, e := range es {
				f := e.Labels[envoyfilters.LabelFilter]
				assert.Equal(t, c.ctx[f], e.Spec.ConfigPatches[1].Match.Context, f)
			}
		})
	}
}

// TestAttachmentRefused: attachTo that contradicts the target is refused with the field.
func TestAttachmentRefused(t *testing.T) {
	for name, c := range map[string]struct {
		sel      map[string]string
		refs     []v1alpha1.PolicyTargetReference
		attachTo string
		want     string
	}{
		"Sidecar with targetRefs":     {refs: []v1alpha1.PolicyTargetReference{gatewayRef}, attachTo: "Sidecar", want: "spec.attachTo: Sidecar needs a selector"},
		"Waypoint with selector":      {sel: map[string]string{"app": "orders"}, attachTo: "Waypoint", want: "spec.attachTo: Waypoint needs targetRefs"},
		"Gateway with Service target": {refs: []v1alpha1.PolicyTargetReference{serviceRef}, attachTo: "Gateway", want: "spec.attachTo: Gateway cannot have Service targetRefs"},
		"mixed targetRefs":            {refs: []v1alpha1.PolicyTargetReference{gatewayRef, serviceRef}, want: "spec.attachTo: required when targetRefs name both"},
		"unknown":                     {sel: map[string]string{"app": "orders"}, attachTo: "sidecar", want: `spec.attachTo: must be Sidecar, Gateway or Waypoint, got "sidecar"`},
	} {
		p := allFour(t, c.sel, c.refs, c.attachTo)
		assert.ErrorContains(t, p.Validate(), c.want, name)
		_, err := envoyfilters.WasmPlugins(p, options)
		assert.ErrorContains(t, err, c.want, name)
	}
}

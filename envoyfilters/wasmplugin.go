package envoyfilters

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	extensionsapi "istio.io/api/extensions/v1alpha1"
	typeapi "istio.io/api/type/v1beta1"
	extensions "istio.io/client-go/pkg/apis/extensions/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

// WasmPlugins renders one Istio WasmPlugin (extensions.istio.io/v1alpha1) per section
// of p, named `<policy>-<filter>` in p's namespace: the module's url and sha256, the
// section as pluginConfig, the section's phase, priority and failStrategy (FAIL_CLOSE
// for auth, FAIL_OPEN for the others), and p's selector or targetRefs. With a selector
// each plugin is matched to the traffic mode that reaches it on the proxies p attaches
// to (selectorMode): on sidecars its section's Mode (inbound SERVER for auth, so a
// workload's own outbound calls are not authenticated against its policy; outbound
// CLIENT for routehint), on gateways CLIENT, the only mode of a gateway's listeners.
// targetRefs plugins carry no match: Istio applies them to every listener of the
// targeted gateway or waypoint.
//
// Reference: https://istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin/
func WasmPlugins(p *v1alpha1.TrafficPolicy, o Options) ([]*extensions.WasmPlugin, error) {
	secs, err := sections(p)
	if err != nil {
		return nil, err
	}
	policy, err := pullPolicy(o)
	if err != nil {
		return nil, err
	}
	pull := extensionsapi.PullPolicy(extensionsapi.PullPolicy_value[policy])
	var out []*extensions.WasmPlugin
	for _, s := range secs {
		m, err := o.module(s.sec)
		if err != nil {
			return nil, err
		}
		cfg := &structpb.Struct{}
		if err := protojson.Unmarshal(s.json, cfg); err != nil {
			return nil, fmt.Errorf("%s: spec.%s: %w", p, s.sec.Field, err)
		}
		fail := extensionsapi.FailStrategy_FAIL_CLOSE
		if s.sec.FailOpen {
			fail = extensionsapi.FailStrategy_FAIL_OPEN
		}
		w := &extensions.WasmPlugin{
			TypeMeta:   metav1.TypeMeta{APIVersion: "extensions.istio.io/v1alpha1", Kind: "WasmPlugin"},
			ObjectMeta: objectMeta(p, s.sec),
		}
		w.Spec = extensionsapi.WasmPlugin{
			Url:             m.URL,
			Sha256:          m.SHA256,
			ImagePullPolicy: pull,
			PluginName:      s.sec.Filter,
			PluginConfig:    cfg,
			Phase:           extensionsapi.PluginPhase(extensionsapi.PluginPhase_value[s.sec.Phase]),
			Priority:        wrapperspb.Int32(s.sec.Priority),
			FailStrategy:    fail,
			Type:            extensionsapi.PluginType_HTTP,
		}
		if sel := p.Spec.Selector; sel != nil {
			w.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: sel.MatchLabels}
			w.Spec.Match = []*extensionsapi.WasmPlugin_TrafficSelector{{Mode: typeapi.WorkloadMode(typeapi.WorkloadMode_value[selectorMode(p, s.sec)])}}
		}
		for _, r := range p.Spec.TargetRefs {
			w.Spec.TargetRefs = append(w.Spec.TargetRefs, &typeapi.PolicyTargetReference{Group: r.Group, Kind: r.Kind, Name: r.Name})
		}
		out = append(out, w)
	}
	return out, nil
}

// selectorMode is the WorkloadMode a selector policy's section is matched with:
// CLIENT for every section on gateways (Istio builds a gateway's listeners as CLIENT
// traffic and drops SERVER plugins there), the section's Mode on sidecars.
func selectorMode(p *v1alpha1.TrafficPolicy, sec v1alpha1.Section) string {
	if p.Attachment() == v1alpha1.AttachGateway {
		return v1alpha1.ModeClient
	}
	return sec.Mode
}

// pullPolicy is o's image pull policy: IfNotPresent (the default) or Always.
func pullPolicy(o Options) (string, error) {
	switch o.ImagePullPolicy {
	case "", "IfNotPresent":
		return "IfNotPresent", nil
	case "Always":
		return "Always", nil
	}
	return "", fmt.Errorf("imagePullPolicy must be IfNotPresent or Always, got %q", o.ImagePullPolicy)
}

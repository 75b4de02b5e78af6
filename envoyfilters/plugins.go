package envoyfilters

import "github.com/meshplug/meshplug/api/v1alpha1"

// PluginConfig is one filter of a policy's chain as every renderer configures it.
type PluginConfig struct {
	Section v1alpha1.Section
	// Spec is the section's wire Spec (for Section.Callouts).
	Spec any
	// JSON is the pluginConfig: the bytes the filter's config.Parse receives.
	JSON []byte
}

// PluginConfigs validates p and returns its filters in chain order (the order of
// v1alpha1.Sections, as the envoy.yaml and EnvoyFilter renderings use) with the
// configuration each renderer gives them. The local gateway (`meshplug run`) loads
// them into its embedded host.
func PluginConfigs(p *v1alpha1.TrafficPolicy) ([]PluginConfig, error) {
	secs, err := sections(p)
	if err != nil {
		return nil, err
	}
	out := make([]PluginConfig, len(secs))
	for i, s := range secs {
		out[i] = PluginConfig{Section: s.sec, Spec: s.spec, JSON: s.json}
	}
	return out, nil
}

package demo

import (
	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
)

// EnvoyOptions are the renderer inputs of envoy.yaml for docker-compose.yaml: Envoy
// listens on 10000 (admin 9901), loads the modules from /etc/envoy/wasm (the build/
// folder mounted there) and reaches the demo backends (service "demo": v1 on 9001, v2
// on 9002, the JWKS server on 9003).
var EnvoyOptions = envoyfilters.EnvoyOptions{
	ModuleDir:       "/etc/envoy/wasm",
	ListenAddress:   "0.0.0.0:10000",
	AdminAddress:    "0.0.0.0:9901",
	Upstream:        "demo:9001",
	Clusters:        map[string]string{JWKSCluster: "demo:9003"},
	TargetUpstreams: map[string]string{"v2": "demo:9002"},
}

// EnvoyYAML renders envoy.yaml (committed next to docker-compose.yaml) from the demo
// policy; TestEnvoyYAML fails when the committed file is stale (UPDATE=1 rewrites it).
func EnvoyYAML() ([]byte, error) {
	p, err := v1alpha1.Decode(Policy)
	if err != nil {
		return nil, err
	}
	b, err := envoyfilters.EnvoyBootstrap(p, EnvoyOptions)
	if err != nil {
		return nil, err
	}
	y, err := envoyfilters.MarshalEnvoyYAML(b)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Generated from policy.yaml by demo.EnvoyYAML (UPDATE=1 go test ./demo -run TestEnvoyYAML). Do not edit.\n"), y...), nil
}

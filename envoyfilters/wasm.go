package envoyfilters

import (
	"net"
	"net/url"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// WasmRuntime is the Wasm runtime the Envoy renderings ask for.
const WasmRuntime = "envoy.wasm.runtime.v8"

// wasmFilter is the configuration of Envoy's Wasm HTTP filter running one section: its
// filter selected by root id, in the bundle's VM (vm_id "meshplug", shared by every
// plugin of the bundle) or, with perFilter, in a VM of its own (vm_id
// "meshplug.<filter>", shared by every plugin of that filter on the proxy; shared data
// spans a VM's worker threads either way), the
// section's Spec as the plugin configuration (a StringValue holding JSON, as Istio
// passes pluginConfig), and the section's failure policy.
//
// Reference: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/wasm/v3/wasm.proto
func wasmFilter(s present, code *corev3.AsyncDataSource, perFilter bool) (*wasmfilterv3.Wasm, error) {
	conf, err := anypb.New(wrapperspb.String(string(s.json)))
	if err != nil {
		return nil, err
	}
	fail := wasmv3.FailurePolicy_FAIL_CLOSED
	if s.sec.FailOpen {
		fail = wasmv3.FailurePolicy_FAIL_OPEN
	}
	return &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
		Name:   filterName(s.sec),
		RootId: s.sec.Filter,
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:    vmID(s.sec, perFilter),
			Runtime: WasmRuntime,
			Code:    code,
		}},
		Configuration: conf,
		FailurePolicy: fail,
	}}, nil
}

// hostPort splits an http(s) URL's host into host and port (the scheme's default port
// when the URL has none).
func hostPort(u *url.URL) (string, uint32) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		if u.Scheme == "https" || u.Scheme == "oci" {
			return host, 443
		}
		return host, 80
	}
	n, _ := strconv.ParseUint(port, 10, 16)
	return host, uint32(n)
}

// parseIstioCluster reads an Istio outbound cluster name back into host and port.
func parseIstioCluster(name string) (string, uint32, bool) {
	var parts [4]string
	n := 0
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '|' {
			if n == 4 {
				return "", 0, false
			}
			parts[n] = name[start:i]
			n++
			start = i + 1
		}
	}
	if n != 4 || parts[0] != "outbound" || parts[3] == "" {
		return "", 0, false
	}
	p, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil || p == 0 {
		return "", 0, false
	}
	return parts[3], uint32(p), true
}

func isIP(host string) bool { return net.ParseIP(host) != nil }

package istiocheck

import (
	"strconv"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/envoyfilters"
	"github.com/meshplug/meshplug/internal/crdschema"
)

// bundleWasm and bundleURL are meshplug.wasm (stand-in bytes) and where it is pushed.
const (
	bundleWasm = "\x00asm\x01\x00\x00\x00 meshplug bundle"
	bundleURL  = "oci://registry.example/meshplug/meshplug:v1"
)

// bundle is the default rendering input (meshplug render, the controller): every
// filter from the one module meshplug.wasm at url.
func bundle(t *testing.T, url string) envoyfilters.Options {
	t.Helper()
	m, err := envoyfilters.NewModule(url, []byte(bundleWasm))
	require.NoError(t, err)
	return envoyfilters.Options{Bundle: &m}
}

// perFilter are the four filters' own images (render --per-filter-modules), as
// meshplug push makes them of stand-in bytes.
func perFilter(t *testing.T) envoyfilters.Options {
	t.Helper()
	o := envoyfilters.Options{Modules: map[string]envoyfilters.Module{}}
	for _, s := range v1alpha1.Sections {
		m, err := envoyfilters.NewModule("oci://registry.example/meshplug/"+s.Filter+":v1", []byte("\x00asm\x01\x00\x00\x00"+s.Filter))
		require.NoError(t, err)
		o.Modules[s.Filter] = m
	}
	return o
}

// layouts are the two module layouts a rendering can use, by name: the bundle (the
// default) and per-filter modules.
var layouts = []string{"bundle", "per-filter"}

func layout(t *testing.T, name string) envoyfilters.Options {
	t.Helper()
	switch name {
	case "bundle":
		return bundle(t, bundleURL)
	case "per-filter":
		return perFilter(t)
	}
	t.Fatalf("layout %q", name)
	return envoyfilters.Options{}
}

// policies decodes and validates TrafficPolicy YAML documents.
func policies(t *testing.T, y string) []*v1alpha1.TrafficPolicy {
	t.Helper()
	var out []*v1alpha1.TrafficPolicy
	for _, doc := range crdschema.SplitYAML([]byte(y)) {
		p, err := v1alpha1.Decode(doc)
		require.NoError(t, err)
		require.NoError(t, p.Validate())
		out = append(out, p)
	}
	return out
}

// render is what `meshplug render --format istio|envoyfilter` writes for ps with the
// modules of o.
func render(t *testing.T, format string, o envoyfilters.Options, ps []*v1alpha1.TrafficPolicy) string {
	t.Helper()
	var objs []any
	for _, p := range ps {
		switch format {
		case "istio":
			ws, err := envoyfilters.WasmPlugins(p, o)
			require.NoError(t, err)
			for _, w := range ws {
				objs = append(objs, w)
			}
		case "envoyfilter":
			es, err := envoyfilters.EnvoyFilters(p, o)
			require.NoError(t, err)
			for _, e := range es {
				objs = append(objs, e)
			}
		default:
			t.Fatalf("format %q", format)
		}
	}
	y, err := envoyfilters.MarshalYAML(objs...)
	require.NoError(t, err)
	return string(y)
}

func join(docs ...string) string {
	var b strings.Builder
	for _, d := range docs {
		d = strings.TrimSpace(d)
		if !strings.HasPrefix(d, "---") {
			b.WriteString("---\n")
		}
		b.WriteString(d)
		b.WriteString("\n")
	}
	return b.String()
}

// chains are the HTTP filter names of each HTTP connection manager of the listeners,
// keyed "<listener>/<filter chain>".
func chains(t *testing.T, ls []*listener.Listener) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, l := range ls {
		for i, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() != "envoy.filters.network.http_connection_manager" {
					continue
				}
				m := &hcm.HttpConnectionManager{}
				require.NoError(t, f.GetTypedConfig().UnmarshalTo(m))
				var names []string
				for _, hf := range m.GetHttpFilters() {
					names = append(names, hf.GetName())
				}
				key := l.GetName() + "/" + fc.GetName()
				if fc.GetName() == "" {
					key = l.GetName() + "/#" + strconv.Itoa(i)
				}
				out[key] = names
			}
		}
	}
	return out
}

// objectName is the "<namespace>.<name>" of the object an HTTP filter comes from:
// istiod names a WasmPlugin's filter
// "extensions.istio.io/trafficextension/<namespace>.<name>~istio-translated-wasmplugin",
// our EnvoyFilters "<namespace>.<name>".
func objectName(filter string) string {
	filter, _, _ = strings.Cut(filter, "~")
	if i := strings.LastIndexByte(filter, '/'); i >= 0 {
		filter = filter[i+1:]
	}
	return filter
}

// ours are the HTTP filters of a chain that are the policy's, as filter names in
// chain order.
func ours(chain []string, ns, policy string) []string {
	var out []string
	for _, n := range chain {
		for _, s := range v1alpha1.Sections {
			if objectName(n) == ns+"."+policy+"-"+s.Filter {
				out = append(out, s.Filter)
			}
		}
	}
	return out
}

// index is the position of the first filter named name (a filter of ours by its
// object name), -1 if none.
func index(chain []string, name string) int {
	for i, n := range chain {
		if n == name || objectName(n) == name {
			return i
		}
	}
	return -1
}

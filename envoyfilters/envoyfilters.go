// Package envoyfilters renders a meshplug.io/v1alpha1 TrafficPolicy into the objects
// that run its filters: Istio WasmPlugins (WasmPlugins), Istio EnvoyFilters for meshes
// where WasmPlugin does not fit (EnvoyFilters), and a complete envoy.yaml for plain
// Envoy (EnvoyBootstrap). The functions are pure: everything that is not in the policy
// (where the modules are served, their sha256, listener and upstream addresses) comes in
// Options, so that the controller, the CLI and the golden-file tests render the same
// bytes.
//
// Each section of the policy (v1alpha1.Sections) becomes one filter whose configuration
// is the section's wire Spec as JSON, which the filter decodes with its own
// config.Parse at configure time.
package envoyfilters

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshplug/meshplug/api/v1alpha1"
)

// Module is one filter's compiled .wasm as the proxies fetch it.
type Module struct {
	// URL where Istio's agent (WasmPlugin, EnvoyFilter) fetches the module: oci://,
	// https:// or http://. Not used by the envoy.yaml rendering, which loads local files.
	URL string
	// SHA256 is what Istio's agent checks the download against, in hex: the .wasm's
	// SHA-256 for https:// and http://, the image manifest's digest for oci:// (not the
	// module's). NewModule computes it.
	SHA256 string
}

// Options are the rendering inputs that are not part of the policy.
type Options struct {
	// Bundle is meshplug.wasm, the module holding every filter: when set, every
	// section runs from it (one URL and digest, the filter selected by pluginName /
	// root_id, one VM per worker) and Modules is not read. The CLI and the controller
	// set it unless asked for per-filter modules.
	Bundle *Module
	// Modules by filter name (v1alpha1.Section.Filter: "auth", ...), when Bundle is
	// nil: each filter from its own module, in a VM of its own.
	Modules map[string]Module
	// ImagePullPolicy of the modules, as Istio's agent applies it (WasmPlugin
	// imagePullPolicy, EnvoyFilter VM environment): "IfNotPresent" (the default) or
	// "Always".
	ImagePullPolicy string
}

// Labels every rendered Kubernetes object carries.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPolicy    = "meshplug.io/policy"
	LabelFilter    = "meshplug.io/filter"
)

// filterName is the name of a section's HTTP filter and Wasm plugin in Envoy's
// configuration ("meshplug.auth"), the prefix of its metrics.
func filterName(sec v1alpha1.Section) string { return "meshplug." + sec.Filter }

func (o Options) module(sec v1alpha1.Section) (Module, error) {
	m, ok := o.Modules[sec.Filter]
	if o.Bundle != nil {
		m, ok = *o.Bundle, true
	}
	if !ok {
		return m, fmt.Errorf("no module given for filter %q", sec.Filter)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != 32 {
		return m, fmt.Errorf("module %q: sha256 must be 64 hex digits, got %q", sec.Filter, m.SHA256)
	}
	if !strings.HasPrefix(m.URL, "oci://") && !strings.HasPrefix(m.URL, "https://") && !strings.HasPrefix(m.URL, "http://") {
		return m, fmt.Errorf("module %q: url must start with oci://, https:// or http://, got %q", sec.Filter, m.URL)
	}
	if pinned, ok := ociPinnedDigest(m.URL); ok && pinned != m.SHA256 {
		return m, fmt.Errorf("module %q: url %q pins image sha256:%s but sha256 is %s: Istio's agent pulls the pinned image and refuses it as a mismatch", sec.Filter, m.URL, pinned, m.SHA256)
	}
	return m, nil
}

// present are the sections p has, in chain order, with their specs.
type present struct {
	sec   v1alpha1.Section
	index int // in v1alpha1.Sections
	spec  any
	json  []byte // the section's Spec as JSON: the filter's configuration
}

func sections(p *v1alpha1.TrafficPolicy) ([]present, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	var out []present
	for i, sec := range v1alpha1.Sections {
		spec := sec.Spec(&p.Spec)
		if spec == nil {
			continue
		}
		b, err := json.Marshal(spec)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.%s: %w", p, sec.Field, err)
		}
		out = append(out, present{sec: sec, index: i, spec: spec, json: b})
	}
	return out, nil
}

func objectMeta(p *v1alpha1.TrafficPolicy, sec v1alpha1.Section) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      p.Name + "-" + sec.Filter,
		Namespace: p.Namespace,
		Labels: map[string]string{
			LabelManagedBy: "meshplug",
			LabelPolicy:    p.Name,
			LabelFilter:    sec.Filter,
		},
	}
}

// MarshalYAML writes objects as a multi-document YAML stream, each document led by
// `---`. Kubernetes objects lose the fields a client never sets
// (metadata.creationTimestamp, an empty status); a WasmPlugin's failStrategy and phase
// are always written.
func MarshalYAML(objs ...any) ([]byte, error) {
	var b strings.Builder
	for _, o := range objs {
		j, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			return nil, err
		}
		if md, ok := m["metadata"].(map[string]any); ok && md["creationTimestamp"] == nil {
			delete(md, "creationTimestamp")
		}
		if st, ok := m["status"].(map[string]any); ok && emptyStatus(st) {
			delete(m, "status")
		}
		// Istio's JSON leaves out enum zero values; FAIL_CLOSE and UNSPECIFIED_PHASE are
		// such values, and a reader should see how a plugin fails and where it runs.
		if spec, ok := m["spec"].(map[string]any); ok && m["kind"] == "WasmPlugin" {
			if spec["failStrategy"] == nil {
				spec["failStrategy"] = "FAIL_CLOSE"
			}
			if spec["phase"] == nil {
				spec["phase"] = "UNSPECIFIED_PHASE"
			}
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return []byte(b.String()), nil
}

// emptyStatus: a status a client never sets ({} or only nulls, as an HTTPRoute's
// `parents: null`).
func emptyStatus(st map[string]any) bool {
	for _, v := range st {
		if v != nil {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

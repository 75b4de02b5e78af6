package v1alpha1_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/api/v1alpha1"
	"github.com/meshplug/meshplug/internal/crdschema"
)

const (
	crdFile     = "../../deploy/crds/meshplug.io_trafficpolicies.yaml"
	exampleFile = "../../deploy/examples/trafficpolicy.yaml"
)

// TestCRDIsUpToDate regenerates the CRD and the deepcopy functions with the
// controller-gen of the Makefile into a temporary directory and compares them with the
// committed files: run `make generate` when it fails.
func TestCRDIsUpToDate(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^CONTROLLER_GEN \?= \$\(GO\) run (\S+)$`).FindSubmatch(mk)
	require.NotNil(t, m, "Makefile has no CONTROLLER_GEN line")
	tmp := t.TempDir()
	run := func(args ...string) {
		cmd := exec.Command("go", append([]string{"run", string(m[1])}, args...)...)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "controller-gen %v: %s", args, out)
	}
	run("crd:crdVersions=v1", "paths=./api/...", "output:crd:artifacts:config="+tmp)
	want, err := os.ReadFile(filepath.Join(tmp, filepath.Base(crdFile)))
	require.NoError(t, err)
	got, err := os.ReadFile(crdFile)
	require.NoError(t, err)
	sameFile(t, want, got, "deploy/crds is stale: run make generate")

	configs, err := filepath.Glob("../../filters/*/config/zz_generated.deepcopy.go")
	require.NoError(t, err)
	pkgs := []string{"api/v1alpha1"}
	for _, c := range configs {
		pkgs = append(pkgs, strings.TrimPrefix(filepath.Dir(c), "../../"))
	}
	for _, pkg := range pkgs {
		dir := filepath.Join(tmp, filepath.Base(pkg))
		run("object", "paths=./"+pkg, "output:object:dir="+dir)
		want, err := os.ReadFile(filepath.Join(dir, "zz_generated.deepcopy.go"))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join("../..", pkg, "zz_generated.deepcopy.go"))
		require.NoError(t, err)
		sameFile(t, want, got, pkg+"/zz_generated.deepcopy.go is stale: run make generate")
	}
}

// sameFile reports the first line where got differs from want.
func sameFile(t *testing.T, want, got []byte, msg string) {
	t.Helper()
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl || i >= len(w) || i >= len(g) {
			t.Errorf("%s: line %d: generated %q, committed %q", msg, i+1, wl, gl)
			return
		}
	}
}

func crds(t *testing.T) *crdschema.Set {
	t.Helper()
	s, err := crdschema.Load(crdFile)
	require.NoError(t, err)
	require.True(t, s.Has("meshplug.io/v1alpha1", "TrafficPolicy"))
	return s
}

func TestExamplesAreValid(t *testing.T) {
	set := crds(t)
	b, err := os.ReadFile(exampleFile)
	require.NoError(t, err)
	docs := crdschema.SplitYAML(b)
	require.Len(t, docs, 3)
	for _, doc := range docs {
		p, err := v1alpha1.Decode(doc)
		require.NoError(t, err)
		assert.NoError(t, p.Validate(), p.String())
		assert.NoError(t, set.ValidateYAML(doc), p.String())
	}
}

const base = `apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: p, namespace: ns}
spec:
  selector: {matchLabels: {app: a}}
  auth:
    providers:
      corp:
        algorithms: [RS256]
        remote_jwks: {http_uri: {uri: "https://idp/jwks", cluster: idp}}
    rules:
    - match: {prefix: /}
      requires: [corp]
`

// TestBrokenPolicies: what the CRD's schema and CEL rules catch in the API server,
// Decode+Validate catch too, with the field path; the filter's own checks (references
// between fields, regexps) only Validate can make.
func TestBrokenPolicies(t *testing.T) {
	set := crds(t)
	cases := []struct {
		name, old, new string
		validate, crd  string // substrings of the errors; "" = none expected
	}{
		{"valid", "", "", "", ""},
		{"both selector and targetRefs", "  selector: {matchLabels: {app: a}}\n", "  selector: {matchLabels: {app: a}}\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n",
			"spec: exactly one of selector and targetRefs", "exactly one of selector and targetRefs"},
		{"neither", "  selector: {matchLabels: {app: a}}\n", "", "spec: exactly one of selector and targetRefs", "exactly one of selector and targetRefs"},
		{"targetRef kind", "  selector: {matchLabels: {app: a}}\n", "  targetRefs: [{group: '', kind: Gateway, name: g}]\n",
			"spec.targetRefs[0]: targetRefs may name a Gateway", "targetRefs may name a Gateway"},
		{"attachTo Gateway", "  selector: {matchLabels: {app: a}}\n", "  selector: {matchLabels: {app: a}}\n  attachTo: Gateway\n", "", ""},
		{"attachTo enum", "  selector: {matchLabels: {app: a}}\n", "  selector: {matchLabels: {app: a}}\n  attachTo: gateway\n",
			`spec.attachTo: must be Sidecar, Gateway or Waypoint, got "gateway"`, `spec.attachTo: Unsupported value: "gateway"`},
		{"attachTo Waypoint with selector", "  selector: {matchLabels: {app: a}}\n", "  selector: {matchLabels: {app: a}}\n  attachTo: Waypoint\n",
			"spec.attachTo: Waypoint needs targetRefs", "attachTo Waypoint needs targetRefs"},
		{"attachTo Sidecar with targetRefs", "  selector: {matchLabels: {app: a}}\n", "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]\n  attachTo: Sidecar\n",
			"spec.attachTo: Sidecar needs a selector", "attachTo Sidecar needs a selector"},
		{"attachTo Gateway with Service", "  selector: {matchLabels: {app: a}}\n", "  targetRefs: [{group: '', kind: Service, name: s}]\n  attachTo: Gateway\n",
			"spec.attachTo: Gateway cannot have Service targetRefs", "attachTo Gateway cannot have Service targetRefs"},
		{"unknown section", "  auth:\n", "  authx:\n", "spec.authx: unknown field", "unknown field"},
		{"no section", base[strings.Index(base, "  auth:\n"):], "", "spec: at least one section is required", "at least one section"},
		{"unknown field in section", "requires: [corp]", "requires: [corp]\n      requirez: [corp]", "spec.auth.rules[0].requirez: unknown field", `spec.auth.rules[0].requirez: Invalid value: null: unknown field`},
		{"wrong type", "algorithms: [RS256]", "algorithms: RS256", "spec.auth.providers.corp.algorithms: expected an array, got a string", "spec.auth.providers.corp.algorithms: Invalid value: \"string\""},
		{"missing cluster", "cluster: idp", "timeout: 1s", "spec.auth.providers.corp.remote_jwks.http_uri.cluster: required", "spec.auth.providers.corp.remote_jwks.http_uri.cluster: Required value"},
		{"bad duration", "cluster: idp", "cluster: idp, timeout: 1 second", "spec.auth.providers.corp.remote_jwks.http_uri.timeout: invalid duration", "spec.auth.providers.corp.remote_jwks.http_uri.timeout: Invalid value"},
		{"both jwks", "        remote_jwks:", "        local_jwks: {inline_string: x}\n        remote_jwks:", "spec.auth.providers.corp.remote_jwks: only one of", "exactly one of local_jwks and remote_jwks"},
		{"two matchers", "{prefix: /}", "{prefix: /, path: /a}", "spec.auth.rules[0].match: exactly one of prefix, path and regex", "exactly one of prefix, path and regex"},
		{"bad regexp", "{prefix: /}", "{regex: '(['}", "spec.auth.rules[0].match.regex: invalid regexp", ""},
		{"unknown provider", "requires: [corp]", "requires: [corpp]", `spec.auth.rules[0].requires[0]: unknown provider "corpp"`, ""},
		{"bad name", "metadata: {name: p,", "metadata: {name: P_1,", "metadata.name: must be a DNS subdomain", ""},
		{"duplicate key", "  selector: {matchLabels: {app: a}}\n", "  selector: {matchLabels: {app: a}}\n  selector: {matchLabels: {app: b}}\n", "invalid YAML", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(base, c.old, c.new, 1)
			require.True(t, c.old == "" || doc != base, "mutation did not apply")
			p, err := v1alpha1.Decode([]byte(doc))
			if err == nil {
				err = p.Validate()
			}
			if c.validate == "" {
				assert.NoError(t, err)
			} else if assert.Error(t, err) {
				assert.Contains(t, err.Error(), c.validate)
			}
			if c.name == "duplicate key" {
				return // sigs.k8s.io/yaml's non-strict decoding (the API server's) keeps the last one
			}
			err = set.ValidateYAML([]byte(doc))
			if c.crd == "" {
				assert.NoError(t, err)
			} else if assert.Error(t, err) {
				assert.Contains(t, err.Error(), c.crd)
			}
		})
	}
}

// TestSectionsMatchSpec: every pointer field of TrafficPolicySpec after the selection
// fields is a section in Sections, in order.
func TestSectionsMatchSpec(t *testing.T) {
	var fields []string
	for _, s := range v1alpha1.Sections {
		fields = append(fields, s.Field)
		assert.NotEmpty(t, s.Filter)
		assert.Contains(t, []string{v1alpha1.PhaseAuthn, v1alpha1.PhaseAuthz, v1alpha1.PhaseStats, v1alpha1.PhaseUnspecified}, s.Phase)
		assert.Contains(t, []string{v1alpha1.ModeServer, v1alpha1.ModeClient}, s.Mode)
	}
	assert.Equal(t, []string{"auth", "rateLimit", "routeHints", "faults"}, fields)
	p, err := v1alpha1.Decode([]byte(base))
	require.NoError(t, err)
	assert.Same(t, p.Spec.Auth, v1alpha1.Sections[0].Spec(&p.Spec))
	p.Spec.Auth = nil
	assert.Nil(t, v1alpha1.Sections[0].Spec(&p.Spec))
}

// TestPolicyDocExample: the example in docs/policy.md is the first policy of the
// example file, which the tests above and envoyfilters' tests validate and render.
func TestPolicyDocExample(t *testing.T) {
	md, err := os.ReadFile("../../docs/policy.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(md), "```yaml\n")
	require.True(t, ok, "docs/policy.md has no yaml block")
	block, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	b, err := os.ReadFile(exampleFile)
	require.NoError(t, err)
	first := string(crdschema.SplitYAML(b)[0])
	for strings.HasPrefix(first, "#") {
		_, first, _ = strings.Cut(first, "\n")
	}
	assert.Equal(t, first, block)
}

// TestPolicyDocSectionTable: docs/policy.md's table of sections is v1alpha1.Sections.
func TestPolicyDocSectionTable(t *testing.T) {
	md, err := os.ReadFile("../../docs/policy.md")
	require.NoError(t, err)
	var rows []string
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "| `") && strings.Contains(l, ".wasm` |") {
			rows = append(rows, l)
		}
	}
	var want []string
	for _, s := range v1alpha1.Sections {
		fail := "FAIL_CLOSE"
		if s.FailOpen {
			fail = "FAIL_OPEN"
		}
		want = append(want, fmt.Sprintf("| `%s` | `%s.wasm` | `%s` | %d | `%s` | `%s` |", s.Field, s.Filter, s.Phase, s.Priority, s.Mode, fail))
	}
	assert.Equal(t, want, rows)
}

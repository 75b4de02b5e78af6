package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/internal/envoyvalidate"
	"github.com/meshplug/meshplug/internal/version"
	"github.com/meshplug/meshplug/internal/wasmoci"
	"github.com/meshplug/meshplug/internal/yamldoc"
)

const example = "../../deploy/examples/trafficpolicy.yaml"

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func golden(t *testing.T, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		g, err := os.ReadFile(filepath.Join("../../envoyfilters/testdata", n))
		require.NoError(t, err)
		b.Write(g)
	}
	return b.String()
}

func TestValidateExample(t *testing.T) {
	code, out, errs := runCLI(t, "", "validate", example)
	assert.Equal(t, 0, code, errs)
	assert.Equal(t, "3 policies valid\n", out)

	ex, err := os.ReadFile(example)
	require.NoError(t, err)
	one := filepath.Join(t.TempDir(), "one.yaml")
	require.NoError(t, os.WriteFile(one, yamldoc.Split(ex)[0].Data, 0o644))
	code, out, errs = runCLI(t, "", "validate", one)
	assert.Equal(t, 0, code, errs)
	assert.Equal(t, "1 policy valid\n", out)
}

func TestValidateBrokenPolicies(t *testing.T) {
	broken := `apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: a, namespace: ns}
spec:
  selector: {matchLabels: {app: a}}
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: g}]
  auth:
    rules:
    - match: {regex: "(["}
      requires: [corp]
---
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: b}
spec:
  selector: {matchLabels: {app: a}}
  auth:
    rulez: []
---
apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: c}
spec:
  selector: {matchLabels: {app: a}}
  auth:
    providers:
      corp: {algorithms: [RS256], remote_jwks: {http_uri: {uri: "https://idp/jwks"}}}
    default_rule: {requires: [corp]}
`
	dir := t.TempDir()
	file := filepath.Join(dir, "broken.yaml")
	require.NoError(t, os.WriteFile(file, []byte(broken), 0o644))
	code, out, errs := runCLI(t, "", "validate", example, file)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	// Each error at its field's line (a missing field: its parent's), unknown fields
	// with the nearest known name.
	assert.Equal(t, file+`:4: document 1 (TrafficPolicy ns/a): spec: exactly one of selector and targetRefs is required
`+file+`:9: document 1 (TrafficPolicy ns/a): spec.auth.rules[0].match.regex: invalid regexp: error parsing regexp: missing closing ]: `+"`[`"+`
`+file+`:18: document 2: spec.auth.rulez: unknown field (did you mean "rules"?)
`+file+`:27: document 3 (TrafficPolicy c): spec.auth.providers.corp.remote_jwks.http_uri.cluster: required
`, errs)

	// render refuses the same documents with the same messages.
	code, out, errs2 := runCLI(t, "", "render", "--format", "envoy", file)
	assert.Equal(t, 1, code)
	assert.Empty(t, out)
	assert.Equal(t, errs, errs2)

	code, _, errs = runCLI(t, broken[:strings.Index(broken, "---")], "validate", "-")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "-:4: document 1 (TrafficPolicy ns/a): spec: exactly one of")
}

// TestRender: the CLI writes what envoyfilters renders (the golden files, validated
// against Istio's and Envoy's schemas there), computing the modules' sha256 itself.
func TestRender(t *testing.T) {
	wasm := t.TempDir()
	for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
		require.NoError(t, os.WriteFile(filepath.Join(wasm, f+".wasm"), []byte(f+".wasm"), 0o644))
	}
	// The golden files are rendered with per-filter modules; TestRenderBundle checks the
	// default, the bundle.
	mod := []string{"--wasm-dir", wasm, "--module-url", "oci://ghcr.io/meshplug/{filter}:v0.1.0", "--per-filter-modules"}

	code, out, errs := runCLI(t, "", append([]string{"render", example}, mod...)...)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, golden(t, "orders.wasmplugin.yaml", "orders-canary.wasmplugin.yaml", "public-gateway.wasmplugin.yaml"), out)

	code, out, errs = runCLI(t, "", append([]string{"render", "--format", "envoyfilter", example}, mod...)...)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, golden(t, "orders.envoyfilter.yaml", "orders-canary.envoyfilter.yaml", "public-gateway.envoyfilter.yaml"), out)

	b, err := os.ReadFile(example)
	require.NoError(t, err)
	docs := yamldoc.Split(b)
	code, out, errs = runCLI(t, string(docs[2].Data), "render", "--format", "envoy", "-") // the bundle by default
	require.Equal(t, 0, code, errs)
	assert.Equal(t, golden(t, "public-gateway.envoy.yaml"), out)

	code, out, errs = runCLI(t, "", "render", "--format", "routes", "--host", "orders.shop.svc.cluster.local", "--port", "8080", example)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, golden(t, "examples.routes.yaml"), out)
	code, _, errs = runCLI(t, "", "render", "--format", "routes", "--host", "orders.shop.svc.cluster.local", example)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "TrafficPolicy ingress/public-gateway: runs on gateways, whose routes are HTTPRoutes: the destination service's port is required")

	code, out, errs = runCLI(t, "", "render", "--format", "ratelimit-config", "../../deploy/examples/ratelimit-global.yaml")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, golden(t, "checkout.ratelimit-config.yaml"), out)
}

// TestRenderBundle: by default every WasmPlugin and EnvoyFilter runs from the bundle
// meshplug.wasm (one URL and digest), its pluginName / root_id naming the filter.
func TestRenderBundle(t *testing.T) {
	wasm := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(wasm, "meshplug.wasm"), []byte("bundle"), 0o644))
	img, err := wasmoci.Pack([]byte("bundle")) // oci://: the digest of the image meshplug push makes
	require.NoError(t, err)
	for _, format := range []string{"istio", "envoyfilter"} {
		code, out, errs := runCLI(t, "", "render", "--format", format, "--wasm-dir", wasm, "--module-url", "oci://ghcr.io/meshplug/{filter}:v0.1.0", example)
		require.Equal(t, 0, code, errs)
		assert.NotContains(t, out, "/auth:v0.1.0", format)
		urls := strings.Count(out, "oci://ghcr.io/meshplug/meshplug:v0.1.0")
		sums := strings.Count(out, img.Manifest.Digest.Encoded())
		filters := strings.Count(out, "meshplug.io/filter: ")
		assert.Positive(t, filters, format)
		assert.Equal(t, filters, urls, "%s: every plugin from the bundle's URL", format)
		assert.Equal(t, filters, sums, "%s: and digest", format)
		for _, f := range []string{"auth", "ratelimit", "routehint", "fault"} {
			key := map[string]string{"istio": "pluginName: ", "envoyfilter": "rootId: "}[format]
			assert.Equal(t, strings.Count(out, "meshplug.io/filter: "+f+"\n"), strings.Count(out, key+f+"\n"), "%s: %s selected by its root id", format, f)
		}
	}
}

func TestRenderUsageErrors(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"format":         {[]string{"render", "--format", "helm", "--module-url", "x", example}, `--format must be istio, envoyfilter, envoy, routes or ratelimit-config, got "helm"`},
		"no global":      {[]string{"render", "--format", "ratelimit-config", example}, "no policy has a rateLimit section in mode global"},
		"routes no host": {[]string{"render", "--format", "routes", example}, "the destination host is required"},
		"no module url":  {[]string{"render", example}, "--module-url is required"},
		"no wasm":        {[]string{"render", "--module-url", "https://m/", "--wasm-dir", "/nonexistent", example}, "module of the bundle"},
		"no filter wasm": {[]string{"render", "--module-url", "https://m/", "--wasm-dir", "/nonexistent", "--per-filter-modules", example}, "module of section auth"},
		"envoy 3 docs":   {[]string{"render", "--format", "envoy", example}, "--format envoy renders one policy, got 3 documents"},
		"no file":        {[]string{"validate", "/nonexistent.yaml"}, "no such file"},
		"no args":        {[]string{"validate"}, "requires at least 1 arg"},
	} {
		code, out, errs := runCLI(t, "", c.args...)
		assert.Equal(t, 1, code, name)
		assert.Empty(t, out, name)
		assert.Contains(t, errs, c.want, name)
	}
}

// TestVersion: `version` and `--version` print the same line, the build's version.Info
// (internal/release's TestImage runs a binary linked with a release version and commit).
func TestVersion(t *testing.T) {
	want := version.Get().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errs := runCLI(t, "", args...)
		assert.Equal(t, 0, code, errs)
		assert.Equal(t, want, out, args)
		assert.Regexp(t, `^meshplug \S+ commit \S+ go\S+ \w+/\w+\n$`, out)
	}
}

func TestNewFilter(t *testing.T) {
	mod := t.TempDir() // a module of the user's own; the scaffold takes import paths from its go.mod
	require.NoError(t, os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/team\n"), 0o644))
	dir := filepath.Join(mod, "filters", "hello")
	code, out, errs := runCLI(t, "", "new", "filter", "hello", "--dir", dir)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "wrote "+dir)
	for _, f := range []string{"main.go", "README.md", "config/config.go"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}
	mainGo, err := os.ReadFile(filepath.Join(dir, "main.go"))
	require.NoError(t, err)
	assert.Contains(t, string(mainGo), "example.com/team/filters/hello/config")
	code, _, errs = runCLI(t, "", "new", "filter", "hello", "--dir", dir)
	assert.Equal(t, 1, code, "a second run must not overwrite the folder")
	assert.NotEmpty(t, errs)
	code, _, errs = runCLI(t, "", "new", "filter", "Bad Name", "--dir", filepath.Join(mod, "x"))
	assert.Equal(t, 1, code)
	assert.NotEmpty(t, errs)
}

func TestValidateWarnsOnPathRules(t *testing.T) {
	doc := `apiVersion: meshplug.io/v1alpha1
kind: TrafficPolicy
metadata: {name: w, namespace: ns}
spec:
  selector: {matchLabels: {app: a}}
  auth:
    path_normalization: {path_params: literal}
    rules:
    - match: {regex: "^/admin//"}
      public: true
    default_rule: {public: true}
`
	code, out, errs := runCLI(t, doc, "validate", "-")
	assert.Equal(t, 0, code, errs)
	assert.Equal(t, "1 policy valid\n", out)
	assert.Contains(t, errs, `-:7: document 1 (TrafficPolicy ns/w): warning: spec.auth.path_normalization.path_params: "literal" relies on every upstream`)
	assert.Contains(t, errs, `-:9: document 1 (TrafficPolicy ns/w): warning: spec.auth.rules[0].match.regex: the regex contains "//"`)
}

// TestWarnsOnSplitDirections: validate and render warn (exit status 0) about a sidecar
// policy whose route hints read the header auth writes on the other side.
func TestWarnsOnSplitDirections(t *testing.T) {
	wasm := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(wasm, "meshplug.wasm"), []byte("bundle"), 0o644))
	for _, args := range [][]string{
		{"validate", "testdata/split-directions.yaml"},
		{"render", "--wasm-dir", wasm, "--module-url", "https://m.example/", "testdata/split-directions.yaml"},
	} {
		code, out, errs := runCLI(t, "", args...)
		require.Equal(t, 0, code, errs)
		assert.NotEmpty(t, out)
		assert.Contains(t, errs, `warning: spec.routeHints.rules[0].match.all[0].name: reads "x-consumer", which auth writes on the inbound side`, args[0])
	}
}

// TestRenderEnvoyUpstreams: render --format envoy takes --upstream as run does
// (NAME=HOST:PORT, the first the default), so route hint targets get their upstream in
// the envoy.yaml; a single HOST:PORT still works; wrong flags are refused.
func TestRenderEnvoyUpstreams(t *testing.T) {
	b, err := os.ReadFile(example)
	require.NoError(t, err)
	gw := string(yamldoc.Split(b)[2].Data) // public-gateway: targets beta {x-route-hint: beta}, stable
	code, out, errs := runCLI(t, gw, "render", "--format", "envoy", "--upstream", "stable=10.0.0.1:8080", "--upstream", "beta=10.0.0.2:8080", "-")
	require.Equal(t, 0, code, errs)
	_, err = envoyvalidate.BootstrapYAML([]byte(out))
	require.NoError(t, err)
	assert.Regexp(t, `(?s)name: x-route-hint\s+string_match:\s+exact: beta.*cluster: upstream-beta.*cluster: upstream\b`, out)
	assert.Contains(t, out, "address: 10.0.0.2")
	assert.Contains(t, out, "address: 10.0.0.1")

	code, out, errs = runCLI(t, gw, "render", "--format", "envoy", "--upstream", "10.0.0.9:80", "-")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "address: 10.0.0.9")
	assert.NotContains(t, out, "upstream-beta")

	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"unknown target": {[]string{"--upstream", "a=10.0.0.1:80", "--upstream", "gamma=10.0.0.3:80"}, `"gamma" is not a routeHints target`},
		"mixed forms":    {[]string{"--upstream", "10.0.0.1:80", "--upstream", "beta=10.0.0.3:80"}, `want NAME=HOST:PORT`},
		"twice":          {[]string{"--upstream", "a=10.0.0.1:80", "--upstream", "beta=10.0.0.3:80", "--upstream", "beta=10.0.0.4:80"}, `--upstream beta given twice`},
	} {
		code, out, errs := runCLI(t, gw, append(append([]string{"render", "--format", "envoy"}, c.args...), "-")...)
		assert.Equal(t, 1, code, name)
		assert.Empty(t, out, name)
		assert.Contains(t, errs, c.want, name)
	}
}

//go:build !wasip1

package main

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/testenv"
)

var fence = regexp.MustCompile("(?s)```(json|yaml)\n(.*?)```")

// TestReadmeExample checks the README's example: the filter configuration, the
// WasmPlugin carrying it, and the VirtualService and DestinationRule consuming the
// hints, driven through routehint.wasm with the VirtualService's routes in testenv's
// router.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var jsonCfg []byte
	docs := map[string]map[string]any{} // by kind
	for _, m := range fence.FindAllSubmatch(readme, -1) {
		switch string(m[1]) {
		case "json":
			require.Nil(t, jsonCfg, "one JSON example")
			jsonCfg = m[2]
		case "yaml":
			dec := yaml.NewDecoder(strings.NewReader(string(m[2])))
			for {
				var doc map[string]any
				if err := dec.Decode(&doc); err != nil {
					break
				}
				docs[doc["kind"].(string)] = doc
			}
		}
	}
	require.NotNil(t, jsonCfg)
	require.Contains(t, docs, "WasmPlugin")
	require.Contains(t, docs, "VirtualService")
	require.Contains(t, docs, "DestinationRule")

	// The JSON and the WasmPlugin's pluginConfig are the same configuration.
	var fromJSON, fromYAML config.Spec
	require.NoError(t, json.Unmarshal(jsonCfg, &fromJSON))
	pluginConfig, err := json.Marshal(spec(docs["WasmPlugin"])["pluginConfig"])
	require.NoError(t, err)
	cfg, err := config.Parse(pluginConfig)
	require.NoError(t, err, "pluginConfig")
	_, err = config.Parse(jsonCfg)
	require.NoError(t, err, "JSON example")
	require.NoError(t, json.Unmarshal(pluginConfig, &fromYAML))
	assert.Equal(t, fromJSON, fromYAML)

	// DestinationRule subsets: one per target.
	subsets := map[string]bool{}
	for _, s := range spec(docs["DestinationRule"])["subsets"].([]any) {
		subsets[s.(map[string]any)["name"].(string)] = true
	}
	for _, tg := range cfg.Targets {
		assert.True(t, subsets[tg.Name], "subset for target %s", tg.Name)
	}

	// VirtualService: its header matches name hints some target sets; its routes go
	// to existing subsets. They become testenv routes, cluster = subset.
	setBy := map[string]bool{}
	for _, tg := range cfg.Targets {
		for _, h := range tg.Headers {
			setBy[h.Name+"="+h.Value] = true
		}
	}
	var routes []testenv.Route
	for _, r := range spec(docs["VirtualService"])["http"].([]any) {
		hr := r.(map[string]any)
		dest := hr["route"].([]any)[0].(map[string]any)["destination"].(map[string]any)
		subset := dest["subset"].(string)
		require.True(t, subsets[subset], "route %v to a missing subset", hr["name"])
		route := testenv.Route{Name: hr["name"].(string), Match: testenv.RouteMatch{Prefix: "/"}, Cluster: subset}
		if ms, ok := hr["match"].([]any); ok {
			require.Len(t, ms, 1, "one match per route in the example")
			for name, m := range ms[0].(map[string]any)["headers"].(map[string]any) {
				exact := m.(map[string]any)["exact"].(string)
				assert.True(t, setBy[name+"="+exact], "the VirtualService matches %s=%s, which no target sets", name, exact)
				route.Match.Headers = append(route.Match.Headers, testenv.HeaderMatcher{Name: name, Exact: exact})
			}
		}
		routes = append(routes, route)
	}

	h := testenv.NewForTest(t, testenv.Options{Routes: routes}, testenv.Plugin{Name: "routehint", Wasm: testenv.MustBuildGuest(t, "."), Config: pluginConfig})
	for _, tc := range []struct {
		name    string
		path    string
		headers [][2]string
		subset  string
		echo    string // the echo header: the target, "-" when no rule acted
	}{
		{"beta tester", "/reviews/1", [][2]string{{"x-consumer", "carol"}, {"x-consumer-group", "beta"}}, "canary", "canary"},
		{"sticky alice", "/reviews/1", [][2]string{{"x-consumer", "alice"}}, bucketTarget("reviews-v2", "alice", 10), bucketTarget("reviews-v2", "alice", 10)},
		{"sticky bob", "/reviews/1", [][2]string{{"x-consumer", "bob"}}, bucketTarget("reviews-v2", "bob", 10), bucketTarget("reviews-v2", "bob", 10)},
		{"other paths", "/ratings", [][2]string{{"x-consumer", "alice"}}, "stable", "-"},
		{"spoofed hint", "/ratings", [][2]string{{"x-route-hint", "canary"}}, "stable", "-"},
		{"staff override", "/ratings", [][2]string{{"x-consumer-group", "staff"}, {"cookie", "canary_override=canary"}}, "canary", "canary"},
		{"override outside staff", "/ratings", [][2]string{{"cookie", "canary_override=canary"}}, "stable", "-"},
	} {
		resp := h.MustDo(t, testenv.Request{Path: tc.path, Headers: tc.headers})
		assert.Equal(t, tc.subset, resp.Cluster, tc.name)
		echo, _ := resp.Headers.Get("x-route-target")
		assert.Equal(t, tc.echo, echo, tc.name)
	}
	// The sticky rows above are not both stable by luck of the two names: over many
	// users about a tenth get the canary subset.
	canaries := 0
	for i := 0; i < 500; i++ {
		resp := h.MustDo(t, testenv.Request{Path: "/reviews", Headers: [][2]string{{"x-consumer", "user-" + strconv.Itoa(i)}}})
		if resp.Cluster == "canary" {
			canaries++
		}
	}
	assert.InDelta(t, 50, canaries, 25)
}

func spec(doc map[string]any) map[string]any { return doc["spec"].(map[string]any) }

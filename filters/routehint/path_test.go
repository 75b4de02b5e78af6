//go:build !wasip1

package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/httpreq/pathtest"
	"github.com/meshplug/meshplug/filters/routehint/config"
	"github.com/meshplug/meshplug/internal/envoypath"
	"github.com/meshplug/meshplug/testenv"
)

var presets = []envoypath.Options{envoypath.IstioNone, envoypath.IstioBase, envoypath.IstioMergeSlashes, envoypath.IstioDecodeAndMergeSlashes}

func pathCfg(params string, cond map[string]any) []byte {
	cfg := map[string]any{
		"targets": []any{map[string]any{"name": "beta", "headers": map[string]any{"x-route-hint": "beta"}}},
		"rules":   []any{map[string]any{"name": "beta-path", "match": map[string]any{"all": []any{cond}}, "target": "beta"}},
	}
	if params != "" {
		cfg["path_normalization"] = map[string]any{"path_params": params}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

// TestPathClassesThroughWasm: every spelling of /beta/x that Go's net/http, a
// Tomcat-style upstream or a decoding upstream serves as /beta/x, handed over as each
// of Istio's presets would, gets the hint of a `path prefix /beta/` rule when nothing
// ambiguous is left in it, and an ambiguous one gets it only when no upstream serves
// it outside /beta/; spellings upstreams serve elsewhere never get it.
func TestPathClassesThroughWasm(t *testing.T) {
	const target = "/beta/x"
	h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Name: "routehint", Wasm: testenv.MustBuildGuest(t, "."),
		Config: pathCfg("", map[string]any{"from": "path", "op": "prefix", "value": "/beta/"})})
	hinted, plain := 0, 0
	for _, raw := range pathtest.Spellings(target) {
		if !pathtest.ServedAs(raw, target, false) {
			continue
		}
		for _, p := range presets {
			resPath, resAct := envoypath.Normalize(raw, p)
			if resAct != envoypath.Continue {
				continue
			}
			resp := h.MustDo(t, testenv.Request{Path: resPath})
			require.NotNil(t, resp.Upstream)
			got, _ := resp.Upstream.Headers.Get("x-route-hint")
			// An unambiguous path gets the hint; an ambiguous one (%2F, %5C, ';' or a raw
			// '\' left after the mesh) may only get it when every upstream that serves it at all
			// serves it under /beta/.
			lower := strings.ToLower(resPath)
			if !strings.Contains(lower, "%2f") && !strings.Contains(lower, "%5c") && !strings.Contains(lower, ";") && !strings.Contains(lower[1:], `\`) {
				assert.Equal(t, "beta", got, "%q handed over as %q", raw, resPath)
				hinted++
				continue
			}
			plain++
			if got != "" {
				for _, f := range pathtest.Upstreams {
					s, ok := f(resPath)
					assert.True(t, !ok || strings.HasPrefix(s, "/beta/"), "%q handed over as %q got the hint, but an upstream serves %q", raw, resPath, s)
				}
			}
		}
	}
	require.Greater(t, hinted, 500)
	t.Logf("%d unambiguous requests hinted, %d ambiguous ones judged on every reading", hinted, plain)
	// Spellings upstreams serve as another path never get the hint.
	for _, raw := range []string{"/beta%2F..%2Fother", "/beta;x/../../other", "/other/beta/x", "/BETA/x", "/beta"} {
		resp := h.MustDo(t, testenv.Request{Path: raw})
		got, _ := resp.Upstream.Headers.Get("x-route-hint")
		assert.Empty(t, got, raw)
	}
}

func TestPathOptionsThroughWasm(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	for _, c := range []struct {
		name, params, path string
		cond               map[string]any
		hint               bool
	}{
		{"equal through dot segments", "", "/a/../beta", map[string]any{"from": "path", "op": "equal", "value": "/beta"}, true},
		{"equal through encoded letter", "", "/b%65ta", map[string]any{"from": "path", "op": "equal", "value": "/beta"}, true},
		{"params ambiguous: not every reading equal", "", "/beta;x", map[string]any{"from": "path", "op": "equal", "value": "/beta"}, false},
		{"params strip: equal", "strip", "/beta;jsessionid=1", map[string]any{"from": "path", "op": "equal", "value": "/beta"}, true},
		{"params literal: not equal", "literal", "/beta;x", map[string]any{"from": "path", "op": "equal", "value": "/beta"}, false},
		{"params ambiguous: prefix holds for both readings", "", "/beta/x;y", map[string]any{"from": "path", "op": "prefix", "value": "/beta/"}, true},
		{"not_equal: no reading equal", "", "/beta;x", map[string]any{"from": "path", "op": "not_equal", "value": "/beta"}, false},
		{"in", "", "//beta", map[string]any{"from": "path", "op": "in", "values": []any{"/alpha", "/beta"}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Name: "routehint", Wasm: wasm, Config: pathCfg(c.params, c.cond)})
			resp := h.MustDo(t, testenv.Request{Path: c.path})
			require.NotNil(t, resp.Upstream)
			got, _ := resp.Upstream.Headers.Get("x-route-hint")
			assert.Equal(t, c.hint, got == "beta")
		})
	}
}

func TestPathConfigErrors(t *testing.T) {
	for _, c := range []struct {
		params string
		cond   map[string]any
		err    string
	}{
		{"tomcat", map[string]any{"from": "path", "op": "prefix", "value": "/a"}, "path_normalization.path_params: must be one of"},
		{"", map[string]any{"from": "path", "op": "prefix", "value": "//a"}, `rules[0].match.all[0].value: "//a" is not in canonical form`},
		{"", map[string]any{"from": "path", "op": "in", "values": []any{"/a", "/%62"}}, `rules[0].match.all[0].values[1]: "/%62" is not in canonical form`},
	} {
		_, err := config.Parse(pathCfg(c.params, c.cond))
		require.Error(t, err)
		assert.Contains(t, err.Error(), c.err)
	}
}

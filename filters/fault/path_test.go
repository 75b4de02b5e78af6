//go:build !wasip1

package main

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/fault/config"
	"github.com/meshplug/meshplug/filters/httpreq/pathtest"
	"github.com/meshplug/meshplug/internal/envoypath"
	"github.com/meshplug/meshplug/testenv"
)

var presets = []envoypath.Options{envoypath.IstioNone, envoypath.IstioBase, envoypath.IstioMergeSlashes, envoypath.IstioDecodeAndMergeSlashes}

func abortOn(matcher, extra string) []byte {
	return []byte(fmt.Sprintf(`{%s"faults":[{"abort":{"http_status":503,"percentage":{"numerator":100}},"headers":[%s]}]}`, extra, matcher))
}

// TestPathClassesThroughWasm: a fault aimed at /items/ with a :path prefix matcher
// hits every spelling of /items/1 that Go's net/http, a Tomcat-style upstream or a
// decoding upstream serves as /items/1, handed over as each of Istio's presets would
// (the query kept), and an inverted one hits none of them.
func TestPathClassesThroughWasm(t *testing.T) {
	const target = "/items/1"
	wasm := testenv.MustBuildGuest(t, ".")
	for _, c := range []struct {
		name, matcher string
		status        int
	}{
		{"prefix", `{"name":":path","prefix_match":"/items/"}`, 503},
		{"string_match exact with query", `{"name":":path","string_match":{"exact":"/items/1?q=%2F"}}`, 503},
		{"regex", `{"name":":path","safe_regex_match":{"regex":"/items/[0-9]+(\\?.*)?"}}`, 503},
		{"inverted prefix", `{"name":":path","prefix_match":"/items/","invert_match":true}`, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Name: "fault", Wasm: wasm, Config: abortOn(c.matcher, "")})
			n := 0
			for _, raw := range pathtest.Spellings(target) {
				if !pathtest.ServedAs(raw, target, false) {
					continue
				}
				for _, p := range presets {
					resPath, resAct := envoypath.Normalize(raw+"?q=%2F", p)
					if resAct != envoypath.Continue {
						continue
					}
					n++
					resp := h.MustDo(t, testenv.Request{Path: resPath})
					assert.Equal(t, c.status, resp.Status, "%q handed over as %q", raw, resPath)
				}
			}
			require.Greater(t, n, 2000)
			// Control: another path.
			other := h.MustDo(t, testenv.Request{Path: "/other/items/1"})
			assert.Equal(t, 503+200-c.status, other.Status)
		})
	}
}

func TestPathOptionsThroughWasm(t *testing.T) {
	wasm := testenv.MustBuildGuest(t, ".")
	for _, c := range []struct {
		name, extra, matcher, path string
		status                     int
	}{
		{"params ambiguous: either reading", "", `{"name":":path","exact_match":"/items"}`, "/items;jsessionid=1", 503},
		{"params strip", `"path_normalization":{"path_params":"strip"},`, `{"name":":path","exact_match":"/items"}`, "/items;jsessionid=1", 503},
		{"params literal", `"path_normalization":{"path_params":"literal"},`, `{"name":":path","exact_match":"/items"}`, "/items;jsessionid=1", 200},
		{"other headers untouched", "", `{"name":"x-path","exact_match":"//a"}`, "/", 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testenv.NewForTest(t, testenv.Options{}, testenv.Plugin{Name: "fault", Wasm: wasm, Config: abortOn(c.matcher, c.extra)})
			assert.Equal(t, c.status, h.MustDo(t, testenv.Request{Path: c.path, Headers: [][2]string{{"x-path", "/a"}}}).Status)
		})
	}
}

func TestPathConfigErrors(t *testing.T) {
	for _, c := range []struct{ cfg, err string }{
		{string(abortOn(`{"name":":path","prefix_match":"/a"}`, `"path_normalization":{"path_params":"x"},`)), "path_normalization.path_params: must be one of"},
		{string(abortOn(`{"name":":path","prefix_match":"//a"}`, "")), `faults[0].headers[0]: "//a" is not in canonical form`},
	} {
		_, err := config.Parse([]byte(c.cfg))
		require.Error(t, err)
		assert.Contains(t, err.Error(), c.err)
	}
}

//go:build !wasip1

package main_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/httpreq/pathtest"
	"github.com/meshplug/meshplug/filters/ratelimit/config"
	"github.com/meshplug/meshplug/filters/ratelimit/engine/enginetest"
	"github.com/meshplug/meshplug/internal/envoypath"
	"github.com/meshplug/meshplug/testenv"
)

var presets = []envoypath.Options{envoypath.IstioNone, envoypath.IstioBase, envoypath.IstioMergeSlashes, envoypath.IstioDecodeAndMergeSlashes}

// TestPathClassesThroughWasm: once /login/x has used its bucket, no spelling of it that
// Go's net/http, a Tomcat-style upstream or an upstream decoding %2F serves as
// /login/x gets through ratelimit.wasm, with the path handed over as each of Istio's
// presets would: neither a prefix rule nor a per-path descriptor can be escaped by
// spelling the path differently.
func TestPathClassesThroughWasm(t *testing.T) {
	const target = "/login/x"
	for _, c := range []struct {
		name, cfg string
		fold      bool
	}{
		{"prefix rule", `{"rules":[{"name":"login","match":{"prefix":"/login"},"descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"minute"}}]}`, false},
		{"exact rule", `{"rules":[{"name":"login","match":{"path":"/login/x"},"descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"minute"}}]}`, false},
		{"path descriptor", `{"rules":[{"name":"per-path","descriptors":[{"key":"path","path":true}],"limit":{"requests":1,"unit":"minute"}}]}`, false},
		{"path descriptor, ignore_case", `{"path_normalization":{"ignore_case":true},"rules":[{"name":"per-path","descriptors":[{"key":"path","path":true}],"limit":{"requests":1,"unit":"minute"}}]}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, 2, testenv.NewFakeClock(enginetest.Start), c.cfg)
			require.Equal(t, 200, h.MustDo(t, testenv.Request{Path: target}).Status)
			served, sent := 0, 0
			for _, raw := range pathtest.Spellings(target) {
				if !pathtest.ServedAs(raw, target, c.fold) {
					continue
				}
				served++
				for i, p := range presets {
					resPath, resAct := envoypath.Normalize(raw, p)
					if resAct != envoypath.Continue {
						continue
					}
					sent++
					resp := h.MustDo(t, testenv.Request{Path: resPath, Worker: i % 2})
					assert.Equal(t, 429, resp.Status, "%q handed over as %q (preset %d) escaped the limit", raw, resPath, i)
				}
			}
			require.Greater(t, served, 500)
			t.Logf("%d spellings served as %s, %d requests through ratelimit.wasm", served, target, sent)
			// Control: another path is not limited by these spellings.
			assert.Equal(t, 200, h.MustDo(t, testenv.Request{Path: "/other"}).Status)
		})
	}
}

// TestPathOptionsThroughWasm: path_params and the path descriptor value.
func TestPathOptionsThroughWasm(t *testing.T) {
	perPath := func(extra string) string {
		return `{` + extra + `"rules":[{"name":"per-path","descriptors":[{"key":"path","path":true}],"limit":{"requests":1,"unit":"minute"}}]}`
	}
	for _, c := range []struct {
		name, cfg, first, second string
		status                   int
	}{
		{"params ambiguous: same bucket", perPath(""), "/app", "/app;jsessionid=1", 429},
		{"params strip: same bucket", perPath(`"path_normalization":{"path_params":"strip"},`), "/app", "/app;jsessionid=1", 429},
		{"params literal: own bucket", perPath(`"path_normalization":{"path_params":"literal"},`), "/app", "/app;jsessionid=1", 200},
		{"escaped slash: same bucket as decoded", perPath(""), "/a/b", "/a%2Fb", 429},
		{"case matters by default", perPath(""), "/app", "/APP", 200},
		{"ignore_case: same bucket", perPath(`"path_normalization":{"ignore_case":true},`), "/app", "/APP", 429},
		{"query is not the path", perPath(""), "/app?a=1", "/app?a=2", 429},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, 1, testenv.NewFakeClock(enginetest.Start), c.cfg)
			require.Equal(t, 200, h.MustDo(t, testenv.Request{Path: c.first}).Status)
			assert.Equal(t, c.status, h.MustDo(t, testenv.Request{Path: c.second}).Status)
		})
	}
}

func TestPathConfigErrors(t *testing.T) {
	for _, c := range []struct{ cfg, err string }{
		{`{"path_normalization":{"path_params":"x"},"rules":[{"name":"r","descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"minute"}}]}`, "path_normalization.path_params: must be one of ambiguous, strip, literal"},
		{`{"rules":[{"name":"r","match":{"prefix":"//login"},"descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"minute"}}]}`, `rules[0].match.prefix: "//login" is not in canonical form`},
		{`{"rules":[{"name":"r","match":{"path":"/a%2Fb"},"descriptors":[{"key":"k","value":"v"}],"limit":{"requests":1,"unit":"minute"}}]}`, `rules[0].match.path: "/a%2Fb" is ambiguous`},
	} {
		_, err := config.Parse([]byte(c.cfg))
		require.Error(t, err)
		assert.Contains(t, err.Error(), c.err)
	}
}

//go:build !wasip1

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/auth/config"
	"github.com/meshplug/meshplug/filters/httpreq/pathtest"
	"github.com/meshplug/meshplug/internal/envoypath"
	"github.com/meshplug/meshplug/testenv"
)

// presets are Istio's meshConfig.pathNormalization settings: the path auth.wasm gets
// is what Envoy hands over under each.
var presets = []struct {
	name string
	o    envoypath.Options
}{
	{"NONE", envoypath.IstioNone},
	{"BASE (Istio's default)", envoypath.IstioBase},
	{"MERGE_SLASHES", envoypath.IstioMergeSlashes},
	{"DECODE_AND_MERGE_SLASHES", envoypath.IstioDecodeAndMergeSlashes},
}

func pathPolicy(extra map[string]any) map[string]any {
	cfg := map[string]any{
		"api_keys": map[string]any{"keys": []any{map[string]any{"consumer": "ops", "sha256": config.HashSecret("", "k")}}},
		"rules": []any{
			map[string]any{"match": map[string]any{"prefix": "/admin"}, "requires": []any{"api_keys"}},
			map[string]any{"match": map[string]any{"path": "/billing/invoices"}, "requires": []any{"api_keys"}},
			map[string]any{"match": map[string]any{"prefix": "/public/"}, "public": true},
			map[string]any{"match": map[string]any{"prefix": "/api/"}, "public": true},
		},
		"default_rule": map[string]any{"public": true},
	}
	if extra != nil {
		cfg["path_normalization"] = extra
	}
	return cfg
}

// TestPathClassesThroughWasm: every spelling of a protected path that Go's net/http, a
// Tomcat-style upstream or an upstream decoding %2F serves as that path, handed to
// auth.wasm as each of Istio's path normalization presets would, is either matched by
// the protecting rule (401 without a credential) or refused as ambiguous (400): none
// reaches the upstream as public. The attack set is among the spellings.
func TestPathClassesThroughWasm(t *testing.T) {
	for _, pol := range []struct {
		name      string
		spec      map[string]any
		fold      bool
		upstreams []pathtest.Upstream
	}{
		{"default", nil, false, nil},
		{"same_rule", map[string]any{"ambiguous": "same_rule"}, false, nil},
		{"strip params", map[string]any{"path_params": "strip"}, false, nil},
		// The upstream reads ';' as a character: Tomcat's reading is out of scope.
		{"literal params", map[string]any{"path_params": "literal"}, false, []pathtest.Upstream{pathtest.GoServes, pathtest.DecodingServes}},
		{"ignore case", map[string]any{"ignore_case": true}, true, nil},
	} {
		t.Run(pol.name, func(t *testing.T) {
			h := start(t, testenv.Options{}, pathPolicy(pol.spec))
			for _, target := range []string{"/admin/users", "/billing/invoices"} {
				spellings := pathtest.Spellings(target)
				spellings = append(spellings, "//admin/users", "///admin", "/admin%2Fusers", "/admin%5Cusers",
					"/admin;x/users", "/public/..%2Fadmin", "/public/..;/admin", "/%61dmin", "/adm%69n/secret",
					"/public/%2e%2e/admin", "/public/.%2E/admin", `/public\..\admin`)
				served, sent := 0, 0
				for _, raw := range spellings {
					// The attack set's short paths are served as /admin or below it.
					want := target
					if g, ok := pathtest.GoServes(raw); ok && len(g) >= 6 && g[:6] == "/admin" {
						want = g
					} else if g, ok := pathtest.TomcatServes(raw); ok && len(g) >= 6 && g[:6] == "/admin" {
						want = g
					}
					if !pathtest.ServedAs(raw, want, pol.fold, pol.upstreams...) {
						continue
					}
					served++
					for _, p := range presets {
						resPath, resAct := envoypath.Normalize(raw, p.o)
						if resAct != envoypath.Continue {
							continue // Envoy answered itself; no filter runs
						}
						sent++
						resp := do(t, h, testenv.Request{Path: resPath})
						if !assert.Contains(t, []int{400, 401}, resp.Status, "%s: %q handed over as %q: %d %s", p.name, raw, resPath, resp.Status, resp.Body) {
							continue
						}
						assert.Nil(t, resp.Upstream, "%q reached the upstream", raw)
					}
				}
				require.Greater(t, served, 100, "spellings served as %s", target)
				t.Logf("%s: %d spellings served as %s, %d requests through auth.wasm", pol.name, served, target, sent)
			}
		})
	}
}

// TestPathPolicyOptionsThroughWasm: what each option lets through and refuses, with
// the path as Istio's default (BASE) hands it over.
func TestPathPolicyOptionsThroughWasm(t *testing.T) {
	key := [][2]string{{"x-api-key", "k"}}
	for _, c := range []struct {
		name, path string
		spec       map[string]any
		headers    [][2]string
		status     int
		upstream   string // the :path the upstream gets, if it gets the request
	}{
		{"canonical public", "/public/x", nil, nil, 200, "/public/x"},
		{"merged slashes public, sent as received", "//public//x", nil, nil, 200, "//public//x"},
		{"protected needs a credential", "/admin/users", nil, nil, 401, ""},
		{"protected with a credential", "//admin//users", nil, key, 200, "//admin//users"},
		{"double slash protected", "//admin/users", nil, nil, 401, ""},
		{"encoded letter protected", "/%61dmin", nil, nil, 401, ""},
		{"exact rule through dot segments", "/billing/x/../invoices", nil, nil, 401, ""},
		{"exact rule through double slash", "/billing//invoices", nil, nil, 401, ""},
		{"escaped slash refused", "/admin%2Fusers", nil, nil, 400, ""},
		{"escaped slash refused even with a credential", "/admin%2Fusers", nil, key, 400, ""},
		{"params refused", "/admin;x/users", nil, nil, 400, ""},
		{"params dot-dot refused", "/public/..;/admin", nil, nil, 400, ""},
		{"nul refused", "/public/%00", nil, nil, 400, ""},
		{"invalid escape refused", "/public/%zz", nil, nil, 400, ""},
		{"double encoding refused", "/public/%252Fadmin", nil, nil, 400, ""},
		{"query not part of the path", "/public/x?a=%2F;b", nil, nil, 200, "/public/x?a=%2F;b"},
		{"same_rule: %2F inside a public prefix passes", "/api/files/a%2Fb", map[string]any{"ambiguous": "same_rule"}, nil, 200, "/api/files/a%2Fb"},
		{"same_rule: %2F crossing rules refused", "/public%2F..%2Fadmin", map[string]any{"ambiguous": "same_rule"}, nil, 400, ""},
		{"same_rule: %2F under the protected prefix is protected", "/admin%2Fusers", map[string]any{"ambiguous": "same_rule"}, nil, 401, ""},
		{"same_rule: %2F dot-dot out of public refused", "/public/..%2Fadmin", map[string]any{"ambiguous": "same_rule"}, nil, 400, ""},
		{"same_rule: params inside the same rule pass", "/api/x;v=1/y", map[string]any{"ambiguous": "same_rule"}, nil, 200, "/api/x;v=1/y"},
		{"same_rule: malformed still refused", "/api/%00", map[string]any{"ambiguous": "same_rule"}, nil, 400, ""},
		{"strip: jsessionid matched without it", "/admin;jsessionid=1/users", map[string]any{"path_params": "strip"}, nil, 401, ""},
		{"strip: ..; is a dot segment", "/public/..;/admin", map[string]any{"path_params": "strip"}, nil, 401, ""},
		{"strip: public with params passes", "/public/x;jsessionid=1", map[string]any{"path_params": "strip"}, nil, 200, "/public/x;jsessionid=1"},
		{"literal: ; is a character", "/public/a;b", map[string]any{"path_params": "literal"}, nil, 200, "/public/a;b"},
		{"literal: ..; is not a dot segment", "/public/..;/admin", map[string]any{"path_params": "literal"}, nil, 200, "/public/..;/admin"},
		{"case-sensitive by default", "/ADMIN", nil, nil, 200, "/ADMIN"},
		{"ignore_case: upper case protected", "/ADMIN/users", map[string]any{"ignore_case": true}, nil, 401, ""},
		{"ignore_case: encoded upper case protected", "/%41DMIN", map[string]any{"ignore_case": true}, nil, 401, ""},
		{"ignore_case: non-ASCII refused", "/\xe2\x84\xaadmin", map[string]any{"ignore_case": true}, nil, 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, testenv.Options{}, pathPolicy(c.spec))
			resPath, resAct := envoypath.Normalize(c.path, envoypath.IstioBase)
			if resAct == envoypath.Reject {
				resPath = c.path // as NONE hands it over
			}
			resp := do(t, h, testenv.Request{Path: resPath, Headers: c.headers})
			require.Equal(t, c.status, resp.Status, "%s", resp.Body)
			if c.upstream == "" {
				assert.Nil(t, resp.Upstream)
				if c.status == 400 {
					assert.JSONEq(t, `{"error":"bad_request","error_description":"ambiguous request path"}`, string(resp.Body))
					assert.Equal(t, int64(1), metric(h, "meshplug.auth.denied.ambiguous_path"))
				}
				return
			}
			require.NotNil(t, resp.Upstream)
			assert.Equal(t, resPath, resp.Upstream.Path, "the path goes upstream as the mesh handed it over")
		})
	}
}

func TestPathNormalizationConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  map[string]any
		err  string
	}{
		{"unknown ambiguous", map[string]any{"path_normalization": map[string]any{"ambiguous": "allow"}}, "path_normalization.ambiguous: must be one of reject, same_rule"},
		{"unknown params", map[string]any{"path_normalization": map[string]any{"path_params": "tomcat"}}, "path_normalization.path_params: must be one of ambiguous, strip, literal"},
		{"unknown field", map[string]any{"path_normalization": map[string]any{"merge": true}}, "path_normalization.merge"},
		{"non-canonical prefix", map[string]any{"rules": []any{map[string]any{"match": map[string]any{"prefix": "//admin"}, "public": true}}}, `rules[0].match.prefix: "//admin" is not in canonical form`},
		{"encoded rule path", map[string]any{"rules": []any{map[string]any{"match": map[string]any{"path": "/%61dmin"}, "public": true}}}, `write "/admin"`},
		{"ambiguous rule path", map[string]any{"rules": []any{map[string]any{"match": map[string]any{"path": "/a%2Fb"}, "public": true}}}, "rules[0].match.path: \"/a%2Fb\" is ambiguous"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := map[string]any{"default_rule": map[string]any{"public": true}}
			for k, v := range c.cfg {
				cfg[k] = v
			}
			_, err := config.Parse(mustJSON(t, cfg))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.err)
		})
	}
}

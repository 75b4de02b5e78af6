package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshplug/meshplug/filters/configjson"
	"github.com/meshplug/meshplug/filters/routehint/config"
)

const good = `{
  "mode": "first",
  "targets": [
    {"name": "canary", "headers": {"X-Route-Hint": "canary", "x-version": "v2"}},
    {"name": "stable", "headers": {"x-route-hint": "stable"}},
    {"name": "default"}
  ],
  "strip_headers": ["x-old-hint"],
  "trusted_headers": ["x-version"],
  "rules": [
    {"name": "beta-users", "match": {"all": [{"from": "header", "name": "X-Consumer-Group", "op": "in", "values": ["Beta", "qa"], "ignore_case": true}]}, "target": "canary"},
    {"name": "api", "match": {"all": [{"from": "path", "op": "prefix", "value": "/api/"}],
                               "any": [{"all": [{"from": "cookie", "name": "tier", "op": "equal", "value": "gold"}]},
                                       {"all": [{"from": "query", "name": "v", "op": "regex", "value": "2|3"}]}]},
     "split": {"key": {"header": "x-consumer"}, "salt": "exp-1", "weights": [{"target": "canary", "weight": 10}, {"target": "stable", "weight": 90}], "on_missing_key": "stable"}},
    {"name": "rest", "split": {"denominator": 10000, "weights": [{"target": "canary", "weight": 25}, {"target": "default", "weight": 9975}]}}
  ],
  "override": {"header": "x-canary-override", "cookie": "canary_override", "allowed": ["canary", "stable"]},
  "echo_header": "X-Route-Target"
}`

func TestParseGood(t *testing.T) {
	cfg, err := config.Parse([]byte(good))
	require.NoError(t, err)
	assert.Equal(t, config.ModeFirst, cfg.Mode)
	require.Len(t, cfg.Targets, 3)
	assert.Equal(t, []config.Header{{Name: "x-route-hint", Value: "canary"}, {Name: "x-version", Value: "v2"}}, cfg.Targets[0].Headers)
	assert.Empty(t, cfg.Targets[2].Headers)
	assert.Equal(t, map[string]struct{}{"x-route-hint": {}, "x-version": {}, "x-old-hint": {}}, cfg.Hints)
	assert.Equal(t, map[string]struct{}{"x-version": {}}, cfg.Trusted)
	assert.Equal(t, []string{"x-old-hint", "x-route-hint"}, cfg.HintNames)
	assert.Equal(t, "x-route-target", cfg.EchoHeader)
	assert.False(t, cfg.NeedClientAddress)

	r0 := cfg.Rules[0]
	assert.Equal(t, "x-consumer-group", r0.Match.All[0].Name)
	assert.Equal(t, []string{"beta", "qa"}, r0.Match.All[0].Values)
	assert.Same(t, cfg.ByName["canary"], r0.Target)

	sp := cfg.Rules[1].Split
	require.NotNil(t, sp)
	assert.Equal(t, config.FromHeader, sp.Key)
	assert.Equal(t, "exp-1", sp.Salt)
	assert.Equal(t, []uint32{1000, 10000}, sp.Bounds)
	assert.Same(t, cfg.ByName["stable"], sp.OnMissingKey)
	assert.True(t, cfg.Rules[1].Match.Any[1][0].Regex.MatchString("3"))
	assert.False(t, cfg.Rules[1].Match.Any[1][0].Regex.MatchString("23"), "regex is anchored")

	rest := cfg.Rules[2].Split
	assert.True(t, rest.Random)
	assert.Equal(t, "rest", rest.Salt, "salt defaults to the rule name")
	assert.Equal(t, []uint32{25, 10000}, rest.Bounds)

	require.NotNil(t, cfg.Override)
	assert.Equal(t, "x-canary-override", cfg.Override.Header)
	assert.Len(t, cfg.Override.Allowed, 2)
}

// TestParseErrors: every validation error names its field path.
func TestParseErrors(t *testing.T) {
	base := func(rules string) string {
		return `{"targets": [{"name": "canary", "headers": {"x-route-hint": "canary"}}, {"name": "stable"}], "rules": [` + rules + `]}`
	}
	cases := []struct {
		name, json, path, msg string
	}{
		{"unknown field", `{"targets": [{"name": "a"}], "rulez": []}`, "rulez", "unknown field"},
		{"wrong type", `{"targets": [{"name": "a", "headers": {"x": 1}}]}`, "targets[0].headers.x", "expected a string"},
		{"duplicate field", `{"targets": [{"name": "a", "name": "b"}]}`, "targets[0].name", "duplicate field"},
		{"no targets", `{}`, "targets", "at least one target"},
		{"bad mode", `{"mode": "some", "targets": [{"name": "a"}]}`, "mode", `"first" or "all"`},
		{"bad target name", `{"targets": [{"name": "Canary_1"}]}`, "targets[0].name", "DNS label"},
		{"dup target", `{"targets": [{"name": "a"}, {"name": "a"}]}`, "targets[1].name", "duplicate target"},
		{"pseudo header", `{"targets": [{"name": "a", "headers": {":path": "/x"}}]}`, `targets[0].headers[":path"]`, "pseudo-header"},
		{"reserved header", `{"targets": [{"name": "a", "headers": {"Host": "x"}}]}`, "targets[0].headers.Host", "carries the request"},
		{"bad header value", `{"targets": [{"name": "a", "headers": {"x-h": "a\r\nb"}}]}`, "targets[0].headers.x-h", "invalid header value"},
		{"trusted not hint", `{"targets": [{"name": "a"}], "trusted_headers": ["x-user"]}`, "trusted_headers[0]", "not a hint header"},
		{"invalid regex", base(`{"name": "r", "match": {"all": [{"from": "header", "name": "x-user", "op": "regex", "value": "a(b"}]}, "target": "canary"}`), "rules[0].match.all[0].value", "invalid regex"},
		{"regex in group", base(`{"name": "r", "match": {"any": [{"all": [{"from": "path", "op": "prefix", "value": "/"}, {"from": "method", "op": "regex", "value": "[z-a]"}]}]}, "target": "canary"}`), "rules[0].match.any[0].all[1].value", "invalid regex"},
		{"unknown op", base(`{"name": "r", "match": {"all": [{"from": "header", "name": "x", "op": "equals", "value": "1"}]}, "target": "canary"}`), "rules[0].match.all[0].op", "must be one of"},
		{"unknown from", base(`{"name": "r", "match": {"all": [{"from": "body", "op": "exists"}]}, "target": "canary"}`), "rules[0].match.all[0].from", "must be one of"},
		{"name missing", base(`{"name": "r", "match": {"all": [{"from": "cookie", "op": "exists"}]}, "target": "canary"}`), "rules[0].match.all[0].name", "required"},
		{"name with path", base(`{"name": "r", "match": {"all": [{"from": "path", "name": "p", "op": "prefix", "value": "/"}]}, "target": "canary"}`), "rules[0].match.all[0].name", "not allowed"},
		{"in without values", base(`{"name": "r", "match": {"all": [{"from": "method", "op": "in"}]}, "target": "canary"}`), "rules[0].match.all[0].values", "at least one"},
		{"prefix without value", base(`{"name": "r", "match": {"all": [{"from": "path", "op": "prefix"}]}, "target": "canary"}`), "rules[0].match.all[0].value", "required"},
		{"exists with value", base(`{"name": "r", "match": {"all": [{"from": "header", "name": "x", "op": "exists", "value": "1"}]}, "target": "canary"}`), "rules[0].match.all[0].value", "not allowed"},
		{"match on hint header", base(`{"name": "r", "match": {"all": [{"from": "header", "name": "X_Route_Hint", "op": "exists"}]}, "target": "canary"}`), "rules[0].match.all[0].name", "hint header"},
		{"empty group", base(`{"name": "r", "match": {"any": [{"all": []}]}, "target": "canary"}`), "rules[0].match.any[0].all", "at least one condition"},
		{"no action", base(`{"name": "r"}`), "rules[0]", "one of target and split"},
		{"both actions", base(`{"name": "r", "target": "canary", "split": {"weights": [{"target": "canary", "weight": 100}]}}`), "rules[0]", "not both"},
		{"unknown target", base(`{"name": "r", "target": "blue"}`), "rules[0].target", `no target named "blue"`},
		{"dup rule", base(`{"name": "r", "target": "canary"}, {"name": "r", "target": "stable"}`), "rules[1].name", "duplicate rule"},
		{"weights sum", base(`{"name": "r", "split": {"weights": [{"target": "canary", "weight": 10}, {"target": "stable", "weight": 80}]}}`), "rules[0].split.weights", "add up to 90"},
		{"negative weight", base(`{"name": "r", "split": {"weights": [{"target": "canary", "weight": -1}, {"target": "stable", "weight": 101}]}}`), "rules[0].split.weights[0].weight", "between 0 and 100"},
		{"bad denominator", base(`{"name": "r", "split": {"denominator": 1000, "weights": [{"target": "canary", "weight": 100}]}}`), "rules[0].split.denominator", "100 or 10000"},
		{"target twice", base(`{"name": "r", "split": {"weights": [{"target": "canary", "weight": 50}, {"target": "canary", "weight": 50}]}}`), "rules[0].split.weights[1].target", "listed twice"},
		{"two keys", base(`{"name": "r", "split": {"key": {"header": "x-user", "cookie": "sid"}, "weights": [{"target": "canary", "weight": 100}]}}`), "rules[0].split.key", "exactly one"},
		{"missing key without key", base(`{"name": "r", "split": {"on_missing_key": "stable", "weights": [{"target": "canary", "weight": 100}]}}`), "rules[0].split.on_missing_key", "only with a key"},
		{"override not allowed target", `{"targets": [{"name": "a"}], "override": {"header": "x-o", "allowed": ["b"]}}`, "override.allowed[0]", `no target named "b"`},
		{"override without source", `{"targets": [{"name": "a"}], "override": {"allowed": ["a"]}}`, "override", "header or cookie"},
		{"override on hint", `{"targets": [{"name": "a", "headers": {"x-h": "1"}}], "override": {"header": "x-h", "allowed": ["a"]}}`, "override.header", "hint header"},
		{"echo header", `{"targets": [{"name": "a"}], "echo_header": "bad header"}`, "echo_header", "invalid header name"},
		{"trailing data", `{"targets": [{"name": "a"}]} {}`, "", "invalid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.json))
			require.Error(t, err)
			var fe *configjson.FieldError
			require.True(t, errors.As(err, &fe), "%T %v", err, err)
			found := false
			for _, e := range flatten(err) {
				if e.Path == c.path && strings.Contains(e.Msg, c.msg) {
					found = true
				}
			}
			assert.True(t, found, "want %s: ...%s..., got:\n%v", c.path, c.msg, err)
		})
	}
}

func flatten(err error) []*configjson.FieldError {
	var l configjson.ListError
	if errors.As(err, &l) {
		return l
	}
	var fe *configjson.FieldError
	if errors.As(err, &fe) {
		return []*configjson.FieldError{fe}
	}
	return nil
}

// TestTrustedHint: a trusted hint header can be matched on and used as a key.
func TestTrustedHint(t *testing.T) {
	_, err := config.Parse([]byte(`{"targets": [{"name": "a", "headers": {"x-h": "1"}}], "trusted_headers": ["X-H"],
	  "rules": [{"name": "r", "match": {"all": [{"from": "header", "name": "x-h", "op": "exists"}]}, "split": {"key": {"header": "x-h"}, "weights": [{"target": "a", "weight": 100}]}}]}`))
	require.NoError(t, err)
}

// NeedPath: the reader puts paths in canonical form only when a condition (a rule's
// or the override's) reads the path.
func TestNeedPath(t *testing.T) {
	cases := []struct {
		name  string
		extra string
		want  bool
	}{
		{"no condition", `"rules": [{"name": "r", "target": "t"}]`, false},
		{"header and method conditions", `"rules": [{"name": "r", "match": {"all": [{"from": "header", "name": "x-a", "op": "exists"}, {"from": "method", "op": "equal", "value": "GET"}]}, "target": "t"}]`, false},
		{"path in all", `"rules": [{"name": "r", "match": {"all": [{"from": "path", "op": "prefix", "value": "/a/"}]}, "target": "t"}]`, true},
		{"path in any", `"rules": [{"name": "r", "match": {"any": [{"all": [{"from": "path", "op": "equal", "value": "/a"}]}]}, "target": "t"}]`, true},
		{"path in the override's condition", `"override": {"header": "x-force", "allowed": ["t"], "when": {"all": [{"from": "path", "op": "prefix", "value": "/a/"}]}}, "rules": [{"name": "r", "target": "t"}]`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(`{"targets": [{"name": "t", "headers": {"x-route-hint": "t"}}], ` + c.extra + `}`))
			require.NoError(t, err)
			assert.Equal(t, c.want, cfg.NeedPath)
		})
	}
}
